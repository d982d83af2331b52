"""The one observation transform shared by the dataset loaders and the evaluator.

Training and evaluation must feed the agent the same vector: a dataset whose dict keys were
concatenated in one order and an evaluation environment flattened in another would train and
evaluate on different inputs without any shape error. So both sides call
:func:`flatten_observations` with the keys the dataset recorded (``OfflineDataset.obs_keys``).

Dict observations (AntMaze: ``observation`` 27-d, ``achieved_goal`` 2-d, ``desired_goal`` 2-d;
Kitchen: nested goal dicts) are flattened per key and concatenated in the order of the keys;
nested dicts are flattened recursively with their keys sorted. Array observations are reshaped.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np

from cql_jax.data.errors import ObservationError


def resolve_obs_keys(observation: Any, obs_keys: Optional[Sequence[str]]) -> Optional[Tuple[str, ...]]:
  """The keys :func:`flatten_observations` will use: None for array observations, else a tuple.

  observation: one observation, a batch, or a gymnasium Dict space (anything with keys);
  obs_keys: the requested keys, or None for all top-level keys in sorted order.
  """
  keys = getattr(observation, "spaces", observation)
  if not isinstance(keys, Mapping):
    if obs_keys is not None:
      raise ObservationError(
          f"obs_keys {tuple(obs_keys)} were given, but the observations are arrays, not dicts; "
          "set obs_keys to None (config.data.obs_keys).")
    return None
  return tuple(sorted(keys)) if obs_keys is None else tuple(obs_keys)


def flatten_observations(observations: Any, obs_keys: Optional[Sequence[str]] = None,
                         batch_ndim: int = 1) -> np.ndarray:
  """Flattens observations (an array or a dict of arrays) to float32 [*batch, O].

  Args:
    observations: array [*batch, ...] or dict of such arrays (values may be dicts).
    obs_keys: top-level dict keys to keep, in order, e.g. ("observation", "desired_goal");
      None keeps every key in sorted order. Must be None for array observations.
    batch_ndim: leading axes kept as they are: 1 for a dataset episode [T+1, ...] or a vector
      env's batch [N, ...], 0 for a single environment's observation.

  Returns:
    float32 array [*batch, O].

  Raises:
    ObservationError: a key is missing, keys are given for array observations, or the keys'
      leading axes disagree.
  """
  if isinstance(observations, Mapping):
    keys = resolve_obs_keys(observations, obs_keys)
    if not keys:
      raise ObservationError("obs_keys is empty; name at least one observation key.")
    missing = [k for k in keys if k not in observations]
    if missing:
      raise ObservationError(f"obs_keys {missing} not in the observation dict; available keys: "
                             f"{sorted(observations)}. Fix config.data.obs_keys.")
    parts = [flatten_observations(observations[k], None, batch_ndim) for k in keys]
    batches = {p.shape[:-1] for p in parts}
    if len(batches) != 1:
      raise ObservationError(f"observation keys {list(keys)} have different lengths "
                             f"{sorted(batches)}.")
    return np.concatenate(parts, axis=-1)
  if obs_keys is not None:
    raise ObservationError(
        f"obs_keys {tuple(obs_keys)} were given, but the observations are arrays, not dicts; "
        "set obs_keys to None (config.data.obs_keys).")
  array = np.asarray(observations, dtype=np.float32)
  if array.ndim < max(batch_ndim, 1):
    raise ObservationError(f"observations of shape {array.shape} are a scalar; expected "
                           f"[{', '.join(['N'] * batch_ndim)}{', ' if batch_ndim else ''}...].")
  return array.reshape(*array.shape[:batch_ndim], -1)


def flat_size(space, obs_keys: Optional[Sequence[str]] = None) -> int:
  """Length O that :func:`flatten_observations` gives for observations of a gymnasium space."""
  spaces = getattr(space, "spaces", None)
  if isinstance(spaces, Mapping):
    keys = resolve_obs_keys(space, obs_keys)
    missing = [k for k in keys if k not in spaces]
    if missing:
      raise ObservationError(f"obs_keys {missing} not in the observation space, whose keys are "
                             f"{sorted(spaces)}. Fix config.data.obs_keys.")
    return sum(flat_size(spaces[k]) for k in keys)
  resolve_obs_keys(space, obs_keys)  # raises for keys on an array space.
  return int(np.prod(space.shape))


def check_layout(dataset_space, env_space, obs_keys: Optional[Sequence[str]] = None, *,
                 dataset_name: str = "the dataset", env_name: str = "the environment") -> None:
  """Checks that a dataset's and an environment's observation spaces agree on the kept keys.

  Compares each kept key's shape (recursively for nested dicts), so a 27-d dataset
  ``observation`` against a 105-d environment one is named by key, with both shapes.

  Raises:
    ObservationError naming the key, both shapes and what to change.
  """
  def describe(space):
    spaces = getattr(space, "spaces", None)
    return f"dict with keys {sorted(spaces)}" if isinstance(spaces, Mapping) else \
        f"array of shape {tuple(space.shape)}"

  def compare(a, b, path):
    a_spaces, b_spaces = getattr(a, "spaces", None), getattr(b, "spaces", None)
    a_dict, b_dict = isinstance(a_spaces, Mapping), isinstance(b_spaces, Mapping)
    where = f"observation '{path}'" if path else "observation"
    if a_dict != b_dict or (a_dict and sorted(a_spaces) != sorted(b_spaces)):
      raise ObservationError(
          f"{where}: {dataset_name} has a {describe(a)} but {env_name} gives a {describe(b)}. "
          "Evaluate in the dataset's own environment (the spec it records) or rebuild the "
          "dataset from this environment.")
    if a_dict:
      for k in a_spaces:
        compare(a_spaces[k], b_spaces[k], f"{path}.{k}" if path else k)
    elif tuple(a.shape) != tuple(b.shape):
      raise ObservationError(
          f"{where}: {dataset_name} has shape {tuple(a.shape)} but {env_name} gives "
          f"{tuple(b.shape)}. Evaluate in the dataset's own environment (the spec it records) "
          "or fix the environment's kwargs (e.g. AntMaze v5 adds contact forces unless made "
          "with include_cfrc_ext_in_observation=False).")

  a_spaces = getattr(dataset_space, "spaces", None)
  if isinstance(a_spaces, Mapping):
    b_spaces = getattr(env_space, "spaces", None)
    keys = resolve_obs_keys(dataset_space, obs_keys)
    if not isinstance(b_spaces, Mapping):
      raise ObservationError(
          f"{dataset_name} has dict observations (keys {sorted(a_spaces)}) but {env_name} gives "
          f"a {describe(env_space)}; evaluate in the dataset's own environment.")
    for k in keys:
      if k not in a_spaces or k not in b_spaces:
        raise ObservationError(
            f"observation key '{k}' is missing from {dataset_name} (keys {sorted(a_spaces)}) or "
            f"from {env_name} (keys {sorted(b_spaces)}); fix config.data.obs_keys.")
      compare(a_spaces[k], b_spaces[k], k)
  else:
    compare(dataset_space, env_space, "")
