"""Records a small DQN-replay-format dataset from a real ALE game, for tests and smoke runs.

The files are what Dopamine's `OutOfGraphReplayBuffer.save` writes for one run: per checkpoint
N, `$store$_{observation,action,reward,terminal}_ckpt.N.gz`, `add_count_ckpt.N.gz` and
`invalid_range_ckpt.N.gz` (gzipped `np.save` arrays), plus, for the newer Dopamine layout,
`episode_end_indices_ckpt.N.gz` (a pickled set). The buffer is circular with Dopamine's add
rules: K - 1 = 3 all-zero padding steps before every episode (they count in add_count), index t
holding (s_t's newest 84x84 frame, a_t, r_t, terminal_t), and checkpoint N a snapshot of the
whole buffer after N + 1 blocks of `steps_per_checkpoint` agent steps, as DQN-replay's 50
checkpoints are snapshots of one agent's buffer. Frames come from `cql_jax.envs.atari`'s
preprocessing (the newest slot of its stacked observation), so a reader that stacks stored
frames must rebuild exactly the observations the policy saw.

The behaviour policy is uniform random (seeded); the data is for plumbing, not for learning.
"""
from __future__ import annotations

import gzip
import os
import pickle
from typing import NamedTuple, Optional

import numpy as np

from cql_jax.envs import atari

STACK = atari.STACK
_PREFIX = "$store$_"


class RecordedReplay(NamedTuple):
  """What `record_atari_replay` wrote.

  directory:   the replay_logs directory.
  checkpoints: [N] checkpoint numbers written, 0..N-1.
  add_counts:  [N] add_count of each checkpoint (padding steps included).
  num_episodes: episodes started in all.
  stacks:      [A, 84, 84, 4] uint8, the environment's own observation for every add in add
               order (zeros for padding adds), or None unless return_stacks was set. Add a of
               checkpoint n sits at time-order position a - (add_counts[n] - min(add_counts[n],
               capacity)) of that checkpoint.
  """
  directory: str
  checkpoints: list
  add_counts: list
  num_episodes: int
  stacks: Optional[np.ndarray]


def _ckpt_path(directory: str, name: str, checkpoint: int) -> str:
  return os.path.join(directory, f"{name}_ckpt.{checkpoint}.gz")


def _write_checkpoint(directory: str, checkpoint: int, store: dict, add_count: int,
                      episode_ends: set, legacy: bool) -> None:
  """Writes one snapshot; files appear under their final names only once all are written."""
  capacity = store["action"].shape[0]
  cursor = add_count % capacity
  # Dopamine's invalid_range: update_horizon (1) indices before the cursor, stack_size after.
  invalid_range = np.array([(cursor - 1 + i) % capacity for i in range(STACK + 1)], np.int64)
  items = [(_PREFIX + key, store[key]) for key in ("observation", "action", "reward", "terminal")]
  items += [("add_count", np.array(add_count, np.int64)), ("invalid_range", invalid_range)]
  if not legacy:
    items.append(("episode_end_indices", {np.int64(i) for i in episode_ends}))
  written = []
  try:
    for name, value in items:
      final = _ckpt_path(directory, name, checkpoint)
      temp = final + ".partial"
      with gzip.open(temp, "wb") as f:
        if isinstance(value, set):
          pickle.dump(value, f)
        else:
          np.save(f, value, allow_pickle=False)
      written.append((temp, final))
    for temp, final in written:
      os.replace(temp, final)
  finally:
    for temp, _ in written:
      if os.path.exists(temp):
        os.remove(temp)


