"""DQN-replay reader: checkpoints laid out as Dopamine writes them, loaded and sampled.

The checkpoints here are built by `_dopamine_buffer`, a test-side re-statement of Dopamine's
`OutOfGraphReplayBuffer.add`: K-1 all-zero padding steps before every episode, a circular
buffer of fixed capacity, add_count, invalid_range and episode_end_indices. Frames encode
(episode, step) so that every sampled stack can be checked against the episode it came from.
"""
import collections
import gzip
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax.data import dopamine_replay as dr

K = dr.STACK
SHAPE = (3, 3)
GARBAGE = 255  # never-written buffer slots (Dopamine allocates them with np.empty)


def _frame(episode, step):
  """A real frame: pixel (0,0) = episode+1, (0,1)/(0,2) = step in base 250 (+1), rest 7."""
  frame = np.full(SHAPE, 7, np.uint8)
  frame[0, 0], frame[0, 1], frame[0, 2] = episode + 1, step % 250 + 1, step // 250 + 1
  return frame


def _decode(frame):
  """(episode, step) of a real frame, None for a padding (all-zero) frame."""
  frame = np.asarray(frame)
  if not frame.any():
    return None
  return int(frame[0, 0]) - 1, (int(frame[0, 1]) - 1) + 250 * (int(frame[0, 2]) - 1)


def _action(episode, step):
  return (3 * episode + step) % 5


def _reward(episode, step):
  return float(episode) - 0.25 * step


def _dopamine_buffer(episodes, capacity, first_episode=0):
  """Adds `episodes` to a Dopamine-style circular buffer and returns its saved state.

  episodes: list of (length, end) with end in {"terminal", "timeout", None (still running)}.
  Returns (store dict of [capacity, ...] arrays, add_count, episode_end set, invalid_range).
  """
  store = {"observation": np.full((capacity, *SHAPE), GARBAGE, np.uint8),
           "action": np.full(capacity, GARBAGE, np.int32),
           "reward": np.full(capacity, GARBAGE, np.float32),
           "terminal": np.zeros(capacity, np.uint8)}
  add_count, ends = 0, set()

  def add(obs, action, reward, terminal, end):
    nonlocal add_count
    cursor = add_count % capacity
    if end:
      ends.add(cursor)
    else:
      ends.discard(cursor)
    store["observation"][cursor], store["action"][cursor] = obs, action
    store["reward"][cursor], store["terminal"][cursor] = reward, terminal
    add_count += 1

  for i, (length, end) in enumerate(episodes):
    episode = first_episode + i
    for _ in range(K - 1):
      add(np.zeros(SHAPE, np.uint8), 0, 0.0, 0, False)
    for step in range(length):
      last = step == length - 1 and end is not None
      add(_frame(episode, step), _action(episode, step), _reward(episode, step),
          int(last and end == "terminal"), last)
  cursor = add_count % capacity
  invalid = np.array([(cursor - 1 + i) % capacity for i in range(K + 1)], np.int64)
  return store, add_count, ends, invalid


def _save(directory, name, checkpoint, value, pickled=False):
  with gzip.open(os.path.join(directory, f"{name}_ckpt.{checkpoint}.gz"), "wb") as f:
    if pickled:
      pickle.dump(value, f)
    else:
      np.save(f, value, allow_pickle=False)


def _write(directory, checkpoint, buffer, with_invalid_range=True, with_episode_ends=False):
  store, add_count, ends, invalid = buffer
  for key, array in store.items():
    _save(directory, "$store$_" + key, checkpoint, array)
  _save(directory, "add_count", checkpoint, np.array(add_count, np.int64))
  if with_invalid_range:
    _save(directory, "invalid_range", checkpoint, invalid)
  if with_episode_ends:
    _save(directory, "episode_end_indices", checkpoint, {np.int64(i) for i in ends}, pickled=True)


