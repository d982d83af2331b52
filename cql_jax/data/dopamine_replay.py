"""Reader for the DQN-replay dataset (Agarwal et al., 2020) and a jit-able 4-frame sampler.

The dataset is Dopamine replay checkpoints, one directory per run (e.g.
`<Game>/<run>/replay_logs/`), each checkpoint N a set of gzipped `np.save` arrays:
  `$store$_observation_ckpt.N.gz` [C, 84, 84] uint8, single grayscale frames;
  `$store$_action_ckpt.N.gz`      [C] int32;
  `$store$_reward_ckpt.N.gz`      [C] float32, unclipped;
  `$store$_terminal_ckpt.N.gz`    [C] uint8, 1 where the episode terminated after this step;
  `add_count_ckpt.N.gz` (optional) scalar, the number of adds ever made to the circular buffer.
C is the buffer capacity (1M in the published data). Index t holds (s_t's newest frame, a_t, r_t,
terminal_t); the next state's newest frame is at t + 1.

Frames are stored once. A sample's observation is the stack of frames t-3..t and its next
observation t-2..t+1, built inside jit by `sample_stacked`; a frame from before an episode's start
is zeroed (Dopamine's convention), so memory stays ~7.07 KB per transition (see
`bytes_per_million_transitions`).

Training on it reuses the scanned loop of `cql_jax.train`: `to_device(replay)` is the `data`
argument and `sample_fn(batch_size)` the `sample(data, key)` of `train.make_train_chunk`;
`train.compile_chunk(..., sample=sample_fn(batch_size))` trains on it.

Subsets (the paper's settings, `PAPER_SETTINGS`):
  first_20pct:   checkpoints 0..9 in full (the first 10M of 50M transitions).
  uniform_1pct:  all 50 checkpoints, 1% of each (10k transitions each, 500k in all).
  uniform_10pct: all 50 checkpoints, 10% of each.
The fraction kept of each checkpoint is a *contiguous* window, by default its head. This is our
reading of the official code: batch_rl shrinks each loaded checkpoint's `replay_capacity` (1000 /
10000 per REFERENCE.md's README notes; 10000 with 50 checkpoints for 1% per its code comment),
and a Dopamine buffer whose cursor sits at 0 then samples only its first `replay_capacity`
entries. A contiguous window also keeps the one-frame-per-transition layout: a random scatter of
transitions would need each sample's 5 frames stored separately (~5x the memory). Coverage is
still uniform over training time because every checkpoint contributes equally;
`window="random"` moves each window to a random offset (seeded) for a variant that is not tied to
the start of each checkpoint.
"""
from __future__ import annotations

import gzip
import os
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cql_jax.types import Transition

STACK = 4  # frames per observation
_PREFIX = "$store$_"

PAPER_SETTINGS = {
    "first_20pct": dict(checkpoints=tuple(range(10)), fraction=1.0),
    "uniform_1pct": dict(checkpoints=tuple(range(50)), fraction=0.01),
    "uniform_10pct": dict(checkpoints=tuple(range(50)), fraction=0.10),
}


class DopamineReplay(NamedTuple):
  """Checkpoints concatenated in time order. T stored steps, M sampleable indices.

  frames:        [T, 84, 84] uint8.
  actions:       [T] int32.
  rewards:       [T] float32, as logged (unclipped).
  terminals:     [T] uint8, 1 where the episode terminated after step t.
  valid_indices: [M] int32, steps t whose stacks t-3..t and t-2..t+1 lie inside one checkpoint
                 segment; only these are sampled.
  """
  frames: np.ndarray
  actions: np.ndarray
  rewards: np.ndarray
  terminals: np.ndarray
  valid_indices: np.ndarray

  @property
  def num_transitions(self) -> int:
    return int(self.valid_indices.shape[0])


def _load_array(directory: str, name: str, checkpoint: int) -> np.ndarray:
  path = os.path.join(directory, f"{name}_ckpt.{checkpoint}.gz")
  with gzip.open(path, "rb") as f:
    return np.load(f, allow_pickle=False)


def load_checkpoint(directory: str, checkpoint: int) -> dict:
  """Loads one checkpoint as time-ordered arrays (oldest step first).

  A full circular buffer's oldest entry sits at its cursor, add_count % C; we roll it to the
  front. Without an add_count file the arrays are taken to be in time order already (the
  published checkpoints were written when the cursor was back at 0).
  """
  arrays = {key: _load_array(directory, _PREFIX + key, checkpoint)
            for key in ("observation", "action", "reward", "terminal")}
  capacity = arrays["action"].shape[0]
  count_path = os.path.join(directory, f"add_count_ckpt.{checkpoint}.gz")
  if os.path.exists(count_path):
    add_count = int(_load_array(directory, "add_count", checkpoint))
    if add_count < capacity:
      arrays = {k: v[:add_count] for k, v in arrays.items()}
    else:
      cursor = add_count % capacity
      arrays = {k: np.roll(v, -cursor, axis=0) for k, v in arrays.items()}
  return arrays


