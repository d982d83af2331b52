"""The same absl runner trains discrete agents: CartPole from Minari, Atari from DQN-replay files."""
import json

import numpy as np
import pytest

from cql_jax import runner
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
