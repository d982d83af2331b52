"""OfflineDataset from NumPy arrays: the path every loader (Minari, .npz, a user's own) ends in.

:func:`assemble` validates flat transitions and attaches what evaluation and scoring need;
:func:`from_arrays` is the public door for a researcher's own data (exported as
``cql_jax.OfflineDataset.from_arrays``), in either of two layouts:

  * episode layout (``next_observations=None``): episodes one after another, each with its
    T_e + 1 observations (first to last) and T_e actions, rewards, terminals, truncations.
    ``observations`` then has sum(T_e) + E rows and the rest sum(T_e). An episode ends where
    ``terminals`` or ``truncations`` is set; the last step must end one. This is Minari's
    layout, and the result equals the Minari loader's on the same episodes.
  * transition layout (``next_observations`` given): every array has T rows, D4RL-style.
    Episodes (for episode_returns and initial_obs) are split after each terminal or
    truncation; an unfinished last segment counts as an episode.

Conventions are the Minari loader's (cql_jax.data.minari_io): discount = 1 - terminal (a
truncation keeps bootstrapping); Box actions stay in environment units and the agent scales
them into [-1, 1] with action_low/action_high; rewards are transformed as
reward * reward_scale + reward_bias for training while episode_returns stay raw.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from cql_jax.data import observations as obs_lib
from cql_jax.data import validation
from cql_jax.data.errors import DatasetError
from cql_jax.types import OfflineDataset, Transition


def _episode_returns(reward: np.ndarray, starts: np.ndarray) -> np.ndarray:
  ends = np.append(starts[1:], reward.shape[0])
  return np.asarray([np.sum(reward[a:b], dtype=np.float64) for a, b in zip(starts, ends)],
                    np.float32)


def assemble(raw: Transition, episode_starts: np.ndarray, *, dataset_id: str, discrete: bool,
             num_actions: Optional[int], action_low, action_high, reward_scale: float = 1.0,
             reward_bias: float = 0.0, env_id: Optional[str] = None,
             env_kwargs: Optional[dict] = None, env_spec: Any = None,
             ref_min_score: Optional[float] = None, ref_max_score: Optional[float] = None,
             obs_keys: Optional[Sequence[str]] = None, observation_space: Any = None,
             data_env_spec: Any = None) -> OfflineDataset:
  """Validates flat raw transitions and wraps them, with the reward transform, as a dataset.

  raw: Transition of NumPy arrays [T, ...] with rewards as stored; episode_starts: [E] int
  index of each episode's first transition (starting with 0). Returns an OfflineDataset whose
  episode_returns are the raw per-episode sums and initial_obs the episodes' first obs.
  """
  validation.validate_transitions(raw, discrete=discrete, num_actions=num_actions,
                                  name=dataset_id)
  if not discrete:
    validation.check_action_bounds(raw.action, action_low, action_high, dataset_id)
  starts = np.asarray(episode_starts, np.int64)
  reward = (raw.reward * np.float32(reward_scale) + np.float32(reward_bias)).astype(np.float32)
  return OfflineDataset(
      transitions=raw._replace(reward=reward),
      dataset_id=dataset_id,
      env_id=env_id,
      env_kwargs=dict(env_kwargs or {}),
      ref_min_score=ref_min_score,
      ref_max_score=ref_max_score,
      episode_returns=_episode_returns(raw.reward, starts),
      initial_obs=np.asarray(raw.obs[starts], np.float32),
      discrete=discrete,
      num_actions=num_actions,
      action_low=None if discrete else np.asarray(action_low, np.float32).reshape(-1),
      action_high=None if discrete else np.asarray(action_high, np.float32).reshape(-1),
      obs_keys=None if obs_keys is None else tuple(obs_keys),
      env_spec=env_spec,
      observation_space=observation_space,
      data_env_spec=data_env_spec,
  )


def _flag(x, field: str, size: int, name: str) -> np.ndarray:
  a = np.asarray(x)
  if a.shape != (size,):
    raise DatasetError(f"{name}: {field} has shape {a.shape}; expected [T] = [{size}] (one flag "
                       "per action).")
  if a.dtype != np.bool_:
    if not np.issubdtype(a.dtype, np.number) or not np.all((a == 0) | (a == 1)):
      raise DatasetError(f"{name}: {field} must be booleans (or 0/1), found values "
                         f"{np.unique(a)[:5]}.")
    a = a.astype(bool)
  return a


def _space_of(observations) -> Any:
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  if isinstance(observations, Mapping):
    return gym.spaces.Dict({k: _space_of(v) for k, v in observations.items()})
  a = np.asarray(observations)
  return gym.spaces.Box(-np.inf, np.inf, a.shape[1:], np.float32)


def _env_action_space(env_id: str, env_kwargs: Optional[dict], name: str):
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  try:
    env = gym.make(env_id, **(env_kwargs or {}))
  except Exception as err:  # pylint: disable=broad-except
    raise DatasetError(
        f"{name}: environment {env_id} cannot be built here to read its action space "
        f"({type(err).__name__}: {err}); pass action_low and action_high (Box) or num_actions "
        "(Discrete).") from err
  try:
    return env.action_space
  finally:
    env.close()


def from_arrays(observations, actions, rewards, terminals, truncations, *,
                next_observations=None, dataset_id: str = "arrays",
                env_id: Optional[str] = None, env_kwargs: Optional[dict] = None,
                ref_min_score: Optional[float] = None, ref_max_score: Optional[float] = None,
                action_low=None, action_high=None, discrete: Optional[bool] = None,
                num_actions: Optional[int] = None, obs_keys: Optional[Sequence[str]] = None,
                reward_scale: float = 1.0, reward_bias: float = 0.0) -> OfflineDataset:
  """An OfflineDataset from arrays, validated like a Minari dataset (see the module docstring).

  Args:
    observations: [T+E, ...] (episode layout) or [T, ...] (with next_observations), float;
      or a dict of such arrays (flattened per key in the order of obs_keys, default sorted).
    actions: [T, A] float in environment units (Box) or [T] int indices (Discrete).
    rewards: [T] float, as the environment gave them.
    terminals: [T] bool, True where the episode terminated (no bootstrapping from there).
    truncations: [T] bool, True where it was cut off (time limit); it still bootstraps.
    next_observations: [T, ...] like observations, for the transition layout; None for the
      episode layout.
    dataset_id: name used in messages, logs and results.
    env_id, env_kwargs: Gymnasium environment to evaluate in (and to read action bounds from).
    ref_min_score, ref_max_score: D4RL-style reference returns for normalized scores.
    action_low, action_high: [A] Box bounds. Default: env_id's action space; without env_id,
      [-1, 1] when every action lies in it, else an error asking for the bounds.
    discrete: None infers it from the action dtype (integers: Discrete).
    num_actions: Discrete size. Default: env_id's action space, else max action + 1.
    obs_keys: dict observations only.
    reward_scale, reward_bias: training rewards become reward * scale + bias.

  Returns:
    OfflineDataset with obs/next_obs float32 [T, O], actions float32 [T, A] (env units) or int32
    [T], reward and discount float32 [T], episode_returns float32 [E], initial_obs [E, O].

  Raises:
    DatasetError: naming the array, the problem and the fix.
  """
  name = dataset_id
  action = np.asarray(actions)
  if action.ndim == 0:
    raise DatasetError(f"{name}: actions is a scalar; expected [T, A] or [T].")
  size = int(action.shape[0])
  if size == 0:
    raise DatasetError(f"{name}: the dataset is empty (0 actions); give at least one step.")
  reward = np.asarray(rewards)
  if reward.shape != (size,):
    raise DatasetError(f"{name}: rewards has shape {reward.shape}; expected [T] = [{size}], one "
                       f"per action (actions has shape {action.shape}).")
  if not np.issubdtype(reward.dtype, np.number):
    raise DatasetError(f"{name}: rewards has non-numeric dtype {reward.dtype}.")
  term = _flag(terminals, "terminals", size, name)
  trunc = _flag(truncations, "truncations", size, name)
  done = term | trunc

  obs_keys = obs_lib.resolve_obs_keys(observations, obs_keys)
  flat = obs_lib.flatten_observations(observations, obs_keys)
  if next_observations is None:
    num_episodes = int(done.sum())
    if flat.shape[0] != size + num_episodes:
      hint = (" observations has as many rows as actions: pass next_observations for the "
              "transition layout, or give each episode's T_e+1 observations (episode layout)."
              if flat.shape[0] == size else "")
      raise DatasetError(
          f"{name}: observations has {flat.shape[0]} rows but the episode layout needs "
          f"T + E = {size} + {num_episodes} = {size + num_episodes} (T actions, E episodes "
          f"ended by terminals or truncations).{hint}")
    if not done[-1]:
      raise DatasetError(
          f"{name}: the last episode does not end: in the episode layout the last step must "
          "have terminals or truncations set (set truncations[-1] = True for a cut-off "
          "episode), or pass next_observations for the transition layout.")
    ends = np.flatnonzero(done)              # last transition of each episode
    starts = np.concatenate([[0], ends[:-1] + 1])
    # Episode e's observations start at row starts[e] + e (one extra row per earlier episode).
    obs_rows = np.arange(size) + np.repeat(np.arange(num_episodes), ends - starts + 1)
    obs, next_obs = flat[obs_rows], flat[obs_rows + 1]
  else:
    next_flat = obs_lib.flatten_observations(next_observations, obs_keys)
    if flat.shape[0] != size or next_flat.shape != flat.shape:
      raise DatasetError(
          f"{name}: in the transition layout observations {flat.shape} and next_observations "
          f"{next_flat.shape} must both have T = {size} rows (one per action) and equal width.")
    obs, next_obs = flat, next_flat
    starts = np.concatenate([[0], np.flatnonzero(done[:-1]) + 1])

  space = None
  if env_id is not None and (discrete is None or (discrete and num_actions is None) or (
      not discrete and (action_low is None or action_high is None))):
    space = _env_action_space(env_id, env_kwargs, name)
  if discrete is None:
    discrete = bool(np.issubdtype(action.dtype, np.integer))
  if discrete:
    if not np.issubdtype(action.dtype, np.integer):
      validation.check_kind(False, action.shape, True, name)
    action = action.astype(np.int32).reshape(size)
    if num_actions is None:
      num_actions = int(space.n) if space is not None and hasattr(space, "n") else \
          int(action.max()) + 1
  else:
    if np.issubdtype(action.dtype, np.integer):
      validation.check_kind(True, action.shape, False, name)
    action = action.astype(np.float32).reshape(size, -1)
    if action_low is None or action_high is None:
      if space is not None and hasattr(space, "low"):
        action_low, action_high = space.low, space.high
      elif np.all(np.abs(action[np.isfinite(action)]) <= 1.0):  # NaNs: validation names them.
        action_low = -np.ones(action.shape[1], np.float32)
        action_high = np.ones(action.shape[1], np.float32)
      else:
        raise DatasetError(
            f"{name}: actions span [{np.nanmin(action):.4g}, {np.nanmax(action):.4g}], outside "
            "[-1, 1], and no bounds were given: pass action_low and action_high (the "
            "environment's action-space bounds) or env_id.")
  raw = Transition(obs=obs, action=action, reward=reward.astype(np.float32),
                   discount=1.0 - term.astype(np.float32), next_obs=next_obs)
  return assemble(
      raw, starts, dataset_id=dataset_id, discrete=discrete, num_actions=num_actions,
      action_low=action_low, action_high=action_high, reward_scale=reward_scale,
      reward_bias=reward_bias, env_id=env_id, env_kwargs=env_kwargs,
      ref_min_score=None if ref_min_score is None else float(ref_min_score),
      ref_max_score=None if ref_max_score is None else float(ref_max_score),
      obs_keys=obs_keys, observation_space=_space_of(observations))

