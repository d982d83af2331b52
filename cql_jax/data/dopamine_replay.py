"""Reader for the DQN-replay dataset (Agarwal et al., 2020) and a jit-able 4-frame sampler.

The dataset is Dopamine replay checkpoints, one directory per run (e.g.
`<Game>/<run>/replay_logs/`), each checkpoint N a set of gzipped `np.save` arrays:
  `$store$_observation_ckpt.N.gz` [C, 84, 84] uint8, single grayscale frames;
  `$store$_action_ckpt.N.gz`      [C] int32;
  `$store$_reward_ckpt.N.gz`      [C] float32, unclipped;
  `$store$_terminal_ckpt.N.gz`    [C] uint8, 1 where the episode terminated after this step;
  `add_count_ckpt.N.gz`           scalar, the number of adds ever made to the circular buffer;
  `invalid_range_ckpt.N.gz`       (optional) the indices Dopamine refused around its cursor;
  `episode_end_indices_ckpt.N.gz` (optional, newer Dopamine) a pickled set of the indices where
                                  an episode ended, with or without a terminal.
C is the buffer capacity (1M in the published data). Index t holds (s_t's newest frame, a_t, r_t,
terminal_t); the next state's newest frame is at t + 1.

Dopamine's layout and sampling rules, which this reader follows (stack K = 4, update horizon 1):
  * Before each episode's first step the buffer holds K - 1 all-zero padding steps, so the stack
    of an episode's first state is K - 1 zero frames and its first frame.
  * Index t is sampled only if (a) its stack t-K+1..t and next state t+1 are stored: K-1 <= t <
    add_count - 1 while the buffer fills, and t outside the cursor's invalid range c-1..c+K-1
    (c = add_count % C) once it is full; (b) no episode ends at t-K+1..t-1, so the stack never
    reaches into the previous episode or its padding (this excludes the padding steps
    themselves); (c) t is not the last step of an episode that ended without a terminal (its
    next state would be padding). Episode ends are the terminal flags and, where the file exists,
    episode_end_indices; the Dopamine that logged DQN-replay set the terminal flag at every
    episode end, time-outs included. Unlike Dopamine we apply (b) to terminal-free ends too.
  Excluded indices are never drawn, so no frame is zeroed at sample time; a terminal transition's
  next state (its stack shifted by one padding frame) only enters targets times discount 0.

Frames are stored once. A sample's observation is the stack of frames t-3..t and its next
observation t-2..t+1, built inside jit by `sample_stacked`. Memory is 7,065 B per stored step
(84x84 frame, int32 action, float32 reward, uint8 terminal) plus a 4-byte index per sampleable
one. Stored steps include 3 padding steps per episode, so per sampleable transition it is about
(7,065 x (1 + 3 / L) + 4) B for mean episode length L (see `bytes_per_million_transitions`).

Training on it reuses the scanned loop of `cql_jax.train`: `to_device(replay)` is the `data`
argument and `sample_fn(batch_size)` the `sample(data, key)` of `train.make_train_chunk`;
`train.compile_chunk(..., sample=sample_fn(batch_size))` trains on it.

Subsets (the paper's settings, `PAPER_SETTINGS`):
  first_20pct:   checkpoints 0..9 in full (the first 10M of 50M transitions).
  uniform_1pct:  all 50 checkpoints, 1% of each (10k transitions each, 500k in all).
  uniform_10pct: all 50 checkpoints, 10% of each.
The fraction kept of each checkpoint is a *contiguous* window of its steps in time order, by
default the oldest. This is our reading of the official code: batch_rl shrinks each loaded
checkpoint's `replay_capacity` (1000 for 1% and 10000 for 10% per batch_rl's README; 10000
with 50 checkpoints for 1% per a comment in its fixed-replay buffer), and a Dopamine buffer then
samples only its first `replay_capacity` stored entries: the oldest ones when the cursor sits at 0, otherwise another
contiguous stretch of the same size. A contiguous window also keeps the one-frame-per-transition
layout: a random scatter of transitions would need each sample's 5 frames stored separately
(~5x the memory). A window keeps the checkpoint's valid indices whose stack and next state lie
inside it. Coverage is still uniform over training time because every checkpoint contributes
equally; `window="random"` moves each window to a random offset (seeded) for a variant that is
not tied to the start of each checkpoint.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import zlib
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cql_jax.types import Transition

STACK = 4  # frames per observation
UPDATE_HORIZON = 1  # 1-step targets, as batch_rl's agents use
_PREFIX = "$store$_"
STORE_KEYS = ("observation", "action", "reward", "terminal")
_SOURCE_HINT = ("copy it again from the same run's replay_logs directory "
                "(gs://atari-replay-datasets/dqn/<Game>/<run>/replay_logs/)")

PAPER_SETTINGS = {
    "first_20pct": dict(checkpoints=tuple(range(10)), fraction=1.0),
    "uniform_1pct": dict(checkpoints=tuple(range(50)), fraction=0.01),
    "uniform_10pct": dict(checkpoints=tuple(range(50)), fraction=0.10),
}


class DopamineReplay(NamedTuple):
  """Checkpoints concatenated in time order. T stored steps, M sampleable indices.

  frames:        [T, 84, 84] uint8 (padding steps included).
  actions:       [T] int32.
  rewards:       [T] float32, as logged (unclipped).
  terminals:     [T] uint8, 1 where the episode terminated after step t.
  valid_indices: [M] int32, the steps Dopamine's rules allow sampling (module docstring), whose
                 stacks t-3..t and t-2..t+1 also lie inside one kept window; only these are drawn.
  """
  frames: np.ndarray
  actions: np.ndarray
  rewards: np.ndarray
  terminals: np.ndarray
  valid_indices: np.ndarray

  @property
  def num_transitions(self) -> int:
    return int(self.valid_indices.shape[0])


def checkpoint_path(directory: str, name: str, checkpoint: int) -> str:
  """Dopamine's file name for array `name` (e.g. "$store$_observation") of `checkpoint`."""
  return os.path.join(directory, f"{name}_ckpt.{checkpoint}.gz")


