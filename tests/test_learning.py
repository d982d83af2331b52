"""Learning to a score: `make demo` (CQL(H) on the project's Pendulum medium-expert data) against
the data's own score (a mixed dataset: an offline learner that only copied it would score about
its mean).

The demo runs as a user runs it, in its own process, with XLA's usual optimisation: the suite's
processes compile with little optimisation (tests/xla_flags.py), which suits tiny programs run a
few steps but not the demo's thousands of steps.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests import xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cql_beats_its_own_data_on_pendulum_medium_expert(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS=xla_flags.optimised())
  out = subprocess.run([sys.executable, "-m", "experiments.demo", f"--workdir={tmp_path}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
  assert out.returncode == 0, out.stderr[-4000:]
  per_seed = np.asarray(
      json.loads((tmp_path / "results.json").read_text())["final"]["eval/normalized_score"])
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["seeds"] == [0, 1]

  # The bar, by hand from the dataset's episodes: the mean D4RL-normalized episode return.
  import minari
  dataset = minari.load_dataset(config["config"]["dataset_id"])
  returns = np.array([np.sum(e.rewards, dtype=np.float64) for e in dataset.iterate_episodes()])
  lo, hi = dataset.storage.metadata["ref_min_score"], dataset.storage.metadata["ref_max_score"]
  data_score = float(np.mean(100.0 * (returns - lo) / (hi - lo)))
  print(f"\nCQL(H) pendulum medium-expert: {per_seed.mean():.1f} ± {per_seed.std():.1f} "
        f"(seeds {np.round(per_seed, 1).tolist()}); dataset average {data_score:.1f}")
  assert 0.0 < data_score < 100.0, data_score        # a mixed dataset, below its expert.
  # Every seed must clear the bar, not just their mean.
  assert per_seed.min() >= data_score, (per_seed, data_score)
  # The demo's last lines are the scores, the same numbers.
  last = out.stdout.strip().splitlines()[-3:]
  assert "dataset average score" in last[1] and f"{data_score:6.1f}" in last[1], last
  assert "CQL(H) score" in last[2] and f"{per_seed.mean():6.1f}" in last[2], last
