"""Loading Minari datasets into flat transitions for the offline agents.

Conventions (Minari's episode layout; D4RL's handling of time limits, done right):
  * Each Minari episode stores T+1 observations and T actions/rewards/terminations/
    truncations. Transition t is (obs[t], action[t], reward[t], obs[t+1]).
  * discount[t] = 1 - terminations[t]. Truncations (time limits, AntMaze's
    continuing-task cut-offs) only end the episode; they never stop bootstrapping,
    and no transition is dropped, because obs[T] is a genuine next observation.
  * Actions are stored as the environment produced them (Pendulum: [-2, 2]); the
    agent rescales Box actions to [-1, 1] with the env's action-space bounds.
"""
from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import numpy as np

from cql_jax.data import arrays
from cql_jax.data import maze_maps
from cql_jax.data import paths
from cql_jax.data.errors import DatasetError
from cql_jax.data.observations import flatten_observations
from cql_jax.data.observations import resolve_obs_keys
from cql_jax.data.validation import check_action_kind
from cql_jax.data.validation import validate_transitions
from cql_jax.types import OfflineDataset, Transition

_log = logging.getLogger(__name__)

# Names other modules have always imported from here.
__all__ = ["DatasetError", "check_action_kind", "eval_env_spec", "flatten_observations",
           "from_minari", "load_dataset", "validate_transitions"]


def eval_env_spec(minari_dataset):
  """The EnvSpec that ``minari_dataset.recover_environment(eval_env=True)`` builds, or None.

  Minari's rule: the evaluation spec stored with the dataset, else the collection spec. Read
  without building the environment, so a dataset loads where its environment is not installed;
  the runner builds it at start-up (cql_jax.evaluation.check_eval_env).
  """
  from gymnasium.envs.registration import EnvSpec  # pylint: disable=import-outside-toplevel
  text = minari_dataset.storage.metadata.get("eval_env_spec")
  if text:
    # Minari's own compatibility edit for specs written by gymnasium 1.0.
    text = (text.replace('"order_enforce": true,', "")
            .replace('"apply_api_compatibility": false,', "").replace('"autoreset": false, ', ""))
    try:
      return EnvSpec.from_json(text)
    except Exception:  # pylint: disable=broad-except
      pass  # Minari would fail the same way on an unparsable eval spec; use the collection one.
  return minari_dataset.env_spec


def _env_info(spec) -> tuple:
  """(env_id, env_kwargs) of an EnvSpec, max_episode_steps folded into the kwargs."""
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
           "pass download=True (runner flag --download). Datasets in the project's own namespace "
           "(cql_jax/*) are not downloadable; cql_jax.makers.registry.ensure_available makes "
           "them or names the command that does.")
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
  obs_space = getattr(minari_dataset, "observation_space", None)
  keys = resolve_obs_keys(obs_space, obs_keys) if obs_space is not None else (
      None if obs_keys is None else tuple(obs_keys))

  obs_parts, next_parts, act_parts, rew_parts, disc_parts, lengths = [], [], [], [], [], []
  for episode in minari_dataset.iterate_episodes():
    rewards = np.asarray(episode.rewards, dtype=np.float32).reshape(-1)
    terms = np.asarray(episode.terminations).reshape(-1)
    truncs = np.asarray(episode.truncations).reshape(-1)
    observations = flatten_observations(episode.observations, keys)
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
    lengths.append(n)

  if not rew_parts:
    raise DatasetError(
        f"{dataset_id}: the dataset has no transitions ({minari_dataset.total_episodes} episodes). "
        "Regenerate or re-download it.")

  raw = Transition(
      obs=np.concatenate(obs_parts), action=np.concatenate(act_parts),
      reward=np.concatenate(rew_parts), discount=np.concatenate(disc_parts),
      next_obs=np.concatenate(next_parts))
  metadata = minari_dataset.storage.metadata
  spec, note = maze_maps.reconcile_eval_spec(eval_env_spec(minari_dataset),
                                             minari_dataset.env_spec, dataset_id)
  if note:
    _log.warning(note)
  env_id, env_kwargs = _env_info(spec)
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  # Validation happens before the reward transform, so messages refer to the stored values.
  return arrays.assemble(
      raw, starts, dataset_id=dataset_id, discrete=discrete, num_actions=num_actions,
      action_low=None if discrete else action_space.low,
      action_high=None if discrete else action_space.high, reward_scale=reward_scale,
      reward_bias=reward_bias, env_id=env_id, env_kwargs=env_kwargs, env_spec=spec,
      ref_min_score=_optional_float(metadata.get("ref_min_score")),
      ref_max_score=_optional_float(metadata.get("ref_max_score")),
      obs_keys=keys, observation_space=obs_space, data_env_spec=minari_dataset.env_spec)


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
    initial_obs float32 [E, O]; env_spec the evaluation spec (eval_env_spec, its maze made the
    recording one by maze_maps.reconcile_eval_spec) and env id/kwargs read from it;
    data_env_spec the recording (collection) spec; obs_keys the dict keys flattened (None for arrays) and
    observation_space the stored one; reference scores from the metadata (None when absent).

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
