"""Atari: the eval env's observation format, and a Nature-CNN agent trained on a tiny replay."""
import gzip
import os

import jax
import numpy as np

from cql_jax import train
from cql_jax.data import dopamine_replay as dr
from cql_jax.discrete.agent import default_config, make_discrete_agent


def test_pong_env_yields_stacked_uint8_frames():
  from cql_jax.envs import atari
  env = atari.make_atari_env("Pong", seed=0)
  try:
    obs, _ = env.reset(seed=0)
    assert obs.shape == (84, 84, 4) and obs.dtype == np.uint8
    assert env.action_space.n == 6  # Pong's minimal action set.
    # Before the first step only the newest slot holds a frame; older slots are zero padding.
    assert not obs[..., :3].any() and obs[..., 3].any()
    for _ in range(3):
      obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (84, 84, 4) and obs.dtype == np.uint8
    assert obs[..., 0].any()  # after 3 steps the stack is full of real frames.
  finally:
    env.close()


def _write_replay(directory, num_checkpoints=2, capacity=16, num_actions=6, seed=0):
  """Random frames/actions/rewards in Dopamine's gzipped np.save layout; an episode ends at 7."""
  rng = np.random.default_rng(seed)
  for ckpt in range(num_checkpoints):
    arrays = {
        "$store$_observation": rng.integers(0, 256, (capacity, 84, 84), dtype=np.uint8),
        "$store$_action": rng.integers(0, num_actions, capacity).astype(np.int32),
        "$store$_reward": rng.normal(size=capacity).astype(np.float32),
        "$store$_terminal": (np.arange(capacity) == 7).astype(np.uint8),
    }
    for name, array in arrays.items():
      with gzip.open(os.path.join(directory, f"{name}_ckpt.{ckpt}.gz"), "wb") as f:
        np.save(f, array, allow_pickle=False)


def test_cnn_agent_runs_a_scanned_chunk_on_stacked_replay(tmp_path):
  _write_replay(str(tmp_path))
  replay = dr.to_device(dr.load_dopamine_replay(str(tmp_path), [0, 1]))
  config = default_config()  # Nature CNN + QR-DQN + CQL, the paper's agent.
  config.num_quantiles = 8  # small head: the test checks plumbing, not the paper's size.
  agent = make_discrete_agent(config, (84, 84, 4), num_actions=6)
  state = agent.init(jax.random.key(0))
  before = jax.device_get(state.params)
  chunk = train.compile_chunk(agent, 4, 3, sample=dr.sample_fn(4))
  state, metrics = chunk(state, replay, jax.random.key(1))
  assert int(state.step) == 3
  assert metrics["critic/loss"].shape == (3,)
  assert np.all(np.isfinite(np.asarray(metrics["critic/loss"])))
  assert np.all(np.asarray(metrics["cql/penalty"]) > 0.0)
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), before, jax.device_get(state.params))
  assert any(jax.tree.leaves(moved))
  frames = np.zeros((2, 84, 84, 4), np.uint8)
  actions = agent.act(state, frames, jax.random.key(2), True)
  assert actions.shape == (2,) and np.all((0 <= actions) & (actions < 6))


def test_evaluate_atari_agent_runs_the_cnn_policy_in_pong():
  from cql_jax.envs import atari
  config = default_config()
  config.loss, config.cql.weight = "dqn", 0.0
  agent = make_discrete_agent(config, (84, 84, 4), num_actions=6)
  state = agent.init(jax.random.key(0))
  # A few steps only: checks the plumbing (shapes, dtypes, seeding), not a score.
  result = atari.evaluate_atari_agent(agent, state, "Pong", num_episodes=2, seed=0, max_steps=5)
  assert result.returns.shape == (2,) and result.normalized is None
  np.testing.assert_array_equal(result.lengths, [5, 5])
  assert np.all(result.returns <= 0.0)  # Pong never rewards a point within 5 agent steps.
