"""Sweeps through the runner on one device: members equal the same settings trained alone,
resume, refusals that leave nothing behind, the results table and batched evaluation.

Tiny Pendulum dataset (4 episodes), 16-unit networks, 40 steps. The sweep zips two CQL weights
(0 and 5) with two critic learning rates over seeds 0 and 1: four members in one program.
"""
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from cql_jax import evaluation
from cql_jax import runner
from cql_jax import sweep
from cql_jax import writers
from cql_jax.configs import base
from cql_jax.configs import classic

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEEDS = (0, 1)
TINY = {
    "agent.actor_hidden_sizes": (16, 16), "agent.critic_hidden_sizes": (16, 16),
    "agent.cql.num_samples": 4, "batch_size": 32, "steps_per_chunk": 20, "num_steps": 40,
    "eval_every": 40, "checkpoint_every": 20, "keep_checkpoints": 2, "eval_episodes": 2,
}
GRID = sweep.Grid.from_dict(zipped={"agent.cql.weight": [0.0, 5.0],
                                    "agent.critic_lr": [3e-4, 1e-3]})
SETTINGS = [{"agent.cql.weight": 0.0, "agent.critic_lr": 3e-4},
            {"agent.cql.weight": 5.0, "agent.critic_lr": 1e-3}]


@pytest.fixture(scope="module")
def tiny_config(pendulum_minari_root):
  del pendulum_minari_root
  return base.override(classic.get_config("medium"), TINY)


