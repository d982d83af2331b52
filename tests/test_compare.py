"""experiments.compare: runs through the runner, resumable, and RESULTS.md generated from configs."""
import json

import numpy as np
import pytest

from cql_jax import checkpoints
from cql_jax import runner
from cql_jax import writers
from cql_jax.data import minari_io
from experiments import budget as budget_lib
from experiments import compare
from experiments import plot
from experiments import results_md
from cql_jax.configs import locomotion

TINY = budget_lib.Budget(num_steps=20, steps_per_chunk=10, num_seeds=2, hidden=8, batch_size=32,
                         eval_every=10, eval_episodes=1)


def _write(records, behaviour, results, workdir, budget=TINY, methods=("bc", "sac")):
  body = compare.results_body("pendulum", ["medium"], list(methods), records, behaviour, budget,
                              workdir)
  results_md.write_section(str(results), compare.heading("pendulum"), body)
  return results.read_text()


def test_compare_runs_through_the_runner_and_resumes(pendulum_minari_root, tmp_path, monkeypatch):
  del pendulum_minari_root
  results = tmp_path / "RESULTS.md"
  results.write_text("# Results\n\n## Other section\n\nkept as it is\n")
  workdir = tmp_path / "runs"
  records, behaviour = compare.run("pendulum", ["medium"], ["bc", "sac"], TINY, workdir)
  for method in ("bc", "sac"):
    path = compare.run_dir(workdir, "medium", method)
    saved = json.loads((path / runner.RESULTS_FILE).read_text())
    assert records[("medium", method)]["scores"] == saved["final"]["eval/normalized_score"]
    assert len(saved["final"]["eval/normalized_score"]) == 2
    assert np.all(np.isfinite(saved["final"]["eval/normalized_score"]))
    # The same outputs as any experiments.train run, so plot reads them.
    assert (path / "tb" / "seed_0").is_dir()
    assert checkpoints.Checkpointer(path / "checkpoints", 1).all_steps() == [20]
    steps, values = plot.learning_curve(path)
    assert steps.tolist() == [10, 20] and values.shape == (2, 2)
    config = json.loads((path / runner.CONFIG_FILE).read_text())
    assert config["seeds"] == [0, 1] and config["config"]["num_steps"] == 20
  assert records[("medium", "bc")]["config"]["agent"]["algorithm"] == "bc"

  text = _write(records, behaviour, results, workdir)
  assert "## Other section\n\nkept as it is" in text
  assert text.count(compare.heading("pendulum")) == 1 and "--num_steps=20" in text
  bc = np.asarray(records[("medium", "bc")]["scores"])
  assert "| medium | " in text and f"{bc.mean():.1f} ± {bc.std():.1f}" in text
  # The setup sentences come from the runs' configs: only the methods that ran are described,
  # and the critic's settings are those of the runs (8-unit layers, critic lr 1e-3).
  assert "BC: the actor trained by the behaviour-cloning loss alone" in text
  assert "offline SAC: SAC with α = 0 (no CQL term), the minimum over 2 critics" in text
  assert "critics 8-8 hidden units, critic lr 0.001" in text and "backup without the entropy" in text
  assert "CQL(ρ)" not in text and "α = 5" not in text and "CQL with" not in text

  # Same settings: nothing is retrained.
  def must_not_train(config, path, seeds):
    raise AssertionError(f"{path} was retrained although it is finished")
  monkeypatch.setattr(compare, "run_one", must_not_train)
  again, _ = compare.run("pendulum", ["medium"], ["bc", "sac"], TINY, workdir)
  assert again == records

  # Other settings: the finished runs do not count.
  trained = []
  def fake_run(config, path, seeds):
    trained.append(path.name)
    return {"final": {"eval/normalized_score": [1.0, 3.0], "eval/return": [0.0, 0.0]}}
  monkeypatch.setattr(compare, "run_one", fake_run)
  longer = budget_lib.Budget(**{**TINY.__dict__, "num_steps": 30})
  records, behaviour = compare.run("pendulum", ["medium"], ["bc", "sac"], longer, workdir)
  assert trained == ["bc", "sac"]
  text = _write(records, behaviour, results, workdir, longer)
  assert "| medium | " in text and "2.0 ± 1.0" in text
  assert text.count(compare.heading("pendulum")) == 1

  # Through the runner, a run with another network is refused before any training, naming the
  # change; the finished run is left as it was.
  monkeypatch.undo()
  before = (compare.run_dir(workdir, "medium", "bc") / writers.METRICS_FILE).read_text()
  wider = budget_lib.Budget(**{**TINY.__dict__, "hidden": 16})
  with pytest.raises(ValueError, match="actor_hidden_sizes"):
    compare.run("pendulum", ["medium"], ["bc"], wider, workdir)
  assert (compare.run_dir(workdir, "medium", "bc") / writers.METRICS_FILE).read_text() == before