def _required_names():
  return [_PREFIX + key for key in STORE_KEYS] + ["add_count"]


def check_replay_files(directory: str, checkpoints: Sequence[int]) -> None:
  """Raises FileNotFoundError naming every missing file of `checkpoints`, before any is read.

  Loading a real checkpoint takes tens of seconds, so a gap in checkpoint 9 is reported before
  checkpoints 0..8 are decompressed.
  """
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f"DQN-replay directory {directory!r} does not exist: point replay_dir at a run's "
        "replay_logs directory (gs://atari-replay-datasets/dqn/<Game>/<run>/replay_logs/).")
  missing = [checkpoint_path(directory, name, c) for c in checkpoints
             for name in _required_names()
             if not os.path.isfile(checkpoint_path(directory, name, c))]
  if missing:
    shown = "\n  ".join(missing[:12]) + ("\n  ..." if len(missing) > 12 else "")
    raise FileNotFoundError(
        f"DQN-replay directory {directory!r} lacks {len(missing)} file(s) of checkpoints "
        f"{list(checkpoints)}:\n  {shown}\nEach checkpoint N needs "
        + ", ".join(f"{n}_ckpt.N.gz" for n in _required_names())
        + f" (Dopamine writes them together); {_SOURCE_HINT}, or choose a setting whose "
        "checkpoints are all present.")


class _SetUnpickler(pickle.Unpickler):
  """Unpickles Dopamine's episode_end_indices (a set of NumPy integers) and nothing else."""
  _ALLOWED = {("builtins", "set"), ("builtins", "frozenset"), ("numpy", "dtype"),
              ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar")}

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f"unexpected object {module}.{name} in episode_end_indices")
    return super().find_class(module, name)


