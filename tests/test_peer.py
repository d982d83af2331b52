"""The peer harness's main-interpreter side (experiments/peer.py): what it exports for d3rlpy and
the run directory it writes for experiments.plot. d3rlpy itself runs only in .peer-venv."""
import json

import numpy as np

from cql_jax import OfflineDataset
from experiments import peer
from experiments import plot


def _two_episodes():
  """Episode 0: 3 steps, terminated. Episode 1: 2 steps, cut by the time limit."""
  obs = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)   # episode layout: 4 + 3 observations.
  actions = np.array([[0.5], [-1.5], [2.0], [1.0], [-0.25]], np.float32)
  rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32)
  terminals = np.array([0, 0, 1, 0, 0], bool)
  truncations = np.array([0, 0, 0, 0, 1], bool)
  return obs, OfflineDataset.from_arrays(
      obs, actions, rewards, terminals, truncations, env_id="Pendulum-v1", ref_min_score=-10.0,
      ref_max_score=30.0)


def test_export_keeps_every_transition_and_marks_each_episode_end(tmp_path):
  obs, dataset = _two_episodes()
  info = peer.export(dataset, tmp_path / "d.npz")
  with np.load(tmp_path / "d.npz") as f:
    data = dict(f)
  assert info["transitions"] == 5 and info["episodes"] == 2 and not info["discrete"]
  # Transitions: observation rows 0-2 then 4-5, each followed by the next row.
  np.testing.assert_array_equal(data["observations"], obs[[0, 1, 2, 4, 5]])
  np.testing.assert_array_equal(data["next_observations"], obs[[1, 2, 3, 5, 6]])
  np.testing.assert_array_equal(data["actions"], [[0.5], [-1.5], [2.0], [1.0], [-0.25]])
  np.testing.assert_array_equal(data["terminals"], [0, 0, 1, 0, 0])
  np.testing.assert_array_equal(data["truncations"], [0, 0, 0, 0, 1])
  assert str(data["env_id"]) == "Pendulum-v1"
  assert (float(data["ref_min_score"]), float(data["ref_max_score"])) == (-10.0, 30.0)
  np.testing.assert_array_equal(data["action_low"], [-2.0])   # Pendulum's torque bounds.


def test_seed_files_become_a_run_that_plot_reads(tmp_path, monkeypatch):
  _, dataset = _two_episodes()
  data_file = tmp_path / "d.npz"
  peer.export(dataset, data_file)
  settings = {"config": {"dataset_id": "cql_jax/x/medium-v0"}, "seeds": [3, 7],
              "peer": {"algo": "bc", "steps": 4, "eval_every": 2, "eval_episodes": 1,
                       "eval_seed": 0, "hidden": "8", "overrides": {}}}
  run_dir = tmp_path / "bc"
  (run_dir / "seeds").mkdir(parents=True)
  # Both seeds already finished (a rerun skips them): no peer interpreter is started.
  scores = {3: [10.0, 20.0], 7: [30.0, 50.0]}
  for seed, values in scores.items():
    lines = [{"config": {}}] + [{"step": 2 * (i + 1), "return": -v, "normalized_score": v,
                                 "seconds": 1.0} for i, v in enumerate(values)] + [{"done": True}]
    (run_dir / "seeds" / f"seed_{seed}.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in lines))
  monkeypatch.setattr(peer.subprocess, "run", None)   # any launch would fail loudly.
  results = peer.run_algo("bc", settings, data_file, run_dir, python="unused", log=lambda m: None)
  assert results["final"]["eval/normalized_score"] == [20.0, 50.0]
  assert results["final_mean"]["eval/normalized_score"] == 35.0
  steps, values = plot.learning_curve(run_dir)
  np.testing.assert_array_equal(steps, [2, 4])
  np.testing.assert_array_equal(values, [[10.0, 30.0], [20.0, 50.0]])
  assert plot.dataset_name(run_dir) == "cql_jax/x/medium-v0"
