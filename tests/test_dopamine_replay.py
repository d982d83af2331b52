"""DQN-replay reader: a tiny replay written in Dopamine's on-disk format, then loaded and sampled."""
import gzip
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax.data import dopamine_replay as dr

CAPACITY = 12


def _save(directory, name, checkpoint, array):
  with gzip.open(os.path.join(directory, f"{name}_ckpt.{checkpoint}.gz"), "wb") as f:
    np.save(f, array, allow_pickle=False)


def _write_checkpoint(directory, checkpoint, frames, actions, rewards, terminals, add_count=None):
  _save(directory, "$store$_observation", checkpoint, frames)
  _save(directory, "$store$_action", checkpoint, actions)
  _save(directory, "$store$_reward", checkpoint, rewards)
  _save(directory, "$store$_terminal", checkpoint, terminals)
  if add_count is not None:
    _save(directory, "add_count", checkpoint, np.array(add_count, np.int64))


def _chronological(checkpoint, frame_shape=(84, 84), capacity=CAPACITY):
  """Step i of checkpoint c has every pixel = c * capacity + i + 1 (never 0, so zeroing shows)."""
  ids = checkpoint * capacity + np.arange(capacity)
  frames = np.broadcast_to((ids + 1).astype(np.uint8)[:, None, None],
                           (capacity, *frame_shape)).copy()
  actions = (ids % 3).astype(np.int32)
  rewards = (ids * 0.5 - 2).astype(np.float32)
  terminals = np.zeros(capacity, np.uint8)
  return frames, actions, rewards, terminals


@pytest.fixture(scope="module")
def replay_dir(tmp_path_factory):
  """Two checkpoints. Episode ends after step 5 of ckpt 0 and step 2 of ckpt 1. Checkpoint 1 is
  stored as a wrapped circular buffer (cursor 4), so the reader must roll it back into order."""
  directory = str(tmp_path_factory.mktemp("replay_logs"))
  ckpt0 = _chronological(0)
  ckpt0[3][5] = 1
  _write_checkpoint(directory, 0, *ckpt0)
  ckpt1 = _chronological(1)
  ckpt1[3][2] = 1
  rolled = [np.roll(x, 4, axis=0) for x in ckpt1]
  _write_checkpoint(directory, 1, *rolled, add_count=2 * CAPACITY + 4)
  return directory, ckpt0, ckpt1


def test_load_full(replay_dir):
  directory, ckpt0, ckpt1 = replay_dir
  replay = dr.load_dopamine_replay(directory, [0, 1])
  for got, a, b in zip(replay[:4], ckpt0, ckpt1):
    np.testing.assert_array_equal(got, np.concatenate([a, b]))
  np.testing.assert_array_equal(replay.valid_indices,
                                list(range(3, 11)) + list(range(15, 23)))
  assert replay.frames.dtype == np.uint8 and replay.actions.dtype == np.int32


def test_subset_sizes(replay_dir):
  directory, _, _ = replay_dir
  head = dr.load_dopamine_replay(directory, [0, 1], fraction=0.5)
  assert head.frames.shape[0] == 12
  np.testing.assert_array_equal(head.valid_indices, [3, 4, 9, 10])
  np.testing.assert_array_equal(head.frames[:6, 0, 0], np.arange(1, 7))  # the head of ckpt 0
  shifted = dr.load_dopamine_replay(directory, [0, 1], fraction=0.5, window="random", seed=3)
  assert shifted.frames.shape[0] == 12 and shifted.num_transitions == 4
  for segment in (shifted.frames[:6, 0, 0], shifted.frames[6:, 0, 0]):
    np.testing.assert_array_equal(np.diff(segment.astype(int)), 1)  # still contiguous
  with pytest.raises(ValueError):
    dr.load_dopamine_replay(directory, [0], fraction=0.0)


def _sample_at(replay, t):
  """The transition at index t, through the jit-able sampler (a one-element valid set)."""
  return dr.sample_stacked(replay.frames, replay.actions, replay.rewards, replay.terminals,
                           jnp.array([t], jnp.int32), jax.random.key(t), 1)


# index t -> (obs pixel per stack slot, next_obs pixel per slot, discount). Frame value = index+1;
# terminals after index 5 (ckpt 0) and index 14 (ckpt 1, its step 2).
EXPECTED = {
    4: ((2, 3, 4, 5), (3, 4, 5, 6), 1.0),
    5: ((3, 4, 5, 6), (0, 0, 0, 7), 0.0),
    6: ((0, 0, 0, 7), (0, 0, 7, 8), 1.0),
    7: ((0, 0, 7, 8), (0, 7, 8, 9), 1.0),
    8: ((0, 7, 8, 9), (7, 8, 9, 10), 1.0),
    14: ((12, 13, 14, 15), (0, 0, 0, 16), 0.0),
    15: ((0, 0, 0, 16), (0, 0, 16, 17), 1.0),
    17: ((0, 16, 17, 18), (16, 17, 18, 19), 1.0),
}


