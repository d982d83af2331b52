"""experiments.table4 through the runner: runs reused from their checkpoints, true returns by hand."""
import gymnasium as gym
import jax
import numpy as np

from cql_jax import writers
from cql_jax.makers import pendulum
from experiments import budget as budget_lib
from experiments import table4

BUDGET = budget_lib.Budget(num_steps=20, steps_per_chunk=10, num_seeds=2, hidden=8, batch_size=32,
                           eval_episodes=1)
SETTINGS = table4.ValueSettings(horizon=15, value_samples=4)


def test_true_discounted_return_matches_a_hand_rollout():
  obs0 = np.array([[np.cos(2.0), np.sin(2.0), 0.5], [1.0, 0.0, -1.0]], np.float32)
  constant = lambda obs, key: np.full((len(obs), 1), 0.7, np.float32)
  given = obs0.copy()
  got = table4.true_discounted_returns(constant, obs0, 0.9, 12, jax.random.key(0))
  # The initial states are the caller's (the dataset's D0, reused for every seed): untouched.
  np.testing.assert_array_equal(obs0, given)
  for i, o in enumerate(obs0):
    # Pendulum's dynamics by hand (gymnasium's equations), from the angle and velocity.
    th, thdot, total = np.arctan2(o[1], o[0]), float(o[2]), 0.0
    for t in range(12):
      u = 0.7
      norm = ((th + np.pi) % (2 * np.pi)) - np.pi
      total += 0.9 ** t * -(norm ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2)
      thdot = np.clip(thdot + (3 * 10.0 / 2 * np.sin(th) + 3.0 / 1.0 * u) * 0.05, -8, 8)
      th = th + thdot * 0.05
    np.testing.assert_allclose(got[i], total, rtol=1e-4)


def test_table4_trains_through_the_runner_and_reuses_runs(pendulum_minari_root, tmp_path):
  del pendulum_minari_root
  workdir = tmp_path / "runs"
  methods = ["cql_h", "ensemble_2"]
  results, configs = table4.run(["medium"], methods, BUDGET, SETTINGS, workdir, log=lambda *_: 0)
  for name in methods:
    pred, true = results[(name, "medium")]
    assert pred.shape == true.shape == (2,) and np.all(np.isfinite(pred)) and np.all(true < 0)
    evals = [r for r in writers.read_jsonl(workdir / "medium" / name / writers.METRICS_FILE)
             if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [20]
  assert configs["Ensemble(2)"]["agent"]["cql"]["weight"] == 0.0
  assert configs["CQL(H)"]["agent"]["backup_entropy"] is False

  # A rerun restores the finished runs' states instead of training: the same values come back.
  metrics = (workdir / "medium" / "cql_h" / writers.METRICS_FILE).read_text()
  again, _ = table4.run(["medium"], methods, BUDGET, SETTINGS, workdir, log=lambda *_: 0)
  for key in results:
    np.testing.assert_array_equal(again[key][0], results[key][0])
    np.testing.assert_array_equal(again[key][1], results[key][1])
  assert (workdir / "medium" / "cql_h" / writers.METRICS_FILE).read_text() == metrics

  body = table4.results_body(["medium"], methods, results, configs, BUDGET, SETTINGS, workdir)
  assert "Ensemble(2): SAC with α = 0 (no CQL term), the minimum over 2 critics" in body
  assert "CQL(H): CQL with α = 5" in body and "backup without the entropy term" in body
  assert "| CQL(H) | " in body and "| Ensemble(2) | " in body