def _reference_valid(buffer, use_episode_ends=True):
  """Valid indices by Dopamine's is_valid_transition, one index at a time, in time order.

  Also excludes stacks whose older frames cross a terminal-free episode end (the reader's one
  stricter rule). Returns time-order indices (oldest stored step = 0).
  """
  store, add_count, ends, invalid = buffer
  capacity = store["terminal"].shape[0]
  full = add_count >= capacity
  cursor = add_count % capacity
  ends = ends if use_episode_ends else set()
  terminal = store["terminal"]
  valid_physical = []
  for index in range(capacity):
    if not full and (index >= cursor - 1 or index < K - 1):
      continue
    if index in set(invalid.tolist()):
      continue
    older = [(index - j) % capacity for j in range(1, K)]
    if any(terminal[i] or i in ends for i in older):
      continue
    if index in ends and not terminal[index]:
      continue
    valid_physical.append(index)
  offset = cursor if full else 0
  return sorted((i - offset) % capacity for i in valid_physical)


def _expected_stack(episode, step):
  """Frames of steps step-K+1..step of `episode`, zeros before its start (oldest first)."""
  return np.stack([_frame(episode, s) if s >= 0 else np.zeros(SHAPE, np.uint8)
                   for s in range(step - K + 1, step + 1)], axis=-1)


# ------------------------------------------------------------------ hand-counted layouts

def test_hand_count_filling_buffer(tmp_path):
  """Not full: pad 0-2, episode A 3-7 (terminal at 7), pad 8-10, B 11-14 (terminal), pad 15-17,
  C 18-20 (running). Valid: 3..7, 11..14, 18, 19 (20 has no next step yet) = 11."""
  buffer = _dopamine_buffer([(5, "terminal"), (4, "terminal"), (3, None)], capacity=24)
  assert buffer[1] == 21
  _write(str(tmp_path), 0, buffer)
  replay = dr.load_dopamine_replay(str(tmp_path), [0])
  want = [3, 4, 5, 6, 7, 11, 12, 13, 14, 18, 19]
  np.testing.assert_array_equal(replay.valid_indices, want)
  assert replay.num_transitions == 11
  assert replay.frames.shape[0] == 21  # never-written slots dropped
  assert not (replay.frames == GARBAGE).any()


def test_hand_count_wrapped_buffer(tmp_path):
  """Capacity 12, 17 adds (cursor 5): time order p0-3 = A's steps 2-5 (terminal at p3), p4-6
  padding, p7-11 = B's steps 0-4. The cursor's invalid range takes p0-3 and p11, padding
  stacks cross the terminal: valid p7..p10 = 4."""
  buffer = _dopamine_buffer([(6, "terminal"), (5, None)], capacity=12)
  assert buffer[1] == 17
  _write(str(tmp_path), 0, buffer)
  replay = dr.load_dopamine_replay(str(tmp_path), [0])
  np.testing.assert_array_equal(replay.valid_indices, [7, 8, 9, 10])
  assert [_decode(f) for f in replay.frames[:4]] == [(0, 2), (0, 3), (0, 4), (0, 5)]
  assert not replay.frames[4:7].any() and _decode(replay.frames[7]) == (1, 0)
  # The invalid range follows from add_count alone; the stored copy is optional.
  os.remove(tmp_path / "invalid_range_ckpt.0.gz")
  np.testing.assert_array_equal(dr.load_dopamine_replay(str(tmp_path), [0]).valid_indices,
                                [7, 8, 9, 10])


def test_hand_count_timeout_without_terminal(tmp_path):
  """A's last step (6) ended without a terminal: with episode_end_indices it and the padding
  stacks after it (7-9) are excluded: valid 3, 4, 5, 10, 11 = 5. Without the file, the terminal
  flags alone cannot see the end, as in Dopamine."""
  buffer = _dopamine_buffer([(4, "timeout"), (3, None)], capacity=16)
  _write(str(tmp_path), 0, buffer, with_episode_ends=True)
  replay = dr.load_dopamine_replay(str(tmp_path), [0])
  np.testing.assert_array_equal(replay.valid_indices, [3, 4, 5, 10, 11])
  os.remove(tmp_path / "episode_end_indices_ckpt.0.gz")
  blind = dr.load_dopamine_replay(str(tmp_path), [0])
  np.testing.assert_array_equal(blind.valid_indices, [3, 4, 5, 6, 7, 8, 9, 10, 11])


# ------------------------------------------------------------------ random layouts vs reference

