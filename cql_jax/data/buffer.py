"""Transitions on the device and batch sampling inside jit (no host round trip per step)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cql_jax.types import Transition


def scale_actions(transitions: Transition, action_low, action_high) -> Transition:
  """Maps Box actions from [low, high] to [-1, 1] (the range the tanh policy works in).

  transitions.action: [T, A] in environment units. Returns a new Transition (NumPy).
  Raises ValueError when dataset actions lie outside the given bounds, since a policy squashed
  into the bounds could never reproduce them and the bounds are likely wrong.
  """
  low = np.asarray(action_low, np.float32)
  high = np.asarray(action_high, np.float32)
  action = np.asarray(transitions.action, np.float32)
  tol = 1e-4 * np.maximum(1.0, high - low)
  if np.any(action < low - tol) or np.any(action > high + tol):
    raise ValueError(
        f"dataset actions span [{action.min():.4g}, {action.max():.4g}] but the action space is "
        f"[{low.min():.4g}, {high.max():.4g}]; check that the dataset matches the environment.")
  unit = 2.0 * (action - low) / (high - low) - 1.0
  return transitions._replace(action=np.clip(unit, -1.0, 1.0).astype(np.float32))


# Slack on the [-1, 1] check: scale_actions clips, so only foreign data reaches past it.
_UNIT_TOLERANCE = 1e-4


def to_device(transitions: Transition, device=None) -> Transition:
  """Copies the flat transition arrays to the (default) device once, before training.

  Box (floating-point) actions must already be in the agents' units, [-1, 1]: a dataset
  holds environment units (Pendulum: [-2, 2]), so put it on the device with
  `cql_jax.device_data(dataset)`, which scales with the dataset's bounds, or scale first with
  `scale_actions`. Actions outside [-1, 1] raise ValueError rather than train on the wrong scale.
  Discrete (integer) actions pass as they are.
  """
  data = jax.tree.map(lambda x: jax.device_put(jnp.asarray(x), device), transitions)
  action = data.action
  if jnp.issubdtype(action.dtype, jnp.floating) and action.size:
    low, high = (float(v) for v in jax.device_get((jnp.min(action), jnp.max(action))))
    if low < -1.0 - _UNIT_TOLERANCE or high > 1.0 + _UNIT_TOLERANCE:
      raise ValueError(
          f"transitions.action spans [{low:.4g}, {high:.4g}], but the agents train on actions "
          "scaled to [-1, 1]; these look like environment units. Put a dataset on the device "
          "with cql_jax.device_data(dataset) (it scales with the dataset's action bounds), or "
          "scale first: cql_jax.data.buffer.scale_actions(transitions, low, high).")
  return data


def sample_batch(data: Transition, key, batch_size: int) -> Transition:
  """Uniformly samples `batch_size` transitions with replacement; pure and jit-able.

  data: Transition with leading axis T (on device). Returns a Transition with leading axis B.
  """
  size = data.reward.shape[0]
  idx = jax.random.randint(key, (batch_size,), 0, size)
  return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), data)