@pytest.mark.parametrize("t", sorted(EXPECTED))
def test_stacking_across_episode_boundaries(replay_dir, t):
  directory, _, _ = replay_dir
  replay = dr.load_dopamine_replay(directory, [0, 1])
  batch = _sample_at(replay, t)
  obs_pixels, next_pixels, discount = EXPECTED[t]
  assert batch.obs.shape == (1, 84, 84, 4) and batch.obs.dtype == jnp.uint8
  np.testing.assert_array_equal(batch.obs[0, 0, 0], obs_pixels)
  np.testing.assert_array_equal(batch.next_obs[0, 0, 0], next_pixels)
  np.testing.assert_array_equal(batch.obs[0, 83, 83], obs_pixels)  # whole frames, not a pixel
  assert float(batch.discount[0]) == discount
  assert int(batch.action[0]) == t % 3
  assert float(batch.reward[0]) == t * 0.5 - 2


def test_jitted_sampler_draws_only_valid_indices(replay_dir):
  directory, _, _ = replay_dir
  replay = dr.load_dopamine_replay(directory, [0, 1])
  sample = jax.jit(dr.make_sampler(replay, batch_size=64, clip_reward=1.0))
  batch = sample(jax.random.key(0))
  assert batch.obs.shape == (64, 84, 84, 4) and batch.next_obs.shape == (64, 84, 84, 4)
  newest = np.asarray(batch.obs[:, 0, 0, -1]).astype(int) - 1  # frame value = index + 1
  assert set(newest) <= set(replay.valid_indices.tolist())
  np.testing.assert_array_equal(batch.next_obs[:, 0, 0, -1], batch.obs[:, 0, 0, -1] + 1)
  assert np.all(np.abs(np.asarray(batch.reward)) <= 1.0)


def test_paper_settings_and_memory(tmp_path):
  """50 small checkpoints: 1% / 10% keep that share of each; first 20% keeps 10 of them."""
  capacity = 1000
  for checkpoint in range(50):
    _write_checkpoint(str(tmp_path), checkpoint, *_chronological(checkpoint, (2, 2), capacity))
  one = dr.load_paper_setting(str(tmp_path), "uniform_1pct")
  ten = dr.load_paper_setting(str(tmp_path), "uniform_10pct")
  first = dr.load_paper_setting(str(tmp_path), "first_20pct")
  assert one.frames.shape[0] == 50 * 10 and one.num_transitions == 50 * (10 - 4)
  assert ten.frames.shape[0] == 50 * 100 and ten.num_transitions == 50 * (100 - 4)
  assert first.frames.shape[0] == 10 * capacity
  np.testing.assert_array_equal(first.frames[-1], (10 * capacity) % 256)
  # Per stored step: frame + int32 action + float32 reward + uint8 terminal + int32 index.
  per_step = 2 * 2 + 4 + 4 + 1
  expected = (per_step * first.frames.shape[0] + 4 * first.num_transitions) / first.num_transitions
  np.testing.assert_allclose(dr.bytes_per_million_transitions(first), expected * 1e6)


def test_bytes_per_million_for_atari_frames(replay_dir):
  directory, _, _ = replay_dir
  replay = dr.load_dopamine_replay(directory, [0])
  # 84*84 + 4 + 4 + 1 bytes per step, + 4 per valid index; 8 of 12 steps are valid here.
  want = ((84 * 84 + 9) * 12 + 4 * 8) / 8 * 1e6
  np.testing.assert_allclose(dr.bytes_per_million_transitions(replay), want)


def test_sample_fn_takes_the_replay_as_an_argument(replay_dir):
  """The chunk-compatible sampler reads `data` it is given, so one jit serves any replay."""
  directory, _, _ = replay_dir
  full = dr.to_device(dr.load_dopamine_replay(directory, [0, 1]))
  head = dr.to_device(dr.load_dopamine_replay(directory, [0, 1], fraction=0.5))
  sample = jax.jit(dr.sample_fn(batch_size=32, clip_reward=None))
  newest_full = np.asarray(sample(full, jax.random.key(0)).obs[:, 0, 0, -1]).astype(int) - 1
  newest_head = np.asarray(sample(head, jax.random.key(1)).obs[:, 0, 0, -1]).astype(int) - 1
  assert set(newest_full) <= set(np.asarray(full.valid_indices).tolist())
  assert len(set(newest_full)) > 4  # the full replay has 16 valid steps; the head only 4.
  # head keeps steps 0-5 of each checkpoint; valid ones are 3, 4 (ckpt 0) and 15, 16 (ckpt 1).
  assert set(newest_head) <= {3, 4, 15, 16}
  closed = dr.make_sampler(dr.load_dopamine_replay(directory, [0, 1]), 32, clip_reward=None)
  np.testing.assert_array_equal(closed(jax.random.key(2)).obs, sample(full, jax.random.key(2)).obs)