def test_setup_sentences_follow_each_methods_config():
  from cql_jax.configs import base
  from cql_jax.continuous import variants
  agent = base.short_budget_agent_config(32)
  runs = {}
  for method, lr in (("cql_rho", 1e-3), ("cql_h", 3e-4)):
    config = variants.variant_config(method, agent)
    config.critic_lr = lr
    runs[compare.label(method)] = {"agent": config.to_dict(), "num_steps": 100, "batch_size": 64,
                                   "eval_every": 50, "eval_episodes": 3}
  lagrange = variants.variant_config("cql_h", agent)
  lagrange.cql.lagrange, lagrange.cql.target_gap = True, 2.5
  runs["CQL-L"] = {**runs["CQL(H)"], "agent": lagrange.to_dict()}
  text = results_md.describe_setup(runs, (0, 1, 2))
  assert "100 gradient steps, 3 seeds (0, 1, 2)" in text and "batch 64" in text
  # Critic lrs differ, so each method's is named; the shared actor lr is given once.
  assert "critic lr 0.001 (CQL(ρ), CQL-L) / 0.0003 (CQL(H))," in text
  assert "actor lr 0.0003;" in text
  assert "CQL(ρ): CQL with α = 5; penalty T·log E_{a~π(s)}[exp Q] from 10 samples" in text
  assert "CQL(H): CQL with α = 5; penalty log ∫ exp Q importance-sampled" in text
  assert "CQL-L: CQL with α′ tuned by dual descent towards the gap τ = 2.5" in text
  assert "3 episodes per seed" in text and "every 50 steps" in text


def test_write_section_failure_leaves_file_intact(tmp_path, monkeypatch):
  path = tmp_path / "RESULTS.md"
  path.write_text("## A\n\nold\n")
  def fail(*args):
    raise OSError("disk full")
  monkeypatch.setattr(results_md.os, "replace", fail)
  with pytest.raises(OSError, match="disk full"):
    results_md.write_section(str(path), "## A", "new")
  assert path.read_text() == "## A\n\nold\n"
  assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]


def test_locomotion_config_reads_own_datasets():
  config = locomotion.get_config("cql_jax/walker2d-medium-replay")
  assert config.dataset_id == "cql_jax/walker2d/medium-replay-v0"
  assert "+" not in config.dataset_id  # one dataset, nothing appended.
  # The project's medium-expert is one dataset, Minari's is two concatenated.
  assert locomotion.get_config("cql_jax/hopper-medium-expert").dataset_id == \
      "cql_jax/hopper/medium-expert-v0"
  assert locomotion.get_config("hopper-medium-expert").dataset_id.split("+") == [
      "mujoco/hopper/medium-v0", "mujoco/hopper/expert-v0"]
  with pytest.raises(ValueError, match="cql_jax/<env>-<kind>"):
    locomotion.get_config("cql_jax/hopper-simple")


def test_missing_own_dataset_names_the_command_that_makes_it(tmp_path, monkeypatch):
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
  with pytest.raises(minari_io.DatasetError) as error:
    runner.load_data(locomotion.get_config("cql_jax/halfcheetah-medium"))
  message = str(error.value)
  assert "cannot be downloaded" in message
  assert "python -m experiments.make_datasets --env=halfcheetah" in message
