"""A Dopamine-format replay recorded from real ALE Pong, read back by the DQN-replay reader."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax.data import dopamine_replay as dr
from cql_jax.envs import atari_recorder

CAPACITY = 120


@pytest.fixture(scope="module", params=[True, False], ids=["legacy", "episode_end_indices"])
def recorded(request, tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("replay_logs"))
  # Two snapshots 100 agent steps apart: with padding the second has wrapped (cursor not 0).
  info = atari_recorder.record_atari_replay(
      directory, "Pong", num_checkpoints=2, capacity=CAPACITY, steps_per_checkpoint=100,
      max_episode_steps=30, seed=0, legacy=request.param, return_stacks=True)
  return request.param, info


def _positions(info):
  """Per checkpoint: (first add held, number held), from add_count and the capacity alone."""
  return [(count - min(count, CAPACITY), min(count, CAPACITY)) for count in info.add_counts]


def test_files_are_dopamine_checkpoints(recorded):
  legacy, info = recorded
  names = {"$store$_observation", "$store$_action", "$store$_reward", "$store$_terminal",
           "add_count", "invalid_range"} | (set() if legacy else {"episode_end_indices"})
  want = {f"{name}_ckpt.{c}.gz" for name in names for c in (0, 1)}
  assert set(os.listdir(info.directory)) == want  # nothing half-written left behind
  assert info.add_counts[0] < CAPACITY < info.add_counts[1]  # filling, then wrapped
  assert info.num_episodes >= 6  # 30-step episodes over 200 steps
  padding = (info.stacks == 0).all(axis=(1, 2, 3))
  assert len(info.stacks) == info.add_counts[1]
  assert padding.sum() == 3 * info.num_episodes  # K - 1 padding adds per episode start


def test_sampled_observations_are_the_envs_own(recorded):
  """Every valid index, stacked by the sampler, equals what the Pong env showed the policy."""
  legacy, info = recorded
  replay = dr.load_dopamine_replay(info.directory, [0, 1])
  stacks = info.stacks
  padding = (stacks == 0).all(axis=(1, 2, 3))
  ends_episode = np.append(padding[1:], False)  # the next add starts another episode's padding
  data = dr.to_device(replay)

  @jax.jit
  def at(t):
    return dr.sample_stacked(data.frames, data.actions, data.rewards, data.terminals,
                             t[None], jax.random.key(0), 1, clip_reward=None)

  expected_valid, offset = [], 0
  for first, held in _positions(info):
    full = first > 0
    for p in range(held):
      a = first + p
      # Real step with its stack and next step stored; a time-out's last step is only valid
      # where it carries the terminal flag (the legacy layout).
      if (not padding[a] and (4 if full else 3) <= p < held - 1
          and (legacy or not ends_episode[a])):
        expected_valid.append((offset + p, a))
    offset += held
  np.testing.assert_array_equal(replay.valid_indices, [t for t, _ in expected_valid])
  for t, a in expected_valid:
    batch = jax.device_get(at(jnp.int32(t)))
    np.testing.assert_array_equal(batch.obs[0], stacks[a])
    assert float(batch.discount[0]) == (0.0 if ends_episode[a] else 1.0)
    if not ends_episode[a]:
      np.testing.assert_array_equal(batch.next_obs[0], stacks[a + 1])


def test_recording_refuses_a_directory_with_checkpoints(recorded):
  _, info = recorded
  with pytest.raises(FileExistsError, match="already holds replay checkpoints"):
    atari_recorder.record_atari_replay(info.directory, num_checkpoints=1, capacity=20)
