"""Loading Minari datasets into flat transitions for the offline agents.

Conventions (see REFERENCE.md §4–5):
  * Each Minari episode stores T+1 observations and T actions/rewards/terminations/
    truncations. Transition t is (obs[t], action[t], reward[t], obs[t+1]).
  * discount[t] = 1 - terminations[t]. Truncations (time limits, AntMaze's
    continuing-task cut-offs) only end the episode; they never stop bootstrapping,
    and no transition is dropped, because obs[T] is a genuine next observation.
  * Actions are stored as the environment produced them (Pendulum: [-2, 2]); the
    agent rescales Box actions to [-1, 1] with the env's action-space bounds.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from cql_jax.data import paths
from cql_jax.types import OfflineDataset, Transition


class DatasetError(ValueError):
  """A dataset is missing, empty or malformed. The message says how to fix it."""


# ---------------------------------------------------------------------------
# Validation (usable on hand-built arrays as well as on loaded datasets).
# ---------------------------------------------------------------------------


def _first_bad_index(x: np.ndarray) -> int:
  bad = ~np.isfinite(x)
  return int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])


def validate_transitions(transitions: Transition, *, discrete: Optional[bool] = None,
                         num_actions: Optional[int] = None,
                         name: str = "transitions") -> Transition:
  """Checks that a Transition of NumPy arrays is usable for offline training.

  Works on anything shaped like ``Transition`` (the loader's output or arrays a
  user assembled). Checks, in order: every field present; T > 0; every field has
  the same leading length T; obs/next_obs are [T, O] with equal O; reward and
  discount are [T]; discount only holds 0 or 1; no NaN/inf in observations,
  rewards, discounts or (continuous) actions; discrete actions are integers in
  [0, num_actions).

  Args:
    transitions: Transition with obs [T, O], action [T, A] float (continuous) or
      [T] int (discrete), reward [T], discount [T], next_obs [T, O].
    discrete: if given, the action kind the caller expects; checked with the same
      rule as :func:`check_action_kind`. None infers it from the action dtype.
    num_actions: size of a Discrete action space, to range-check indices.
    name: how to refer to the data in error messages (e.g. the dataset id).

  Returns:
    The same ``transitions`` (for chaining).

  Raises:
    DatasetError: describing the first problem found and what to do about it.
  """
  fields = {}
  for field in Transition._fields:
    value = getattr(transitions, field, None)
    if value is None:
      raise DatasetError(f"{name}: field '{field}' is None; every Transition field must be an array.")
    fields[field] = np.asarray(value)

  lengths = {k: (v.shape[0] if v.ndim else None) for k, v in fields.items()}
  if any(n is None for n in lengths.values()):
    scalars = [k for k, n in lengths.items() if n is None]
    raise DatasetError(f"{name}: fields {scalars} are scalars; every field needs a leading axis T "
                       "(number of transitions).")
  if len(set(lengths.values())) != 1:
    raise DatasetError(
        f"{name}: mismatched leading lengths {lengths}. Every field must have one entry per "
        "transition; build next_obs as observations[1:] and obs as observations[:-1] of each "
        "episode (T+1 observations for T actions).")
  size = lengths["reward"]
  if size == 0:
    raise DatasetError(f"{name}: the dataset is empty (0 transitions). Check that the dataset has "
                       "episodes with at least one step, or regenerate it.")

  obs, next_obs = fields["obs"], fields["next_obs"]
  if obs.ndim != 2 or next_obs.shape != obs.shape:
    raise DatasetError(
        f"{name}: obs {obs.shape} and next_obs {next_obs.shape} must both be [T, O]. Flatten "
        "structured observations first (load_dataset concatenates dict keys via obs_keys).")
  for field in ("reward", "discount"):
    if fields[field].ndim != 1:
      raise DatasetError(f"{name}: {field} has shape {fields[field].shape}; expected [T] = [{size}].")

  discount = fields["discount"]
  if not np.all((discount == 0.0) | (discount == 1.0)):
    raise DatasetError(
        f"{name}: discount must be 0 (terminated) or 1 (otherwise), found values "
        f"{np.unique(discount)[:5]}. Store 1 - terminations; the agent applies gamma itself.")

  for field in ("obs", "next_obs", "reward"):
    x = fields[field]
    if not np.issubdtype(x.dtype, np.number):
      raise DatasetError(f"{name}: {field} has non-numeric dtype {x.dtype}.")
    if not np.all(np.isfinite(x)):
      i = _first_bad_index(x)
      raise DatasetError(
          f"{name}: {field} contains NaN or inf (first at transition {i}: {x[i]}). Remove or fix "
          "those episodes before training; non-finite values poison every gradient step.")

  action = fields["action"]
  is_int = np.issubdtype(action.dtype, np.integer)
  if discrete is None:
    discrete = is_int
  _check_kind(is_int, action.shape, discrete, name)
  if discrete:
    if action.ndim != 1:
      raise DatasetError(f"{name}: discrete actions must be [T] integer indices, got {action.shape}.")
    if action.min() < 0 or (num_actions is not None and action.max() >= num_actions):
      raise DatasetError(
          f"{name}: discrete action indices span [{action.min()}, {action.max()}] but must lie in "
          f"[0, {num_actions}).")
  else:
    if action.ndim != 2:
      raise DatasetError(f"{name}: continuous actions must be [T, A], got {action.shape}. "
                         "Reshape scalar actions to [T, 1].")
    if not np.all(np.isfinite(action)):
      i = _first_bad_index(action)
      raise DatasetError(
          f"{name}: action contains NaN or inf (first at transition {i}: {action[i]}). Remove "
          "or fix those episodes.")
  return transitions


def _check_kind(is_int: bool, shape: tuple, discrete: bool, name: str) -> None:
  if discrete and not is_int:
    raise DatasetError(
        f"{name}: the discrete agent got continuous (float) actions of shape {shape}. Use the "
        "continuous CQL agent (SAC-based) for Box action spaces.")
  if not discrete and is_int:
    raise DatasetError(
        f"{name}: the continuous agent got discrete (integer) actions of shape {shape}. Use the "
        "discrete CQL agent (QR-DQN/DQN-based) for Discrete action spaces.")


def check_action_kind(dataset: OfflineDataset, discrete: bool) -> None:
  """Raises if the dataset's actions do not suit the agent.

  Args:
    dataset: a loaded OfflineDataset.
    discrete: True for the discrete-action agent, False for the continuous one.

  Raises:
    DatasetError: naming the agent to use instead.
  """
  action = np.asarray(dataset.transitions.action)
  is_int = bool(dataset.discrete) or np.issubdtype(action.dtype, np.integer)
  _check_kind(is_int, action.shape, discrete, dataset.dataset_id)


# ---------------------------------------------------------------------------
# Minari -> OfflineDataset.
# ---------------------------------------------------------------------------


def flatten_observations(observations: Any, obs_keys: Optional[Sequence[str]] = None) -> np.ndarray:
  """Turns one episode's observations into a float32 [T+1, O] array.

  Array observations are reshaped to [T+1, -1]. Dict observations (e.g. AntMaze:
  ``observation`` 27-d, ``achieved_goal`` 2-d, ``desired_goal`` 2-d) are flattened
  per key and concatenated in the order of ``obs_keys``; by default all keys in
  sorted order, so AntMaze gives [achieved_goal, desired_goal, observation].
  Nested dicts are flattened the same way, recursively, with sorted keys.

  Args:
    observations: array [T+1, ...] or dict of such arrays.
    obs_keys: top-level keys to keep, in order; ignored for array observations.

  Returns:
    float32 array [T+1, O].
  """
  if isinstance(observations, Mapping):
    keys = sorted(observations) if obs_keys is None else list(obs_keys)
    missing = [k for k in keys if k not in observations]
    if missing:
      raise DatasetError(f"obs_keys {missing} not in the observation dict; available keys: "
                         f"{sorted(observations)}.")
    if not keys:
      raise DatasetError("obs_keys is empty; name at least one observation key.")
    parts = [flatten_observations(observations[k]) for k in keys]
    lengths = {p.shape[0] for p in parts}
    if len(lengths) != 1:
      raise DatasetError(f"observation keys {keys} have different lengths {lengths}.")
    return np.concatenate(parts, axis=1)
  obs = np.asarray(observations, dtype=np.float32)
  if obs.ndim == 0:
    raise DatasetError("observations are a scalar; expected [T+1, ...].")
  return obs.reshape(obs.shape[0], -1)


def _env_info(minari_dataset) -> tuple:
  """(env_id, env_kwargs) from the eval env spec, else the collection env spec."""
  spec = None
  metadata = minari_dataset.storage.metadata
  eval_json = metadata.get("eval_env_spec")
  if eval_json:
    try:
      from gymnasium.envs.registration import EnvSpec
      spec = EnvSpec.from_json(eval_json)
    except Exception:  # pylint: disable=broad-except
      spec = None  # an unparsable eval spec should not block loading; fall back.
  if spec is None:
    spec = minari_dataset.env_spec
  if spec is None:
    return None, {}
  kwargs = dict(spec.kwargs or {})
  if spec.max_episode_steps is not None:
    kwargs["max_episode_steps"] = int(spec.max_episode_steps)
  return spec.id, kwargs


def _optional_float(value) -> Optional[float]:
  if value is None:
    return None
  value = float(value)
  return value if math.isfinite(value) else None


def _local_ids() -> list:
  try:
    import minari
    return sorted(minari.list_local_datasets())
  except Exception:  # pylint: disable=broad-except
    return []  # listing is only for the error message; never mask the real error.


def _missing_dataset_error(dataset_id: str, download: bool, cause: Exception) -> DatasetError:
  root = paths.datasets_root()
  local = _local_ids()
  local_text = ", ".join(local) if local else "none"
  if download:
    how = ("download=True was given but the download failed (no network access or unknown id?). "
           f"Check the id with `minari list remote`, or copy the dataset into {root}.")
  else:
    how = (f"Fetch it with `minari download {dataset_id}` (with MINARI_DATASETS_PATH={root}), or "
           "pass download=True (runner flag --download). Datasets this project generates itself "
           "(cql_jax/pendulum/*) are made with cql_jax.makers.pendulum.ensure_pendulum_datasets().")
  return DatasetError(
      f"Dataset '{dataset_id}' is not available under {root}. {how} Locally available: "
      f"{local_text}. (cause: {type(cause).__name__}: {cause})")


def from_minari(minari_dataset, *, obs_keys: Optional[Sequence[str]] = None,
                reward_scale: float = 1.0, reward_bias: float = 0.0,
                dataset_id: Optional[str] = None) -> OfflineDataset:
  """Flattens an already-opened ``minari.MinariDataset`` (see :func:`load_dataset`)."""
  import gymnasium as gym

  dataset_id = dataset_id or minari_dataset.spec.dataset_id
  action_space = minari_dataset.action_space
  if isinstance(action_space, gym.spaces.Discrete):
    discrete, num_actions = True, int(action_space.n)
  elif isinstance(action_space, gym.spaces.Box):
    discrete, num_actions = False, None
  else:
    raise DatasetError(
        f"{dataset_id}: action space {action_space} is not supported; cql_jax handles Box "
        "(continuous) and Discrete action spaces only.")

  obs_parts, next_parts, act_parts, rew_parts, disc_parts = [], [], [], [], []
  returns, initial = [], []
  for episode in minari_dataset.iterate_episodes():
    rewards = np.asarray(episode.rewards, dtype=np.float32).reshape(-1)
    terms = np.asarray(episode.terminations).reshape(-1)
    truncs = np.asarray(episode.truncations).reshape(-1)
    observations = flatten_observations(episode.observations, obs_keys)
    actions = np.asarray(episode.actions)
    n = rewards.shape[0]
    if n == 0:
      continue  # a zero-step episode holds no transition.
    if observations.shape[0] != n + 1 or actions.shape[0] != n or terms.shape[0] != n \
        or truncs.shape[0] != n:
      raise DatasetError(
          f"{dataset_id}: episode {episode.id} has {observations.shape[0]} observations, "
          f"{actions.shape[0]} actions, {n} rewards, {terms.shape[0]} terminations and "
          f"{truncs.shape[0]} truncations; expected T+1 observations and T of the rest. The "
          "dataset file is corrupt or was written incorrectly; regenerate or re-download it.")
    if discrete:
      actions = actions.astype(np.int32).reshape(n)
    else:
      actions = actions.astype(np.float32).reshape(n, -1)
    obs_parts.append(observations[:-1])
    next_parts.append(observations[1:])
    act_parts.append(actions)
    rew_parts.append(rewards)
    disc_parts.append(1.0 - terms.astype(np.float32))
    returns.append(float(np.sum(rewards, dtype=np.float64)))
    initial.append(observations[0])

  if not rew_parts:
    raise DatasetError(
        f"{dataset_id}: the dataset has no transitions ({minari_dataset.total_episodes} episodes). "
        "Regenerate or re-download it.")

  raw = Transition(
      obs=np.concatenate(obs_parts), action=np.concatenate(act_parts),
      reward=np.concatenate(rew_parts), discount=np.concatenate(disc_parts),
      next_obs=np.concatenate(next_parts))
  # Validate before the reward transform so messages refer to the stored values.
  validate_transitions(raw, discrete=discrete, num_actions=num_actions, name=dataset_id)
  reward = (raw.reward * np.float32(reward_scale) + np.float32(reward_bias)).astype(np.float32)
  transitions = raw._replace(reward=reward)

  metadata = minari_dataset.storage.metadata
  env_id, env_kwargs = _env_info(minari_dataset)
  return OfflineDataset(
      transitions=transitions,
      dataset_id=dataset_id,
      env_id=env_id,
      env_kwargs=env_kwargs,
      ref_min_score=_optional_float(metadata.get("ref_min_score")),
      ref_max_score=_optional_float(metadata.get("ref_max_score")),
      episode_returns=np.asarray(returns, dtype=np.float32),
      initial_obs=np.stack(initial).astype(np.float32),
      discrete=discrete,
      num_actions=num_actions,
      action_low=None if discrete else np.asarray(action_space.low, np.float32).reshape(-1),
      action_high=None if discrete else np.asarray(action_space.high, np.float32).reshape(-1),
  )


def load_dataset(dataset_id: str, *, download: bool = False,
                 obs_keys: Optional[Sequence[str]] = None, reward_scale: float = 1.0,
                 reward_bias: float = 0.0) -> OfflineDataset:
  """Loads a Minari dataset and flattens it to transitions.

  Args:
    dataset_id: Minari id, e.g. "cql_jax/pendulum/medium-v0" or "D4RL/antmaze/umaze-v1".
    download: fetch the dataset from the Minari server when it is not stored
      locally (needs network access).
    obs_keys: for dict observations, the keys to concatenate, in order. Default:
      all keys, sorted alphabetically.
    reward_scale, reward_bias: transition rewards become
      reward * reward_scale + reward_bias (e.g. AntMaze's shift, scale 1, bias -1).
      ``episode_returns`` stay raw so they compare with the reference scores.

  Returns:
    OfflineDataset with transitions of T steps: obs/next_obs float32 [T, O], action
    float32 [T, A] in the env's own units (Box) or int32 [T] (Discrete), reward and
    discount float32 [T] (discount = 1 - termination); episode_returns float32 [E];
    initial_obs float32 [E, O]; env id/kwargs from the dataset's (eval) env spec and
    reference scores from its metadata (None when absent).

  Raises:
    DatasetError: missing dataset (with the command to fetch it and the local ids),
      empty dataset, inconsistent episode lengths, non-finite values.
  """
  import minari

  paths.datasets_root()  # Point Minari at the project's dataset root unless the user chose one.
  try:
    minari_dataset = minari.load_dataset(dataset_id, download=download)
  except FileNotFoundError as e:
    raise _missing_dataset_error(dataset_id, download, e) from e
  except Exception as e:  # pylint: disable=broad-except
    if download:  # network/server failures surface as assorted exception types.
      raise _missing_dataset_error(dataset_id, download, e) from e
    raise
  return from_minari(minari_dataset, obs_keys=obs_keys, reward_scale=reward_scale,
                     reward_bias=reward_bias, dataset_id=dataset_id)