def load_dopamine_replay(directory: str, checkpoints: Sequence[int], fraction: float = 1.0,
                         window: str = "head", seed: int = 0) -> DopamineReplay:
  """Loads `checkpoints`, keeping a contiguous `fraction` of each (see module docstring).

  Args:
    directory: the run's `replay_logs` directory.
    checkpoints: checkpoint numbers, loaded and concatenated in the given order.
    fraction: in (0, 1]; round(fraction * C) steps kept per checkpoint.
    window: "head" (first steps of each checkpoint, as the official code) or "random" (a
      window at an offset drawn per checkpoint from `seed`).
    seed: NumPy seed for `window="random"`.

  Returns:
    DopamineReplay; valid indices exclude the first STACK-1 and the last step of every kept
    window, whose stacks or next state would leave it.
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"fraction must be in (0, 1], got {fraction}")
  if window not in ("head", "random"):
    raise ValueError(f"window must be 'head' or 'random', got {window!r}")
  rng = np.random.default_rng(seed)
  parts = {"observation": [], "action": [], "reward": [], "terminal": []}
  valid, offset = [], 0
  for checkpoint in checkpoints:
    arrays = load_checkpoint(directory, checkpoint)
    size = arrays["action"].shape[0]
    keep = min(size, max(1, int(round(fraction * size))))
    start = 0 if window == "head" else int(rng.integers(0, size - keep + 1))
    for key in parts:
      # Copy so the full checkpoint can be freed once the window is taken.
      parts[key].append(np.array(arrays[key][start:start + keep]))
    del arrays
    valid.append(np.arange(offset + STACK - 1, offset + keep - 1, dtype=np.int32))
    offset += keep
  return DopamineReplay(
      frames=np.concatenate(parts["observation"]).astype(np.uint8, copy=False),
      actions=np.concatenate(parts["action"]).astype(np.int32, copy=False),
      rewards=np.concatenate(parts["reward"]).astype(np.float32, copy=False),
      terminals=np.concatenate(parts["terminal"]).astype(np.uint8, copy=False),
      valid_indices=np.concatenate(valid))


def load_paper_setting(directory: str, setting: str, **kwargs) -> DopamineReplay:
  """`load_dopamine_replay` with one of PAPER_SETTINGS ("first_20pct", "uniform_1pct", ...)."""
  return load_dopamine_replay(directory, **PAPER_SETTINGS[setting], **kwargs)


def replay_nbytes(replay: DopamineReplay) -> int:
  """Bytes held by the replay's arrays."""
  return int(sum(np.asarray(x).nbytes for x in replay))


def bytes_per_million_transitions(replay: DopamineReplay) -> float:
  """Memory per 10^6 sampleable transitions, in bytes (~7.07e9 for 84x84 frames)."""
  return replay_nbytes(replay) / replay.num_transitions * 1e6


def _stale_frames(terminals_older):
  """[B, STACK-1] terminal flags of a stack's older frames -> [B, STACK] bool, True = zero it.

  A frame at time t-k belongs to an earlier episode iff some terminal falls in t-k..t-1, so each
  position is stale when any terminal sits at it or later (among the older frames).
  """
  later = jnp.flip(jnp.cumsum(jnp.flip(terminals_older, axis=1), axis=1), axis=1) > 0
  return jnp.concatenate([later, jnp.zeros_like(later[:, :1])], axis=1)


def sample_stacked(frames, actions, rewards, terminals, valid_indices, key, batch_size: int,
                   clip_reward: Optional[float] = None) -> Transition:
  """Draws `batch_size` transitions uniformly from `valid_indices`, stacking frames on the fly.

  Pure and jit-able (pass the arrays as arguments, so large replays are not baked into the
  compiled program as constants).

  Args:
    frames: [T, H, W] uint8.
    actions: [T] int.
    rewards: [T] float.
    terminals: [T] uint8/bool.
    valid_indices: [M] int32.
    key: a typed PRNG key.
    batch_size: B (static).
    clip_reward: if set, rewards are clipped to [-clip_reward, clip_reward] (Dopamine uses 1).

  Returns:
    Transition with obs, next_obs [B, H, W, STACK] uint8 (last axis oldest -> newest, frames
    from before the episode's first step zeroed), action [B] int32, reward [B] float32,
    discount [B] float32 (0.0 where terminal_t).
  """
  pick = jax.random.randint(key, (batch_size,), 0, valid_indices.shape[0])
  t = valid_indices[pick]
  window = t[:, None] + jnp.arange(-(STACK - 1), 2)  # [B, STACK + 1]: t-3 .. t+1
  stacked = frames[window]  # [B, STACK + 1, H, W]
  done = terminals[window[:, :STACK]].astype(jnp.int32)  # t-3 .. t

  def build(stack, stale):
    stack = jnp.where(stale[:, :, None, None], jnp.zeros((), stack.dtype), stack)
    return jnp.moveaxis(stack, 1, -1)

  obs = build(stacked[:, :STACK], _stale_frames(done[:, :STACK - 1]))
  next_obs = build(stacked[:, 1:], _stale_frames(done[:, 1:STACK]))
  reward = rewards[t].astype(jnp.float32)
  if clip_reward is not None:
    reward = jnp.clip(reward, -clip_reward, clip_reward)
  return Transition(obs=obs, action=actions[t].astype(jnp.int32), reward=reward,
                    discount=1.0 - terminals[t].astype(jnp.float32), next_obs=next_obs)


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
