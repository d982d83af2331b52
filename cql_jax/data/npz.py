"""Offline datasets in a NumPy ``.npz`` file: what ``--config.dataset_path=...`` trains on.

Keys (arrays; T = number of actions, E = number of episodes):

  observations       [T+E, ...] episode layout (each episode's T_e+1 observations in turn), or
                     [T, ...] together with next_observations (transition layout). Dict
                     observations are stored one key each as ``observations/<key>`` (and
                     ``next_observations/<key>``).
  actions            [T, A] float in environment units (Box) or [T] int (Discrete).
  rewards            [T] float.
  terminals          [T] bool: the episode terminated after this step (no bootstrapping).
  truncations        [T] bool: it was cut off here (time limit); bootstrapping continues.
                     D4RL's name ``timeouts`` is accepted instead.
  next_observations  optional, [T, ...]: selects the transition layout.
Optional metadata (0-d arrays):
  env_id             str, Gymnasium id to evaluate in (e.g. "Pendulum-v1").
  env_kwargs         str, JSON object of gymnasium.make keyword arguments.
  ref_min_score, ref_max_score   float, reference returns for D4RL-style normalized scores.
  action_low, action_high        [A] float, Box bounds (default: env_id's action space).
  discrete           bool; num_actions int.

:func:`save_npz` writes such a file; :func:`load_npz` reads it through
``OfflineDataset.from_arrays`` (same validation and conventions as the Minari loader).
"""
from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from cql_jax.data import arrays
from cql_jax.data.errors import DatasetError
from cql_jax.types import OfflineDataset

_REQUIRED = ("observations", "actions", "rewards", "terminals", "truncations")
_OPTIONAL_ARRAYS = ("next_observations", "action_low", "action_high")
_SCALARS = ("env_id", "env_kwargs", "ref_min_score", "ref_max_score", "discrete", "num_actions")
_ALIASES = {"timeouts": "truncations"}


def _unflatten(files: Mapping[str, Any], prefix: str):
  """files["<prefix>"] or {key: files["<prefix>/<key>"]}, or None when neither is there."""
  if prefix in files:
    return files[prefix]
  sub = {k[len(prefix) + 1:]: files[k] for k in files if k.startswith(prefix + "/")}
  return sub or None


def load_npz(path, *, obs_keys: Optional[Sequence[str]] = None, reward_scale: float = 1.0,
             reward_bias: float = 0.0, env_id: Optional[str] = None,
             env_kwargs: Optional[dict] = None) -> OfflineDataset:
  """Reads a dataset file in the format of the module docstring.

  Args:
    path: the .npz file.
    obs_keys: for dict observations, the keys to concatenate, in order (default: sorted).
    reward_scale, reward_bias: training rewards become reward * scale + bias.
    env_id, env_kwargs: evaluation environment used only when the file records no env_id.

  Returns:
    OfflineDataset named by the path (dataset_id = the path as given).

  Raises:
    DatasetError: missing file, missing or unknown keys, or arrays that fail validation.
  """
  path = pathlib.Path(path)
  name = str(path)
  if not path.is_file():
    raise DatasetError(f"dataset file {name} does not exist (config.dataset_path). Write one "
                       "with cql_jax.data.npz.save_npz; its keys are documented there.")
  try:
    with np.load(path, allow_pickle=False) as data:
      files = {k: data[k] for k in data.files}
  except Exception as err:  # pylint: disable=broad-except
    raise DatasetError(f"{name} is not a readable .npz file ({type(err).__name__}: {err}).") from err
  for alias, key in _ALIASES.items():
    if alias in files and key not in files:
      files[key] = files.pop(alias)
  top = {k.split("/", 1)[0] for k in files}
  known = set(_REQUIRED) | set(_OPTIONAL_ARRAYS) | set(_SCALARS)
  unknown = sorted(top - known)
  if unknown:
    raise DatasetError(f"{name}: unknown keys {unknown}; a dataset file holds {list(_REQUIRED)}, "
                       f"optionally {list(_OPTIONAL_ARRAYS + _SCALARS)} (see cql_jax.data.npz).")
  missing = [k for k in _REQUIRED if k not in top]
  if missing:
    raise DatasetError(f"{name}: missing keys {missing} (it has {sorted(top)}); a dataset file "
                       f"needs {list(_REQUIRED)} (see cql_jax.data.npz).")

  def scalar(key, kind):
    if key not in files:
      return None
    value = files[key]
    if value.shape != ():
      raise DatasetError(f"{name}: '{key}' must be a 0-d array (a single value), got shape "
                         f"{value.shape}.")
    return kind(value.item())

  kwargs_text = scalar("env_kwargs", str)
  try:
    file_kwargs = None if kwargs_text is None else dict(json.loads(kwargs_text))
  except (ValueError, TypeError) as err:
    raise DatasetError(f"{name}: 'env_kwargs' must be a JSON object, got {kwargs_text!r}.") from err
  file_env = scalar("env_id", str)
  return arrays.from_arrays(
      _unflatten(files, "observations"), files["actions"], files["rewards"], files["terminals"],
      files["truncations"], next_observations=_unflatten(files, "next_observations"),
      dataset_id=name, env_id=file_env or env_id,
      env_kwargs=file_kwargs if file_env else (env_kwargs if file_kwargs is None else file_kwargs),
      ref_min_score=scalar("ref_min_score", float), ref_max_score=scalar("ref_max_score", float),
      action_low=files.get("action_low"), action_high=files.get("action_high"),
      discrete=scalar("discrete", bool), num_actions=scalar("num_actions", int),
      obs_keys=obs_keys, reward_scale=reward_scale, reward_bias=reward_bias)


def save_npz(path, observations, actions, rewards, terminals, truncations, *,
             next_observations=None, env_id: Optional[str] = None,
             env_kwargs: Optional[dict] = None, ref_min_score: Optional[float] = None,
             ref_max_score: Optional[float] = None, action_low=None, action_high=None,
             discrete: Optional[bool] = None, num_actions: Optional[int] = None) -> pathlib.Path:
  """Writes a dataset file that load_npz reads (arguments as in OfflineDataset.from_arrays).

  The file appears whole or not at all (written next to it, then renamed).
  """
  path = pathlib.Path(path)
  out = {}

  def put(prefix, value):
    if value is None:
      return
    if isinstance(value, Mapping):
      for k, v in value.items():
        put(f"{prefix}/{k}", v)
    else:
      out[prefix] = np.asarray(value)

  put("observations", observations)
  put("next_observations", next_observations)
  for key, value in (("actions", actions), ("rewards", rewards), ("terminals", terminals),
                     ("truncations", truncations), ("action_low", action_low),
                     ("action_high", action_high)):
    put(key, value)
  for key, value in (("env_id", env_id), ("ref_min_score", ref_min_score),
                     ("ref_max_score", ref_max_score), ("discrete", discrete),
                     ("num_actions", num_actions)):
    if value is not None:
      out[key] = np.asarray(value)
  if env_kwargs is not None:
    out["env_kwargs"] = np.asarray(json.dumps(dict(env_kwargs)))
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp.npz")
  os.close(fd)
  try:
    np.savez(tmp, **out)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path
