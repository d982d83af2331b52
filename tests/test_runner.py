"""Experiment runner: configs, vmapped seeds, resume, crash safety, divergence, plots.

Everything runs on a tiny Pendulum dataset (4 episodes) with 16-unit networks; one uninterrupted
two-seed run is shared by the module, and every run reuses its compiled chunk (same shapes).
"""
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cql_jax import checkpoints
from cql_jax import runner
from cql_jax import writers
from cql_jax.data import minari_io
from cql_jax.configs import base
from cql_jax.configs import classic
from cql_jax.configs import locomotion

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEEDS = (0, 1)
TINY = {
    "agent.actor_hidden_sizes": (16, 16), "agent.critic_hidden_sizes": (16, 16),
    "batch_size": 32, "steps_per_chunk": 20, "num_steps": 80, "eval_every": 40,
    "checkpoint_every": 20, "keep_checkpoints": 2, "eval_episodes": 2,
}
# The same settings as command-line overrides, for the subprocess test.
TINY_FLAGS = [f"--config.{k}={v}" for k, v in TINY.items()]


@pytest.fixture(scope="module")
def tiny_config(pendulum_minari_root):
  del pendulum_minari_root
  return base.override(classic.get_config("medium"), TINY)


@pytest.fixture(scope="module")
def full_run(tiny_config, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("full")
  return workdir, runner.train_and_evaluate(tiny_config, workdir, SEEDS, progress=False)


def test_override_and_unknown_key(tiny_config):
  config = base.override(tiny_config, {"agent.cql.weight": 10.0})
  assert config.agent.cql.weight == 10.0 and tiny_config.agent.cql.weight == 5.0
  with pytest.raises(KeyError) as error:
    base.override(tiny_config, {"agent.cql.wieght": 10.0})
  message = str(error.value)
  assert "Did you mean 'weight'" in message and "lagrange" in message and "num_samples" in message
  with pytest.raises(ValueError, match="no Minari counterpart"):
    runner.load_data(locomotion.get_config("hopper-medium-replay"))  # refused at load time.


def test_cli_unknown_key_lists_valid_keys():
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--config=cql_jax/configs/classic.py:medium",
       "--config.agent.cql.wieght=3", "--workdir=/nonexistent"],
      cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
      timeout=120)
  assert proc.returncode == 1
  assert "Did you mean 'weight'" in proc.stderr and "Valid keys of config.agent.cql" in proc.stderr


def test_seeds_are_vmapped_with_per_seed_results(full_run):
  workdir, result = full_run
  records = writers.read_jsonl(workdir / writers.METRICS_FILE)
  evals = [r for r in records if r["kind"] == "eval"]
  assert [r["step"] for r in evals] == [40, 80]
  scores = np.array(evals[-1]["eval/normalized_score"])
  assert scores.shape == (2,) and scores[0] != scores[1]
  train = [r for r in records if r["kind"] == "train"]
  assert [r["step"] for r in train] == [20, 40, 60, 80]
  assert len(train[0]["critic/loss"]) == 2 and train[0]["critic/loss"][0] != train[0]["critic/loss"][1]
  actor = jax.tree.leaves(result.state.actor_params)[0]
  assert actor.shape[0] == 2 and not np.array_equal(actor[0], actor[1])
  assert result.results["final"]["eval/normalized_score"] == list(scores)
  assert (workdir / "tb" / "seed_0").is_dir() and (workdir / "tb" / "mean").is_dir()


def test_resume_is_bit_identical(full_run, tiny_config, tmp_path):
  workdir, uninterrupted = full_run
  half = base.override(tiny_config, {"num_steps": 40})
  runner.train_and_evaluate(half, tmp_path, SEEDS, progress=False)
  resumed = runner.train_and_evaluate(tiny_config, tmp_path, SEEDS, resume=True, progress=False)
  expected, got = jax.tree.leaves(uninterrupted.state), jax.tree.leaves(resumed.state)
  assert len(expected) == len(got)
  for a, b in zip(expected, got):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  timing = ("steps_per_second", "seconds")  # wall-clock, differs between any two runs.
  strip = lambda rs: [{k: v for k, v in r.items() if k not in timing} for r in rs]
  assert strip(writers.read_jsonl(tmp_path / writers.METRICS_FILE)) == strip(
      writers.read_jsonl(workdir / writers.METRICS_FILE))
  with pytest.raises(FileExistsError, match="--resume"):
    runner.train_and_evaluate(tiny_config, tmp_path, SEEDS, progress=False)
  with pytest.raises(ValueError, match="batch_size"):
    runner.train_and_evaluate(base.override(tiny_config, {"batch_size": 64}), tmp_path, SEEDS,
                              resume=True, progress=False)


