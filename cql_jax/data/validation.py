"""Checks that arrays are usable offline-RL data; every failure names the fix.

Works on anything shaped like ``Transition`` (a loader's output or arrays a user assembled).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from cql_jax.data.errors import DatasetError
from cql_jax.types import OfflineDataset, Transition


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
  check_kind(is_int, action.shape, discrete, name)
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


def check_kind(is_int: bool, shape: tuple, discrete: bool, name: str) -> None:
  """Raises when integer (discrete) actions meet a continuous agent, or the reverse."""
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
  check_kind(is_int, action.shape, discrete, dataset.dataset_id)


def check_action_bounds(action: np.ndarray, low: np.ndarray, high: np.ndarray, name: str) -> None:
  """Raises when Box actions [T, A] leave [low, high] (the bounds would then be wrong)."""
  low = np.asarray(low, np.float32).reshape(-1)
  high = np.asarray(high, np.float32).reshape(-1)
  if low.shape[0] != action.shape[1] or high.shape[0] != action.shape[1]:
    raise DatasetError(f"{name}: action bounds have {low.shape[0]} and {high.shape[0]} entries "
                       f"but actions are {action.shape[1]}-d; give one bound per action dimension.")
  if not np.all(high > low):
    raise DatasetError(f"{name}: action_high {high} must exceed action_low {low} in every "
                       "dimension.")
  tol = 1e-4 * np.maximum(1.0, high - low)
  outside = (action < low - tol) | (action > high + tol)
  if np.any(outside):
    t = int(np.flatnonzero(outside.any(axis=1))[0])
    raise DatasetError(
        f"{name}: actions span [{action.min():.4g}, {action.max():.4g}] but the action bounds "
        f"are [{low}, {high}] (first outside at transition {t}: {action[t]}). Store actions in "
        "the environment's units and give that environment's action bounds.")
