"""The one loop that runs whole episodes in a Gymnasium vector environment.

Evaluation (cql_jax.evaluation) and the dataset makers (cql_jax.makers) both call
:func:`run_episodes`: E episodes, each reset with its own seed, spread over the N copies of a
synchronous vector env; a copy that finishes starts the next pending episode at once. The
result is a deterministic function of the seeds and of the policy, so a maker that keeps its
seeds and its policy's random stream reproduces its datasets bit for bit.

Online SAC (cql_jax.makers.online) keeps its own loop: it interleaves learning with acting,
never ends on an episode count, and needs the true next observation of a copy that autoresets
within the step (AutoresetMode.SAME_STEP), none of which the two callers here need.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

Policy = Callable[[Any], np.ndarray]  # observations [B, ...] -> actions [B, ...]


@dataclasses.dataclass(frozen=True)
class EpisodeRecord:
  """One episode run by :func:`run_episodes`.

  seed:         the reset seed it started from (None: unseeded).
  rewards:      [T] float64, as the environment returned them.
  terminations, truncations: [T] bool.
  finished:     False when max_steps stopped the loop before the episode ended.
  observations: [T+1, ...] the (transformed) first to last observation; None unless recorded.
  actions:      [T, ...] in the environment's action dtype; None unless recorded.
  """
  seed: Optional[int]
  rewards: np.ndarray
  terminations: np.ndarray
  truncations: np.ndarray
  finished: bool
  observations: Optional[np.ndarray] = None
  actions: Optional[np.ndarray] = None

  @property
  def length(self) -> int:
    return int(self.rewards.shape[0])


def _check_autoreset(env) -> None:
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  mode = getattr(env, "autoreset_mode", None) or env.metadata.get("autoreset_mode")
  if mode is not None and mode != gym.vector.AutoresetMode.NEXT_STEP:
    raise ValueError(
        f"run_episodes needs a vector env with AutoresetMode.NEXT_STEP (gymnasium's default), "
        f"got {mode}: it resets a finished copy itself, with the next episode's seed.")


def run_episodes(env, policy: Policy, seeds: Sequence[Optional[int]], *,
                 obs_transform: Optional[Callable[[Any], Any]] = None, record: bool = False,
                 active_only: bool = False, max_steps: Optional[int] = None
                 ) -> List[EpisodeRecord]:
  """Runs len(seeds) episodes in `env`, at most env.num_envs at a time, and returns them in order.

  Episode e is reset with seeds[e]; copies take episodes in order (copy i starts episode i,
  and whichever copy finishes first starts the next pending one, lowest copy index first).
  The env is neither closed nor reset at the end.

  Args:
    env: a synchronous gymnasium vector env (AutoresetMode.NEXT_STEP) with N copies.
    policy: observations [B, ...] -> actions [B, ...] in the environment's units. B is N, or
      the number of copies still running an episode when `active_only` (rows in copy order).
    seeds: [E] reset seeds.
    obs_transform: applied to every batch of observations before the policy sees or the
      record keeps it (e.g. flattening dict observations); default: as returned.
    record: keep observations and actions (for datasets); rewards and flags are always kept.
    active_only: call the policy on the running copies only. Makers use it so that a policy
      drawing noise per row consumes its random stream the same way however copies finish.
      Idle copies are then stepped with a running copy's action, and their results dropped.
    max_steps: stop after this many vector-env steps; unfinished episodes come back with
      finished=False and episodes never started are left out.

  Returns:
    The EpisodeRecords of the episodes started, in seed order.
  """
  _check_autoreset(env)
  transform = obs_transform or (lambda o: o)
  num_envs = int(env.num_envs)
  num_episodes = len(seeds)
  if num_episodes == 0:
    return []
  action_dtype = getattr(env.single_action_space, "dtype", None)
  first = min(num_envs, num_episodes)
  obs, _ = env.reset(seed=[None if s is None else int(s) for s in seeds[:first]]
                     + [None] * (num_envs - first))
  obs = transform(obs)
  slot_episode = [e if e < first else -1 for e in range(num_envs)]  # -1: idle.
  next_episode = first
  traces: List[Optional[dict]] = [None] * num_episodes
  for slot in range(first):
    traces[slot] = _new_trace(_row(obs, slot) if record else None)
  done_records: List[Optional[EpisodeRecord]] = [None] * num_episodes
  steps = 0
  while any(e >= 0 for e in slot_episode):
    if max_steps is not None and steps >= max_steps:
      break
    active = [s for s in range(num_envs) if slot_episode[s] >= 0]
    if active_only:
      actions = np.asarray(policy(_rows(obs, active)))
      full = np.repeat(actions[:1], num_envs, axis=0)
      full[active] = actions
    else:
      full = actions = np.asarray(policy(obs))
    next_obs, reward, terminated, truncated, _ = env.step(full)
    steps += 1
    next_obs = transform(next_obs)
    reset_slots, reset_seeds = [], []
    for row, slot in enumerate(active):
      trace = traces[slot_episode[slot]]
      trace["rew"].append(float(reward[slot]))
      trace["term"].append(bool(terminated[slot]))
      trace["trunc"].append(bool(truncated[slot]))
      if record:
        a = actions[row] if active_only else actions[slot]
        trace["act"].append(np.asarray(a, dtype=action_dtype))
        trace["obs"].append(_row(next_obs, slot))
      if terminated[slot] or truncated[slot]:
        episode = slot_episode[slot]
        done_records[episode] = _finish(trace, seeds[episode], True, record)
        traces[episode] = None
        if next_episode < num_episodes:
          slot_episode[slot] = next_episode
          reset_slots.append(slot)
          reset_seeds.append(seeds[next_episode])
          next_episode += 1
        else:
          slot_episode[slot] = -1
    if reset_slots:
      mask = np.zeros(num_envs, bool)
      mask[reset_slots] = True
      seed_list: List[Optional[int]] = [None] * num_envs
      for slot, seed in zip(reset_slots, reset_seeds):
        seed_list[slot] = None if seed is None else int(seed)
      next_obs, _ = env.reset(seed=seed_list, options={"reset_mask": mask})
      next_obs = transform(next_obs)
      for slot in reset_slots:
        traces[slot_episode[slot]] = _new_trace(_row(next_obs, slot) if record else None)
    obs = next_obs
  for episode, trace in enumerate(traces):
    if trace is not None:
      done_records[episode] = _finish(trace, seeds[episode], False, record)
  return [r for r in done_records if r is not None]


def _row(obs, row: int):
  if isinstance(obs, dict):
    return {k: _row(v, row) for k, v in obs.items()}
  return obs[row]


def _rows(obs, rows: Sequence[int]):
  if isinstance(obs, dict):
    return {k: _rows(v, rows) for k, v in obs.items()}
  return np.stack([obs[r] for r in rows])


def _stack(items: list):
  if items and isinstance(items[0], dict):
    return {k: _stack([x[k] for x in items]) for k in items[0]}
  return np.stack(items)


def _new_trace(first_obs) -> dict:
  return {"obs": [] if first_obs is None else [first_obs], "act": [], "rew": [], "term": [],
          "trunc": []}


def _finish(trace: dict, seed, finished: bool, record: bool) -> EpisodeRecord:
  return EpisodeRecord(
      seed=None if seed is None else int(seed),
      rewards=np.asarray(trace["rew"], np.float64),
      terminations=np.asarray(trace["term"], bool),
      truncations=np.asarray(trace["trunc"], bool), finished=finished,
      observations=_stack(trace["obs"]) if record else None,
      actions=np.stack(trace["act"]) if record and trace["act"] else None)