def test_sigkill_leaves_no_torn_files(full_run, pendulum_minari_root, tiny_config, tmp_path):
  """Kill a CLI run while it checkpoints every chunk; everything left must read back whole."""
  workdir = tmp_path / "killed"
  env = {**os.environ, "PYTHONPATH": str(ROOT), "MINARI_DATASETS_PATH": str(pendulum_minari_root),
         "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(ROOT / ".jax_cache"),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}
  cmd = [sys.executable, "-m", "experiments.train", "--config=cql_jax/configs/classic.py:medium",
         *TINY_FLAGS, "--config.num_steps=20000", "--config.eval_every=2000",
         f"--workdir={workdir}", "--seeds=0,1", "--noprogress"]
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  try:
    deadline = time.time() + 150
    ckpt_dir = workdir / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
      if ckpt_dir.is_dir() and len([p for p in ckpt_dir.iterdir() if p.name.isdigit()]) >= 2:
        break
      time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    time.sleep(random.uniform(0.0, 0.5))  # land anywhere in the chunk/save cycle.
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()

  raw = (workdir / writers.METRICS_FILE).read_bytes()
  assert raw.endswith(b"\n")
  for line in raw.decode().splitlines():
    json.loads(line)
  json.loads((workdir / runner.CONFIG_FILE).read_text())
  steps = checkpoints.Checkpointer(workdir / "checkpoints", 2).all_steps()
  assert steps
  target = full_run[1].state
  for step in steps:
    state, meta = checkpoints.Checkpointer(workdir / "checkpoints", 2).restore(target, step)
    assert meta["next_chunk"] * 20 == step == meta["step"]
    assert jax.tree.structure(state) == jax.tree.structure(target)

  # The killed run resumes: one more chunk, no duplicate or missing log steps.
  latest = max(steps)
  config = base.override(tiny_config, {"num_steps": latest + 20, "eval_every": 2000})
  runner.train_and_evaluate(config, workdir, SEEDS, resume=True, progress=False)
  train_steps = [r["step"] for r in writers.read_jsonl(workdir / writers.METRICS_FILE)
                 if r["kind"] == "train"]
  assert train_steps == list(range(20, latest + 21, 20))


def test_non_finite_loss_stops_the_run(tiny_config, tmp_path):
  # Rewards of ~1e31 keep the data finite but square to inf in the Bellman error at step 1.
  config = base.override(tiny_config, {"data.reward_scale": 1e30})
  with pytest.raises(runner.NonFiniteMetricError) as error:
    runner.train_and_evaluate(config, tmp_path, SEEDS, progress=False)
  message = str(error.value)
  assert "'critic/loss'" in message and "at step 1 " in message and "seed 0" in message
  assert checkpoints.Checkpointer(tmp_path / "checkpoints", 2).all_steps() == []


def test_missing_dataset_names_download_command(pendulum_minari_root, tmp_path):
  del pendulum_minari_root
  config = locomotion.get_config("hopper-medium")
  with pytest.raises(minari_io.DatasetError) as error:
    runner.train_and_evaluate(config, tmp_path, SEEDS, progress=False)
  message = str(error.value)
  assert "python -m experiments.train --config=cql_jax/configs/locomotion.py:hopper-medium" in message
  assert "--download" in message and "minari download mujoco/hopper/medium-v0" in message


def test_plot_writes_pngs(full_run, tmp_path):
  from experiments import plot
  workdir, _ = full_run
  assert plot.plot_curves([workdir], tmp_path / "curves.png").stat().st_size > 1000
  summary = plot.aggregate({"cql": [workdir, workdir]}, tmp_path, reps=50)
  assert (tmp_path / "aggregate.png").stat().st_size > 1000
  assert summary["cql"]["matrix_shape"] == [2, 2]
  lo, hi = summary["cql"]["IQM"]["ci95"]
  assert lo <= summary["cql"]["IQM"]["point"] <= hi
