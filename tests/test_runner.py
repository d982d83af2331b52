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
from cql_jax import workdir_lock
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


def test_sigkill_leaves_no_torn_files(full_run, pendulum_minari_root, tiny_config, tmp_path,
                                      caplog):
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
    # A second process (a resume while the first one trains) is refused, naming the first's
    # PID, and touches nothing: the metrics file is not truncated under the live run.
    size = (workdir / writers.METRICS_FILE).stat().st_size
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"in use by process {proc.pid}:"):
      runner.train_and_evaluate(tiny_config, workdir, SEEDS, resume=True, progress=False)
    assert (workdir / writers.METRICS_FILE).stat().st_size >= size
    time.sleep(random.uniform(0.0, 0.5))  # land anywhere in the chunk/save cycle.
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  # The killed run's lock file stays behind, naming a PID that is gone.
  assert (workdir / workdir_lock.LOCK_FILE).read_text().strip() == str(proc.pid)

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

  # The killed run resumes (its stale lock taken over): one more chunk, no duplicate or
  # missing log steps, and the lock released at the end.
  latest = max(steps)
  config = base.override(tiny_config, {"num_steps": latest + 20, "eval_every": 2000})
  with caplog.at_level("WARNING", logger="cql_jax.workdir_lock"):
    runner.train_and_evaluate(config, workdir, SEEDS, resume=True, progress=False)
  assert any(f"left by process {proc.pid}" in m for m in caplog.messages), caplog.messages
  assert not (workdir / workdir_lock.LOCK_FILE).exists()
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


def test_failing_evaluation_loses_no_checkpoint(full_run, tiny_config, tmp_path, monkeypatch):
  """Steps 40 and 80 are both checkpoint and evaluation steps; the evaluation at 40 fails."""
  real = runner.make_evaluator

  def failing_evaluator(*args, **kwargs):
    real(*args, **kwargs)
    def evaluate(states, seed):
      raise RuntimeError("evaluation environment crashed")
    return evaluate

  monkeypatch.setattr(runner, "make_evaluator", failing_evaluator)
  with pytest.raises(RuntimeError, match="crashed"):
    runner.train_and_evaluate(tiny_config, tmp_path, SEEDS, progress=False)
  assert checkpoints.Checkpointer(tmp_path / "checkpoints", 2).all_steps() == [20, 40]
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()

  # The resume evaluates the checkpoint at 40 first, then goes on as if nothing had failed.
  monkeypatch.setattr(runner, "make_evaluator", real)
  resumed = runner.train_and_evaluate(tiny_config, tmp_path, SEEDS, resume=True, progress=False)
  workdir, uninterrupted = full_run
  assert resumed.results["evals"] == uninterrupted.results["evals"]
  for a, b in zip(jax.tree.leaves(uninterrupted.state), jax.tree.leaves(resumed.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_q_scale_is_reported_against_the_reward_bound(full_run, pendulum_minari_root):
  """critic/q_bound_ratio = |mean Q on the data| / (max|r| / (1 - gamma)), rewards read by Minari."""
  import minari
  del pendulum_minari_root
  workdir, result = full_run
  config = json.loads((workdir / runner.CONFIG_FILE).read_text())["config"]
  rewards = np.concatenate([ep.rewards for ep in minari.load_dataset(
      config["dataset_id"]).iterate_episodes()])
  bound = np.max(np.abs(rewards * config["data"]["reward_scale"] + config["data"]["reward_bias"])) / (
      1 - config["agent"]["gamma"])
  assert result.results["q_bound"] == pytest.approx(bound)
  train = [r for r in writers.read_jsonl(workdir / writers.METRICS_FILE) if r["kind"] == "train"]
  for r in train:
    ratio = np.abs(np.asarray(r["critic/q_data"])) / bound
    # rtol: the training rewards are float32, the recomputation float64.
    np.testing.assert_allclose(r["critic/q_bound_ratio"], ratio, rtol=1e-6)
    np.testing.assert_array_equal(r["warnings/q_divergence"], (ratio > 10.0).astype(float))
  # 80 steps of a healthy run: far inside the bound, so no warning.
  assert result.results["q_divergence_first_step"] == {}


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


def test_results_set_the_datasets_own_score_beside_the_policys(full_run, tiny_config):
  """The dataset's normalized score is recomputed here from its raw episodes, by hand."""
  import minari  # pylint: disable=import-outside-toplevel
  _, result = full_run
  data = minari.load_dataset(tiny_config.dataset_id)
  returns = np.array([float(np.sum(ep.rewards)) for ep in data.iterate_episodes()])
  meta = data.storage.metadata
  lo, hi = float(meta["ref_min_score"]), float(meta["ref_max_score"])
  got = result.results["dataset_score"]
  assert got["dataset/episodes"] == len(returns)
  np.testing.assert_allclose(got["dataset/return"], returns.mean(), rtol=1e-6)
  np.testing.assert_allclose(got["dataset/normalized_score"],
                             100 * (returns.mean() - lo) / (hi - lo), rtol=1e-6)