def _random_run(rng, num_checkpoints, capacity, timeouts):
  """Successive snapshots of one buffer, as DQN-replay's checkpoints are."""
  buffers, episodes = [], []
  for _ in range(num_checkpoints):
    while sum(length + K - 1 for length, _ in episodes) < capacity * (len(buffers) + 1.3):
      end = "timeout" if timeouts and rng.random() < 0.4 else "terminal"
      episodes.append((int(rng.integers(1, 12)), end))
    running = episodes[:-1] + [(episodes[-1][0], None)]
    buffers.append(_dopamine_buffer(running, capacity))
  return buffers


@pytest.mark.parametrize("timeouts", [False, True])
def test_valid_indices_match_dopamine_rules(tmp_path, timeouts):
  rng = np.random.default_rng(7 + timeouts)
  buffers = _random_run(rng, num_checkpoints=3, capacity=40, timeouts=timeouts)
  for c, buffer in enumerate(buffers):
    _write(str(tmp_path), c, buffer, with_episode_ends=timeouts)
  replay = dr.load_dopamine_replay(str(tmp_path), [0, 1, 2])
  want, offset = [], 0
  for buffer in buffers:
    n = min(buffer[1], 40)
    want += [offset + i for i in _reference_valid(buffer)]
    offset += n
  np.testing.assert_array_equal(replay.valid_indices, want)
  assert replay.frames.shape[0] == offset


@pytest.mark.parametrize("fraction,window", [(1.0, "head"), (0.5, "head"), (0.4, "random")])
def test_every_sampled_transition_is_a_real_one(tmp_path, fraction, window):
  """Each draw is checked against the episode its newest frame names, never the buffer."""
  rng = np.random.default_rng(3)
  buffers = _random_run(rng, num_checkpoints=2, capacity=60, timeouts=True)
  for c, buffer in enumerate(buffers):
    _write(str(tmp_path), c, buffer, with_episode_ends=True)
  replay = dr.load_dopamine_replay(str(tmp_path), [0, 1], fraction=fraction, window=window,
                                   seed=5)
  lengths = {}  # episode -> (length, ended with a terminal)
  for buffer in buffers:
    store = buffer[0]
    for frame, terminal in zip(store["observation"], store["terminal"]):
      decoded = _decode(frame) if not (frame == GARBAGE).all() else None
      if decoded:
        episode, step = decoded
        old = lengths.get(episode, (0, False))
        lengths[episode] = (max(old[0], step + 1), old[1] or bool(terminal))
  sample = jax.jit(dr.sample_fn(batch_size=256, clip_reward=None))
  batch = jax.device_get(sample(dr.to_device(replay), jax.random.key(0)))
  for b in range(256):
    newest = _decode(batch.obs[b, ..., -1])
    assert newest is not None, "a padding step was sampled as a state"
    episode, step = newest
    np.testing.assert_array_equal(batch.obs[b], _expected_stack(episode, step))
    assert int(batch.action[b]) == _action(episode, step)
    assert float(batch.reward[b]) == pytest.approx(_reward(episode, step))
    length, terminated = lengths[episode]
    last = step == length - 1
    assert float(batch.discount[b]) == (0.0 if last and terminated else 1.0)
    if float(batch.discount[b]) == 1.0:
      assert step + 1 < length, "a transition into padding was sampled"
      np.testing.assert_array_equal(batch.next_obs[b], _expected_stack(episode, step + 1))
    # The stack holds one episode: its real frames all name it, zeros only before them.
    frames = [_decode(batch.obs[b, ..., k]) for k in range(K)]
    real = [f for f in frames if f is not None]
    assert {e for e, _ in real} == {episode}
    assert frames[:K - len(real)] == [None] * (K - len(real))