def record_atari_replay(directory: str, game: str = "Pong", *, num_checkpoints: int = 2,
                        capacity: int = 200, steps_per_checkpoint: Optional[int] = None,
                        max_episode_steps: int = 60, seed: int = 0, legacy: bool = True,
                        return_stacks: bool = False,
                        sticky_action_prob: float = atari.STICKY_ACTION_PROB) -> RecordedReplay:
  """Plays `game` with a random policy and writes Dopamine replay checkpoints to `directory`.

  Args:
    directory: created if missing; must not already hold checkpoints 0..num_checkpoints-1.
    game: ALE name, e.g. "Pong".
    num_checkpoints: N snapshots, numbered 0..N-1.
    capacity: C, the circular buffer's size (1M in DQN-replay).
    steps_per_checkpoint: agent steps between snapshots; default C, so consecutive snapshots
      share only about the padding's worth of adds and a full buffer's cursor is not at 0.
    max_episode_steps: episode cap in agent steps; small values give many episode starts.
    seed: seeds the emulator (sticky actions) and the random policy.
    legacy: True writes what the Dopamine that logged DQN-replay wrote: the terminal flag set at
      every episode end, time-outs included, and no episode_end_indices file. False writes the
      newer layout: time-outs end an episode without a terminal, recorded in
      episode_end_indices.
    return_stacks: also return the environment's observation for every add (tests).
    sticky_action_prob: as in `atari.make_atari_env`.

  Returns:
    RecordedReplay.
  """
  if num_checkpoints < 1 or capacity < STACK + 2:
    raise ValueError(f"need num_checkpoints >= 1 and capacity >= {STACK + 2}, got "
                     f"{num_checkpoints} and {capacity}")
  steps_per_checkpoint = capacity if steps_per_checkpoint is None else steps_per_checkpoint
  if steps_per_checkpoint < 1:
    raise ValueError(f"steps_per_checkpoint must be >= 1, got {steps_per_checkpoint}")
  os.makedirs(directory, exist_ok=True)
  clash = [c for c in range(num_checkpoints)
           if os.path.exists(_ckpt_path(directory, _PREFIX + "observation", c))]
  if clash:
    raise FileExistsError(f"{directory!r} already holds replay checkpoints {clash}; record into "
                          "an empty directory.")

  env = atari.make_atari_env(game, seed=seed, sticky_action_prob=sticky_action_prob,
                             max_episode_steps=max_episode_steps)
  rng = np.random.default_rng(seed)
  frame_shape = env.observation_space.shape[:2]
  store = {"observation": np.zeros((capacity, *frame_shape), np.uint8),
           "action": np.zeros(capacity, np.int32), "reward": np.zeros(capacity, np.float32),
           "terminal": np.zeros(capacity, np.uint8)}
  episode_ends: set = set()
  stacks = [] if return_stacks else None
  add_count, num_episodes, add_counts = 0, 0, []

  def add(frame, action, reward, terminal, episode_end, stack):
    nonlocal add_count
    cursor = add_count % capacity
    # As Dopamine: a slot being overwritten loses any episode end it held.
    (episode_ends.add if episode_end else episode_ends.discard)(cursor)
    store["observation"][cursor] = frame
    store["action"][cursor] = action
    store["reward"][cursor] = reward
    store["terminal"][cursor] = terminal
    if stacks is not None:
      stacks.append(stack)
    add_count += 1

  try:
    obs, _ = env.reset(seed=seed)
    episode_start = True
    for checkpoint in range(num_checkpoints):
      for _ in range(steps_per_checkpoint):
        if episode_start:
          # Dopamine pads when an episode's first step is added, not when the last one ends.
          num_episodes += 1
          for _ in range(STACK - 1):
            add(np.zeros(frame_shape, np.uint8), 0, 0.0, 0, False,
                np.zeros(env.observation_space.shape, np.uint8))
          episode_start = False
        action = int(rng.integers(env.action_space.n))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        ended = bool(terminated or truncated)
        terminal = bool(terminated or (truncated and legacy))
        add(obs[..., -1], action, float(reward), int(terminal), ended, obs)
        if ended:
          obs, _ = env.reset()
          episode_start = True
        else:
          obs = next_obs
      _write_checkpoint(directory, checkpoint, store, add_count, episode_ends, legacy)
      add_counts.append(add_count)
  finally:
    env.close()
  return RecordedReplay(directory, list(range(num_checkpoints)), add_counts, num_episodes,
                        np.stack(stacks) if stacks is not None else None)
