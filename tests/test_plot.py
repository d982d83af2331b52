"""experiments.plot on hand-written run directories: panels per dataset, labels overlaid, seeds pooled."""
import json

import numpy as np
import pytest

from cql_jax import writers
from experiments import plot


def _run(path, dataset, seeds, steps, scores, extra=()):
  """A run directory as the runner writes it: config.json, metrics.jsonl, results.json."""
  path.mkdir(parents=True)
  (path / "config.json").write_text(json.dumps(
      {"config": {"dataset_id": dataset, "extra_dataset_ids": list(extra)}, "seeds": seeds}))
  with open(path / writers.METRICS_FILE, "w") as f:
    for step, row in zip(steps, scores):
      f.write(json.dumps({"step": step, "kind": "train", "seeds": seeds, "critic/loss": [0.0] * len(seeds)}) + "\n")
      f.write(json.dumps({"step": step, "kind": "eval", "seeds": seeds,
                          "eval/normalized_score": list(row)}) + "\n")
  (path / "results.json").write_text(json.dumps({"final": {"eval/normalized_score": list(scores[-1])}}))
  return str(path)


@pytest.fixture
def runs(tmp_path):
  rng = np.random.default_rng(0)
  a1 = rng.normal(50, 10, (3, 2))
  a1b = rng.normal(50, 10, (4, 1))   # seed 2 of A on d1, run separately, one more evaluation
  a2 = rng.normal(20, 5, (3, 2))
  b1 = rng.normal(10, 5, (3, 2))
  groups = {
      "A": [_run(tmp_path / "a-d1", "d1", [0, 1], [10, 20, 30], a1),
            _run(tmp_path / "a-d1-s2", "d1", [2], [10, 20, 30, 40], a1b),
            _run(tmp_path / "a-d2", "d2", [0, 1], [10, 20, 30], a2, extra=("d2b",))],
      "B": [_run(tmp_path / "b-d1", "d1", [0, 1], [10, 20, 30], b1)],
  }
  return groups, {"a1": a1, "a1b": a1b, "a2": a2, "b1": b1}


def test_curves_are_grouped_by_dataset_with_seeds_pooled(runs):
  groups, values = runs
  curves = plot.curves_by_dataset(groups)
  assert list(curves) == ["d1", "d2+d2b"]
  assert list(curves["d1"]) == ["A", "B"] and list(curves["d2+d2b"]) == ["A"]
  steps, pooled = curves["d1"]["A"]
  assert steps.tolist() == [10, 20, 30]  # the steps both runs share
  np.testing.assert_array_equal(pooled, np.concatenate([values["a1"], values["a1b"][:3]], axis=1))
  np.testing.assert_array_equal(curves["d1"]["B"][1], values["b1"])


def test_pngs_and_aggregate(runs, tmp_path):
  groups, values = runs
  out = plot.plot_curves(groups, tmp_path / "out" / "curves.png")
  assert out.stat().st_size > 5000
  finished = {"A": [groups["A"][0], groups["A"][2]], "B": [groups["B"][0], groups["B"][0]]}
  summary = plot.aggregate(finished, tmp_path / "out", reps=200)
  assert (tmp_path / "out" / "aggregate.png").stat().st_size > 5000
  # Mean over the [seeds, datasets] matrix of final scores / 100, computed by hand.
  mean_a = np.mean(np.stack([values["a1"][-1], values["a2"][-1]], axis=1)) / 100
  assert summary["A"]["Mean"]["point"] == pytest.approx(mean_a)
  assert summary["A"]["matrix_shape"] == [2, 2]
  lo, hi = summary["B"]["IQM"]["ci95"]
  assert lo <= summary["B"]["IQM"]["point"] <= hi


def test_runs_without_a_shared_step_are_refused(tmp_path):
  a = _run(tmp_path / "a", "d", [0], [10], np.ones((1, 1)))
  b = _run(tmp_path / "b", "d", [1], [20], np.ones((1, 1)))
  with pytest.raises(ValueError, match="share no evaluation step"):
    plot.curves_by_dataset({"A": [a, b]})
  assert plot.parse_runs([f"X={tmp_path}/*"]) == {"X": [a, b]}
  with pytest.raises(ValueError, match="no run directory"):
    plot.parse_runs([f"{tmp_path}/none*"])