def test_windows_keep_only_their_own_stacks(tmp_path):
  buffer = _dopamine_buffer([(30, "terminal"), (40, None)], capacity=64)
  _write(str(tmp_path), 0, buffer)
  full = _reference_valid(buffer)
  head = dr.load_dopamine_replay(str(tmp_path), [0], fraction=0.5)
  assert head.frames.shape[0] == 32
  np.testing.assert_array_equal(head.valid_indices, [i for i in full if K - 1 <= i < 31])
  shifted = dr.load_dopamine_replay(str(tmp_path), [0], fraction=0.5, window="random", seed=3)
  # Where the window sits, found from its frames in the buffer's time order (cursor 76 % 64).
  in_time_order = np.roll(buffer[0]["observation"], -(76 % 64), axis=0)
  starts = [s for s in range(33) if np.array_equal(in_time_order[s:s + 32], shifted.frames)]
  assert len(starts) == 1
  start = starts[0]
  np.testing.assert_array_equal(
      shifted.valid_indices, [i - start for i in full if start + K - 1 <= i < start + 31])
  with pytest.raises(ValueError, match="fraction"):
    dr.load_dopamine_replay(str(tmp_path), [0], fraction=0.0)


def test_jitted_sampler_clips_rewards_and_draws_all_valid_indices(tmp_path):
  buffer = _dopamine_buffer([(6, "terminal"), (9, None)], capacity=32)
  _write(str(tmp_path), 0, buffer)
  replay = dr.load_dopamine_replay(str(tmp_path), [0])
  sample = jax.jit(dr.make_sampler(replay, batch_size=512, clip_reward=1.0))
  batch = sample(jax.random.key(0))
  assert batch.obs.shape == (512, *SHAPE, K) and batch.obs.dtype == jnp.uint8
  assert batch.next_obs.shape == (512, *SHAPE, K)
  seen = {_decode(f) for f in np.asarray(batch.obs[..., -1])}
  want = {_decode(replay.frames[t]) for t in replay.valid_indices}
  assert seen == want  # 512 draws from 13 indices reach all of them
  assert np.all(np.abs(np.asarray(batch.reward)) <= 1.0)


def test_sample_fn_takes_the_replay_as_an_argument(tmp_path):
  """The chunk-compatible sampler reads `data` it is given, so one jit serves any replay."""
  buffer = _dopamine_buffer([(20, "terminal"), (20, None)], capacity=48)
  _write(str(tmp_path), 0, buffer)
  full = dr.to_device(dr.load_dopamine_replay(str(tmp_path), [0]))
  head = dr.to_device(dr.load_dopamine_replay(str(tmp_path), [0], fraction=0.25))
  sample = jax.jit(dr.sample_fn(batch_size=64, clip_reward=None))
  steps_full = {_decode(f) for f in np.asarray(sample(full, jax.random.key(0)).obs[..., -1])}
  steps_head = {_decode(f) for f in np.asarray(sample(head, jax.random.key(1)).obs[..., -1])}
  head_valid = {_decode(np.asarray(head.frames)[t]) for t in np.asarray(head.valid_indices)}
  assert steps_head <= head_valid and len(head_valid) < len(steps_full)
  closed = dr.make_sampler(dr.load_dopamine_replay(str(tmp_path), [0]), 64, clip_reward=None)
  np.testing.assert_array_equal(closed(jax.random.key(2)).obs, sample(full, jax.random.key(2)).obs)


# ------------------------------------------------------------------ settings and memory

def test_paper_settings_and_memory(tmp_path):
  """50 small checkpoints: 1% / 10% keep that share of each; first 20% keeps 10 of them."""
  capacity = 1000
  buffers = []
  for c in range(50):
    buffers.append(_dopamine_buffer([(capacity + 7, None)], capacity, first_episode=c))
    _write(str(tmp_path), c, buffers[-1])
  one = dr.load_paper_setting(str(tmp_path), "uniform_1pct")
  ten = dr.load_paper_setting(str(tmp_path), "uniform_10pct")
  first = dr.load_paper_setting(str(tmp_path), "first_20pct")

  def count(keep, buffer):
    return sum(1 for i in _reference_valid(buffer) if K - 1 <= i < keep - 1)

  assert one.frames.shape[0] == 50 * 10
  assert one.num_transitions == sum(count(10, b) for b in buffers)
  assert ten.frames.shape[0] == 50 * 100
  assert ten.num_transitions == sum(count(100, b) for b in buffers)
  assert first.frames.shape[0] == 10 * capacity
  assert first.num_transitions == sum(len(_reference_valid(b)) for b in buffers[:10])
  # Per stored step: frame + int32 action + float32 reward + uint8 terminal; + int32 per index.
  per_step = int(np.prod(SHAPE)) + 4 + 4 + 1
  expected = (per_step * first.frames.shape[0] + 4 * first.num_transitions) / first.num_transitions
  np.testing.assert_allclose(dr.bytes_per_million_transitions(first), expected * 1e6)
  with pytest.raises(ValueError, match="first_20pct"):
    dr.load_paper_setting(str(tmp_path), "first_30pct")