@pytest.fixture(scope="module")
def sweep_run(tiny_config, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sweep")
  return workdir, runner.train_and_evaluate(tiny_config, workdir, SEEDS, grid=GRID, progress=False)


@pytest.fixture(scope="module")
def alone_runs(tiny_config, tmp_path_factory):
  """Each setting trained alone, as a plain run of the same seeds (no sweep)."""
  runs = []
  for setting in SETTINGS:
    workdir = tmp_path_factory.mktemp("alone")
    runs.append((workdir, runner.train_and_evaluate(base.override(tiny_config, setting), workdir,
                                                    SEEDS, progress=False)))
  return runs


def _member(state, index):
  return [np.asarray(x[index]) for x in jax.tree.leaves(state)]


def test_a_member_with_the_penalty_trains_as_it_does_alone(sweep_run, alone_runs):
  (_, swept), (alone_dir, alone) = sweep_run, alone_runs[1]
  for s in range(len(SEEDS)):
    member = 2 + s  # setting 1, seed s (members are setting-major)
    for a, b in zip(_member(swept.state, member), _member(alone.state, s)):
      np.testing.assert_array_equal(a, b)
  final = swept.results["final"]["eval/normalized_score"]
  assert final[2:] == alone.results["final"]["eval/normalized_score"]
  swept_train = [r for r in writers.read_jsonl(sweep_run[0] / writers.METRICS_FILE)
                 if r["kind"] == "train"]
  alone_train = [r for r in writers.read_jsonl(alone_dir / writers.METRICS_FILE)
                 if r["kind"] == "train"]
  for a, b in zip(swept_train, alone_train):
    assert a["critic/loss"][2:] == b["critic/loss"] and a["cql/gap"][2:] == b["cql/gap"]


def test_a_zero_weight_member_follows_offline_sac_alone(sweep_run, alone_runs):
  """Alone, weight 0 compiles the penalty out; in the sweep it is multiplied by zero."""
  (_, swept), (_, alone) = sweep_run, alone_runs[0]
  for s in range(len(SEEDS)):
    for a, b in zip(_member(swept.state, s), _member(alone.state, s)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_member_alone_with_one_seed_matches_too(sweep_run, tiny_config, tmp_path):
  _, swept = sweep_run
  alone = runner.train_and_evaluate(base.override(tiny_config, SETTINGS[1]), tmp_path, (1,),
                                    progress=False)
  for a, b in zip(_member(swept.state, 3), _member(alone.state, 0)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_outputs_are_tagged_per_member_and_summarised_per_setting(sweep_run):
  workdir, result = sweep_run
  names = ["cql.weight=0,critic_lr=0.0003,seed_0", "cql.weight=0,critic_lr=0.0003,seed_1",
           "cql.weight=5,critic_lr=0.001,seed_0", "cql.weight=5,critic_lr=0.001,seed_1"]
  for name in names:
    assert (workdir / "tb" / name).is_dir()
  rows = writers.read_jsonl(workdir / writers.METRICS_FILE)
  assert all(r["members"] == names and r["seeds"] == [0, 1, 0, 1] for r in rows)
  saved = json.loads((workdir / runner.CONFIG_FILE).read_text())
  assert saved["sweep"]["settings"] == SETTINGS
  scores = np.asarray(result.results["final"]["eval/normalized_score"]).reshape(2, 2)
  table = json.loads((workdir / runner.RESULTS_FILE).read_text())["sweep"]
  assert [r["setting"] for r in table] == SETTINGS
  for row, per_seed in zip(table, scores):
    assert row["mean"] == pytest.approx(per_seed.mean())
    assert row["std"] == pytest.approx(np.sqrt(((per_seed - per_seed.mean()) ** 2).mean()))
    assert row["iqm"] == pytest.approx(per_seed.mean())  # two seeds: nothing is trimmed.


def test_resumed_sweep_is_bit_identical_and_a_changed_grid_is_refused(sweep_run, tiny_config,
                                                                     tmp_path):
  workdir, full = sweep_run
  half = base.override(tiny_config, {"num_steps": 20})
  runner.train_and_evaluate(half, tmp_path, SEEDS, grid=GRID, progress=False)
  resumed = runner.train_and_evaluate(tiny_config, tmp_path, SEEDS, resume=True, grid=GRID,
                                        progress=False)
  for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  before = sorted(p.name for p in tmp_path.rglob("*"))
  changed = sweep.Grid.from_dict(zipped={"agent.cql.weight": [0.0, 10.0],
                                         "agent.critic_lr": [3e-4, 1e-3]})
  with pytest.raises(sweep.SweepError) as error:
    runner.train_and_evaluate(tiny_config, tmp_path, SEEDS, resume=True, grid=changed,
                              progress=False)
  assert "--sweep_zip agent.cql.weight: [0.0, 5.0] -> [0.0, 10.0]" in str(error.value)
  with pytest.raises(sweep.SweepError, match="was a sweep; this launch is not"):
    runner.train_and_evaluate(tiny_config, tmp_path, SEEDS, resume=True, progress=False)
  assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_members_that_do_not_fit_leave_no_workdir(tiny_config, tmp_path):
  workdir = tmp_path / "never"
  with pytest.raises(sweep.SweepError, match="About 0 members fit"):
    runner.train_and_evaluate(tiny_config, workdir, SEEDS, grid=GRID, progress=False,
                              memory_limit_bytes=1000)
  assert not workdir.exists()


def test_bad_sweep_flag_fails_before_anything_is_written(tmp_path, pendulum_minari_root):
  workdir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--config=cql_jax/configs/classic.py:medium",
       "--sweep=agent.cql.wieght=1,5", f"--workdir={workdir}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "PYTHONPATH": str(ROOT), "MINARI_DATASETS_PATH": str(pendulum_minari_root)})
  assert proc.returncode != 0
  assert "unknown sweep key 'agent.cql.wieght'" in proc.stderr
  assert "Did you mean 'agent.cql.weight'" in proc.stderr
  assert not workdir.exists()


def test_members_are_evaluated_in_one_vector_env_as_each_alone(sweep_run, tiny_config,
                                                               monkeypatch):
  """One vector env of M·E slots; each member's scores equal evaluating it alone."""
  _, result = sweep_run
  dataset = runner.load_data(tiny_config)
  agent = runner.prepare(tiny_config, 4).agent
  made = []
  original = evaluation.make_vector_env
  monkeypatch.setattr(evaluation, "make_vector_env",
                      lambda env_id, n, kwargs=None: made.append(n) or original(env_id, n, kwargs))
  evaluate = sweep.make_member_evaluator(agent, dataset, 4, 3, 0.99)
  scores = evaluate(result.state, 123)
  assert made == [12]
  for m in range(4):
    alone = evaluation.evaluate_agent(agent, evaluation.seed_state(result.state, m), dataset,
                                      num_episodes=3, seed=123)
    assert scores["eval/return"][m] == pytest.approx(alone.returns.mean(), rel=1e-9)


def test_plot_sweep_reads_sweeps_and_runs_that_differ_in_config(sweep_run, alone_runs, tmp_path):
  """A plain run whose config equals a sweep setting joins that setting's row."""
  from experiments import plot
  (workdir, result), (zero_dir, zero) = sweep_run, alone_runs[0]
  rows = plot.sweep_table([workdir, zero_dir])
  by_weight = {r["setting"]["agent.cql.weight"]: r for r in rows}
  assert set(by_weight) == {0.0, 5.0} and len(rows) == 2
  final = result.results["final"]["eval/normalized_score"]
  expected = final[:2] + zero.results["final"]["eval/normalized_score"]
  assert by_weight[0.0]["scores"] == expected
  assert by_weight[0.0]["mean"] == pytest.approx(np.mean(expected))
  assert by_weight[5.0]["scores"] == final[2:]
  paths = plot.plot_sweep([workdir, zero_dir], tmp_path)
  assert [p.name for p in paths] == ["sweep.png", "sweep_curves.png"]
  assert all(p.stat().st_size > 1000 for p in paths)
