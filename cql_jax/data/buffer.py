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


def to_device(transitions: Transition, device=None) -> Transition:
  """Copies the flat transition arrays to the (default) device once, before training."""
  return jax.tree.map(lambda x: jax.device_put(jnp.asarray(x), device), transitions)


def sample_batch(data: Transition, key, batch_size: int) -> Transition:
  """Uniformly samples `batch_size` transitions with replacement; pure and jit-able.

  data: Transition with leading axis T (on device). Returns a Transition with leading axis B.
  """
  size = data.reward.shape[0]
  idx = jax.random.randint(key, (batch_size,), 0, size)
  return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), data)