def test_bytes_per_million_for_atari_frames(tmp_path):
  """Padding is stored but never sampled: 84x84 frames, 3 episodes of 20 steps, not full."""
  capacity = 100
  store = {"observation": np.ones((capacity, 84, 84), np.uint8),
           "action": np.zeros(capacity, np.int32), "reward": np.zeros(capacity, np.float32),
           "terminal": np.zeros(capacity, np.uint8)}
  # Episodes at adds 3-22, 26-45, 49-68 (terminals at 22 and 45); the last is running.
  for start in (0, 23, 46):
    store["observation"][start:start + 3] = 0
  store["terminal"][[22, 45]] = 1
  _write(str(tmp_path), 0, (store, 69, set(), np.arange(68, 73) % capacity))
  replay = dr.load_dopamine_replay(str(tmp_path), [0])
  valid = 20 + 20 + 19  # every real step except the newest
  assert replay.num_transitions == valid
  want = ((84 * 84 + 9) * 69 + 4 * valid) / valid * 1e6
  np.testing.assert_allclose(dr.bytes_per_million_transitions(replay), want)


# ------------------------------------------------------------------ bad input

def test_missing_files_are_named_before_anything_is_read(tmp_path):
  for c in range(3):
    _write(str(tmp_path), c, _dopamine_buffer([(10, None)], 16, c))
  os.remove(tmp_path / "$store$_reward_ckpt.2.gz")
  os.remove(tmp_path / "add_count_ckpt.1.gz")
  with pytest.raises(FileNotFoundError) as err:
    dr.load_dopamine_replay(str(tmp_path), [0, 1, 2])
  message = str(err.value)
  assert "$store$_reward_ckpt.2.gz" in message and "add_count_ckpt.1.gz" in message
  assert "replay_logs" in message  # says where to get them
  with pytest.raises(FileNotFoundError, match="does not exist"):
    dr.load_dopamine_replay(str(tmp_path / "nowhere"), [0])


def test_truncated_or_corrupt_files_are_named(tmp_path):
  _write(str(tmp_path), 0, _dopamine_buffer([(40, None)], 64))
  path = tmp_path / "$store$_observation_ckpt.0.gz"
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match=r"observation_ckpt\.0\.gz.*truncated or corrupt"):
    dr.load_dopamine_replay(str(tmp_path), [0])
  path.write_bytes(b"not a gzip file at all")
  with pytest.raises(ValueError, match=r"observation_ckpt\.0\.gz.*truncated or corrupt"):
    dr.load_dopamine_replay(str(tmp_path), [0])


def test_inconsistent_files_and_empty_windows_are_refused(tmp_path):
  _write(str(tmp_path), 0, _dopamine_buffer([(40, None)], 64))
  _save(str(tmp_path), "$store$_action", 0, np.zeros(63, np.int32))
  with pytest.raises(ValueError, match=r"\$store\$_observation_ckpt\.0\.gz has shape"):
    dr.load_dopamine_replay(str(tmp_path), [0])
  _write(str(tmp_path), 0, _dopamine_buffer([(40, None)], 64))
  with pytest.raises(ValueError, match="no sampleable transition"):
    dr.load_dopamine_replay(str(tmp_path), [0], fraction=0.05)  # 3-step window
  # episode_end_indices is a pickle: only a set of integers is accepted, no other object.
  _save(str(tmp_path), "episode_end_indices", 0, collections.OrderedDict(), pickled=True)
  with pytest.raises(ValueError, match="episode_end_indices.*OrderedDict"):
    dr.load_dopamine_replay(str(tmp_path), [0])
  _save(str(tmp_path), "episode_end_indices", 0, [1, 2], pickled=True)
  with pytest.raises(ValueError, match="episode_end_indices.*list"):
    dr.load_dopamine_replay(str(tmp_path), [0])