def _read(path: str, pickled: bool = False):
  """One gzipped np.save array (or Dopamine pickle); corrupt files raise a ValueError naming them."""
  try:
    with gzip.open(path, "rb") as f:
      raw = f.read()  # reads to the end, so a truncated gzip stream fails here, not later
    if pickled:
      return _SetUnpickler(io.BytesIO(raw)).load()
    return np.load(io.BytesIO(raw), allow_pickle=False)
  except (OSError, EOFError, ValueError, zlib.error, pickle.UnpicklingError) as err:
    raise ValueError(f"cannot read {path} ({type(err).__name__}: {err}): the file is truncated "
                     f"or corrupt; {_SOURCE_HINT}.") from err


def valid_mask(terminals: np.ndarray, full: bool, episode_ends: Optional[np.ndarray] = None,
               excluded: Optional[np.ndarray] = None) -> np.ndarray:
  """Dopamine's sampleable indices of one checkpoint, as a [n] bool mask over time order.

  Args:
    terminals: [n] terminal flags, oldest step first (the buffer rolled so its cursor is at 0
      when full; the first add_count entries when not).
    full: whether the buffer had wrapped (add_count >= capacity).
    episode_ends: [n] bool, episode ends known besides the terminals (Dopamine's
      episode_end_indices), or None.
    excluded: time-order indices to exclude as well (a stored invalid_range), or None.
  """
  n = terminals.shape[0]
  ends = terminals.astype(bool)
  if episode_ends is not None:
    ends = ends | episode_ends
  valid = np.ones(n, bool)
  # Full: the cursor's invalid range c-1..c+K-1 is the newest step and the K oldest. Filling:
  # the first K-1 steps are the first episode's padding; the newest has no next state.
  valid[:STACK if full else STACK - 1] = False
  valid[max(n - UPDATE_HORIZON, 0):] = False
  # An episode end among t-K+1..t-1 (cumulative counts give each window's sum in O(n)).
  counts = np.concatenate([[0], np.cumsum(ends, dtype=np.int64)])
  t = np.arange(n)
  lo = np.maximum(t - STACK + 1, 0)
  valid &= counts[t] - counts[lo] == 0
  valid &= ~(ends & ~terminals.astype(bool))  # next state of a terminal-free end is padding
  if excluded is not None and len(excluded):
    valid[excluded] = False
  return valid


def load_checkpoint(directory: str, checkpoint: int) -> dict:
  """Loads one checkpoint as time-ordered arrays (oldest step first) and its valid mask.

  A full circular buffer's oldest entry sits at its cursor, add_count % C; we roll it to the
  front. A buffer that never filled keeps its first add_count entries (the rest were never
  written). Returns a dict of "observation", "action", "reward", "terminal" arrays and
  "valid", the `valid_mask` of Dopamine's rules.
  """
  check_replay_files(directory, [checkpoint])
  arrays = {key: _read(checkpoint_path(directory, _PREFIX + key, checkpoint))
            for key in STORE_KEYS}
  count_path = checkpoint_path(directory, "add_count", checkpoint)
  add_count = np.asarray(_read(count_path))
  capacity = arrays["action"].shape[0] if arrays["action"].ndim else 0
  for key, array in arrays.items():
    want = 3 if key == "observation" else 1
    if array.ndim != want or array.shape[0] != capacity:
      raise ValueError(
          f"{checkpoint_path(directory, _PREFIX + key, checkpoint)} has shape {array.shape}; "
          f"expected {'[C, H, W]' if want == 3 else '[C]'} with C = {capacity} like the "
          f"checkpoint's action array. The checkpoint's files do not belong together; "
          f"{_SOURCE_HINT}.")
  if add_count.shape != () or add_count < 0:
    raise ValueError(f"{count_path} holds {add_count!r}, not a non-negative scalar add count; "
                     f"{_SOURCE_HINT}.")
  add_count = int(add_count)
  full = add_count >= capacity
  cursor = add_count % capacity if full else 0

  def to_time_order(physical):
    """Physical buffer indices -> time-order indices (dropping never-written ones)."""
    physical = np.asarray(physical, np.int64).reshape(-1) % capacity
    if full:
      return (physical - cursor) % capacity
    return physical[physical < add_count]

  invalid_path = checkpoint_path(directory, "invalid_range", checkpoint)
  excluded = to_time_order(_read(invalid_path)) if os.path.isfile(invalid_path) else None
  ends_path = checkpoint_path(directory, "episode_end_indices", checkpoint)
  episode_ends = None
  if os.path.isfile(ends_path):
    ends = _read(ends_path, pickled=True)
    if not isinstance(ends, (set, frozenset)):
      raise ValueError(f"{ends_path} holds a {type(ends).__name__}, not Dopamine's set of "
                       f"episode-end indices; {_SOURCE_HINT}.")
    n = capacity if full else add_count
    episode_ends = np.zeros(n, bool)
    episode_ends[to_time_order([int(i) for i in ends])] = True
  if full:
    arrays = {k: np.roll(v, -cursor, axis=0) for k, v in arrays.items()}
  else:
    arrays = {k: v[:add_count] for k, v in arrays.items()}
  arrays["valid"] = valid_mask(arrays["terminal"], full, episode_ends, excluded)
  return arrays


