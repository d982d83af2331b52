"""The same absl runner trains discrete agents: CartPole from Minari, Atari from DQN-replay files."""
import json

import numpy as np
import pytest

from cql_jax import runner
from cql_jax import writers
from cql_jax.makers import cartpole
from cql_jax.configs import atari
from cql_jax.configs import base
from cql_jax.configs import cartpole as cartpole_config
from tests.test_atari_env import _write_replay


def test_cartpole_config_trains_through_the_runner(tmp_path, monkeypatch):
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
  config = base.override(cartpole_config.get_config("medium"), {
      "agent.hidden_sizes": (16, 16), "generation.num_episodes": 4, "num_steps": 40,
      "steps_per_chunk": 20, "eval_every": 40, "checkpoint_every": 40, "eval_episodes": 2,
      "batch_size": 16})
  result = runner.train_and_evaluate(config, tmp_path / "run", seeds=(0, 1), progress=False)
  final = result.results["final"]
  # A generated dataset carries reference scores, so the runner reports normalized scores.
  assert len(final["eval/normalized_score"]) == 2
  assert all(np.isfinite(final["eval/return"]))
  assert result.results["dataset_id"] == cartpole.dataset_id("medium")


def test_atari_config_trains_on_a_dopamine_replay_through_the_runner(tmp_path):
  replay_dir = tmp_path / "replay_logs"
  replay_dir.mkdir()
  _write_replay(str(replay_dir), num_checkpoints=10, capacity=16)  # first_20pct: ckpts 0-9
  config = base.override(atari.get_config("pong-1"), {
      "atari.replay_dir": str(replay_dir), "atari.setting": "first_20pct",
      "agent.num_quantiles": 4, "num_steps": 2, "steps_per_chunk": 2, "eval_every": 2,
      "checkpoint_every": 2, "eval_episodes": 1, "batch_size": 4,
      "atari.max_episode_steps": 5})  # a full Pong episode would take minutes on a CPU.
  runner.train_and_evaluate(config, tmp_path / "run", seeds=(0,), progress=False)
  saved = json.loads((tmp_path / "run" / "results.json").read_text())
  assert saved["final"]["eval/length"] == [5.0]
  assert "eval/normalized_score" not in saved["final"]  # raw game scores: no references.


def test_atari_without_replay_dir_says_where_to_get_it(tmp_path):
  with pytest.raises(ValueError, match="replay_dir"):
    runner.train_and_evaluate(atari.get_config("breakout-10"), tmp_path, seeds=(0,),
                              progress=False)


def _dataset_rewards(dataset_id):
  """All rewards of a Minari dataset, read with Minari itself (not the project's loader)."""
  import minari
  return np.concatenate([ep.rewards for ep in minari.load_dataset(dataset_id).iterate_episodes()])


def test_diverging_offline_dqn_is_reported(tmp_path, monkeypatch, caplog):
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
  # Offline DQN (no CQL term) with a learning rate of 0.1 and a target refreshed every step.
  config = base.override(cartpole_config.get_config("medium-dqn"), {
      "agent.hidden_sizes": (16, 16), "generation.num_episodes": 4, "num_steps": 150,
      "steps_per_chunk": 50, "eval_every": 150, "checkpoint_every": 150, "eval_episodes": 1,
      "batch_size": 16, "agent.lr": 0.1, "agent.target_update_period": 1})
  with caplog.at_level("WARNING", logger="cql_jax.runner"):
    result = runner.train_and_evaluate(config, tmp_path / "run", seeds=(0, 1), progress=False)
  rewards = _dataset_rewards(cartpole.dataset_id("medium"))
  bound = np.max(np.abs(rewards)) / (1 - config.agent.gamma)
  train = [r for r in writers.read_jsonl(tmp_path / "run" / writers.METRICS_FILE)
           if r["kind"] == "train"]
  for r in train:
    ratio = np.abs(np.asarray(r["critic/q_mean"])) / bound
    # rtol: the training rewards are float32, the recomputation float64.
    np.testing.assert_allclose(r["critic/q_bound_ratio"], ratio, rtol=1e-6)
    np.testing.assert_array_equal(r["warnings/q_divergence"], (ratio > 10.0).astype(float))
  assert np.all(np.asarray(train[-1]["warnings/q_divergence"]) == 1.0), train[-1]
  first = {str(s): next(r["step"] for r in train if r["warnings/q_divergence"][i])
           for i, s in enumerate((0, 1))}
  assert result.results["q_divergence_first_step"] == first
  assert result.results["q_bound"] == pytest.approx(bound)
  warnings = [m for m in caplog.messages if m.startswith("Q is diverging")]
  assert sorted(w.split("(seed ")[1].split(",")[0] for w in warnings) == ["0", "1"]
  assert all(f"= {bound:.4g} that the rewards allow" in w for w in warnings)
