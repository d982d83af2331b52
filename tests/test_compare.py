"""experiments.compare: resumable per-run records, the RESULTS.md section, and own-data configs."""
import json

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest

from cql_jax import runner
from cql_jax.data import minari_io
from experiments import compare
from experiments import results_md
from cql_jax.configs import locomotion

FLAGS = flags.FLAGS


def _tiny_flags(tmp_path, **extra):
  compare.define_flags()
  if not FLAGS.is_parsed():
    FLAGS.mark_as_parsed()
  values = dict(env="pendulum", datasets=["medium"], methods=["bc", "sac"], num_steps=20,
                steps_per_chunk=10, num_seeds=2, hidden=8, eval_episodes=1,
                scores=str(tmp_path / "scores.jsonl"), write_results=True,
                results=str(tmp_path / "RESULTS.md"))
  values.update(extra)
  return flagsaver.flagsaver(**values)


def _lines(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_compare_records_each_run_and_resumes(pendulum_minari_root, tmp_path, monkeypatch):
  del pendulum_minari_root
  results = tmp_path / "RESULTS.md"
  results.write_text("# Results\n\n## Other section\n\nkept as it is\n")
  with _tiny_flags(tmp_path):
    compare.main([])
    records = _lines(tmp_path / "scores.jsonl")
    assert [(r["dataset"], r["method"]) for r in records] == [("medium", "bc"), ("medium", "sac")]
    for r in records:
      assert len(r["scores"]) == 2 and np.all(np.isfinite(r["scores"]))
      assert r["settings"]["num_steps"] == 20
    text = results.read_text()
    assert "## Other section\n\nkept as it is" in text
    assert compare.heading("pendulum") in text and "--num_steps=20" in text
    bc = np.asarray(records[0]["scores"])
    assert "| medium | " in text and f"{bc.mean():.1f} ± {bc.std():.1f}" in text

    # Same settings: nothing is retrained.
    def must_not_train(dataset, name):
      raise AssertionError(f"{name} was retrained although its record exists")
    monkeypatch.setattr(compare, "run_one", must_not_train)
    compare.main([])
    assert len(_lines(tmp_path / "scores.jsonl")) == 2

  # Different settings: the old records do not count.
  trained = []
  def fake_run(dataset, name):
    trained.append(name)
    return {"scores": [1.0, 3.0], "returns": [0.0, 0.0], "train_seconds": 0.0, "eval_seconds": 0.0}
  monkeypatch.setattr(compare, "run_one", fake_run)
  with _tiny_flags(tmp_path, num_steps=30):
    compare.main([])
  assert trained == ["bc", "sac"]
  assert len(_lines(tmp_path / "scores.jsonl")) == 4
  assert "| medium | " in results.read_text() and "2.0 ± 1.0" in results.read_text()
  assert results.read_text().count(compare.heading("pendulum")) == 1


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