def load_dopamine_replay(directory: str, checkpoints: Sequence[int], fraction: float = 1.0,
                         window: str = "head", seed: int = 0) -> DopamineReplay:
  """Loads `checkpoints`, keeping a contiguous `fraction` of each (see module docstring).

  Args:
    directory: the run's `replay_logs` directory.
    checkpoints: checkpoint numbers, loaded and concatenated in the given order.
    fraction: in (0, 1]; round(fraction * n) steps kept per checkpoint of n stored steps.
    window: "head" (oldest steps of each checkpoint) or "random" (a window at an offset drawn
      per checkpoint from `seed`).
    seed: NumPy seed for `window="random"`.

  Returns:
    DopamineReplay whose valid indices are the checkpoints' valid ones (Dopamine's rules) that
    also keep their stacks and next state inside the window.

  Raises:
    FileNotFoundError: a checkpoint file is missing (all are checked before any is read).
    ValueError: a bad argument, a truncated or inconsistent file, or no sampleable transition.
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"fraction must be in (0, 1], got {fraction}")
  if window not in ("head", "random"):
    raise ValueError(f"window must be 'head' or 'random', got {window!r}")
  check_replay_files(directory, checkpoints)
  rng = np.random.default_rng(seed)
  parts = {key: [] for key in STORE_KEYS}
  valid, offset = [], 0
  for checkpoint in checkpoints:
    arrays = load_checkpoint(directory, checkpoint)
    size = arrays["action"].shape[0]
    keep = min(size, max(1, int(round(fraction * size))))
    start = 0 if window == "head" else int(rng.integers(0, size - keep + 1))
    for key in parts:
      # Copy so the full checkpoint can be freed once the window is taken.
      parts[key].append(np.array(arrays[key][start:start + keep]))
    inside = arrays["valid"][start:start + keep].copy()
    inside[:STACK - 1] = False  # the stack would start before the window
    inside[max(keep - UPDATE_HORIZON, 0):] = False  # the next state would lie after it
    del arrays
    valid.append(offset + np.flatnonzero(inside).astype(np.int32))
    offset += keep
  replay = DopamineReplay(
      frames=np.concatenate(parts["observation"]).astype(np.uint8, copy=False),
      actions=np.concatenate(parts["action"]).astype(np.int32, copy=False),
      rewards=np.concatenate(parts["reward"]).astype(np.float32, copy=False),
      terminals=np.concatenate(parts["terminal"]).astype(np.uint8, copy=False),
      valid_indices=np.concatenate(valid).astype(np.int32, copy=False))
  if replay.num_transitions == 0:
    raise ValueError(
        f"no sampleable transition in checkpoints {list(checkpoints)} of {directory!r} at "
        f"fraction {fraction}: each kept window needs a step with {STACK - 1} earlier steps of "
        "its own episode (or padding) and a next step. Use a larger fraction or more data.")
  return replay


def load_paper_setting(directory: str, setting: str, **kwargs) -> DopamineReplay:
  """`load_dopamine_replay` with one of PAPER_SETTINGS ("first_20pct", "uniform_1pct", ...)."""
  if setting not in PAPER_SETTINGS:
    raise ValueError(f"unknown DQN-replay setting {setting!r}; expected one of "
                     f"{sorted(PAPER_SETTINGS)}")
  return load_dopamine_replay(directory, **PAPER_SETTINGS[setting], **kwargs)


def replay_nbytes(replay: DopamineReplay) -> int:
  """Bytes held by the replay's arrays."""
  return int(sum(np.asarray(x).nbytes for x in replay))


def bytes_per_million_transitions(replay: DopamineReplay) -> float:
  """Memory per 10^6 sampleable transitions, in bytes (~7.07e9 x (1 + 3/L) for 84x84 frames and
  mean episode length L: padding steps are stored but never sampled)."""
  return replay_nbytes(replay) / replay.num_transitions * 1e6


def sample_stacked(frames, actions, rewards, terminals, valid_indices, key, batch_size: int,
                   clip_reward: Optional[float] = None) -> Transition:
  """Draws `batch_size` transitions uniformly from `valid_indices`, stacking frames on the fly.

  Pure and jit-able (pass the arrays as arguments, so large replays are not baked into the
  compiled program as constants). Valid indices never have an episode end among their stack's
  older frames, so the stacks are gathered as stored: zero frames in them are Dopamine's padding.

  Args:
    frames: [T, H, W] uint8.
    actions: [T] int.
    rewards: [T] float.
    terminals: [T] uint8/bool.
    valid_indices: [M] int32, M > 0.
    key: a typed PRNG key.
    batch_size: B (static).
    clip_reward: if set, rewards are clipped to [-clip_reward, clip_reward] (Dopamine uses 1).

  Returns:
    Transition with obs, next_obs [B, H, W, STACK] uint8 (last axis oldest -> newest), action
    [B] int32, reward [B] float32, discount [B] float32 (0.0 where terminal_t).
  """
  pick = jax.random.randint(key, (batch_size,), 0, valid_indices.shape[0])
  t = valid_indices[pick]
  window = t[:, None] + jnp.arange(-(STACK - 1), 2)  # [B, STACK + 1]: t-3 .. t+1
  stacked = jnp.moveaxis(frames[window], 1, -1)  # [B, H, W, STACK + 1]
  reward = rewards[t].astype(jnp.float32)
  if clip_reward is not None:
    reward = jnp.clip(reward, -clip_reward, clip_reward)
  return Transition(obs=stacked[..., :STACK], action=actions[t].astype(jnp.int32), reward=reward,
                    discount=1.0 - terminals[t].astype(jnp.float32),
                    next_obs=stacked[..., 1:])


def to_device(replay: DopamineReplay, device=None) -> DopamineReplay:
  """The same replay with its arrays on the (default) device, ready to pass as `data`.

  DopamineReplay is a NamedTuple, hence a pytree: it can be a jit argument as a whole, so the
  training chunk receives the multi-GB frames as a buffer rather than a baked-in constant.
  """
  return DopamineReplay(*(jax.device_put(jnp.asarray(x), device) for x in replay))


def sample_fn(batch_size: int, clip_reward: Optional[float] = 1.0):
  """Returns sample(data: DopamineReplay, key) -> Transition, for `train.make_train_chunk`.

  It has the signature of `buffer.sample_batch` with its batch size bound, so the scanned
  training chunk runs unchanged on stacked-frame replay: pass `to_device(replay)` as `data`.
  Rewards are clipped to [-clip_reward, clip_reward] (Dopamine's 1.0; None keeps them raw).
  """
  def sample(data: DopamineReplay, key) -> Transition:
    return sample_stacked(data.frames, data.actions, data.rewards, data.terminals,
                          data.valid_indices, key, batch_size, clip_reward)
  return sample


def make_sampler(replay: DopamineReplay, batch_size: int, clip_reward: Optional[float] = 1.0):
  """Puts the replay on the default device and returns sample(key) -> Transition.

  The arrays are closed over, which suits small replays and tests; for multi-GB replays use
  `sample_fn` with `to_device(replay)` passed as an explicit jit argument instead.
  """
  data = to_device(replay)
  sample = sample_fn(batch_size, clip_reward)
  return lambda key: sample(data, key)
