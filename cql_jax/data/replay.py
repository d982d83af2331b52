"""A fixed-capacity ring buffer of transitions on the device, for online training.

The buffer is a pytree, and `insert` and `sample` are pure, so both run inside jit (and inside
the same compiled call as the gradient steps that read the new data). Capacity C is the static
leading size of the arrays; the write position and fill level are int32 scalars.
"""
from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp

from cql_jax.types import Transition


class ReplayBuffer(flax.struct.PyTreeNode):
  """Ring buffer state.

  data:       Transition with leading axis C (capacity); obs/next_obs [C, O], action [C, A]
              (or [C] discrete indices),
              reward/discount [C]. Slots at index >= size hold zeros and are never sampled.
  next_index: shape=(), int32. Slot the next transition is written to.
  size:       shape=(), int32. Number of filled slots, min(total inserted, C).
  """
  data: Transition
  next_index: jax.Array
  size: jax.Array

  @property
  def capacity(self) -> int:
    return int(self.data.reward.shape[0])


def make_replay_buffer(capacity: int, obs_dim: int, action_dim: Optional[int]) -> ReplayBuffer:
  """An empty float32 buffer of `capacity` transitions with [O] observations and [A] actions.

  action_dim None stores one scalar per transition (a discrete action index; float32 holds
  every index below 2**24 exactly, and the discrete agent casts it back to int32).
  """
  if capacity < 1:
    raise ValueError(f"capacity must be >= 1, got {capacity}")
  zeros = lambda *shape: jnp.zeros((capacity, *shape), jnp.float32)
  action_shape = () if action_dim is None else (action_dim,)
  data = Transition(obs=zeros(obs_dim), action=zeros(*action_shape), reward=zeros(),
                    discount=zeros(), next_obs=zeros(obs_dim))
  return ReplayBuffer(data=data, next_index=jnp.zeros((), jnp.int32),
                      size=jnp.zeros((), jnp.int32))


def insert(buffer: ReplayBuffer, transitions: Transition) -> ReplayBuffer:
  """Writes K transitions (leading axis K, K <= C) after the last one, wrapping around.

  Once full, the oldest transitions are overwritten first (FIFO). K must not exceed C: with
  K > C two rows would scatter to one slot and which one wins is unspecified.
  """
  num_new = int(transitions.reward.shape[0])
  capacity = buffer.capacity
  if num_new > capacity:
    raise ValueError(f"cannot insert {num_new} transitions into a buffer of capacity {capacity}")
  idx = (buffer.next_index + jnp.arange(num_new, dtype=jnp.int32)) % capacity
  data = jax.tree.map(lambda store, new: store.at[idx].set(jnp.asarray(new, store.dtype)),
                      buffer.data, transitions)
  return ReplayBuffer(data=data, next_index=(buffer.next_index + num_new) % capacity,
                      size=jnp.minimum(buffer.size + num_new, capacity))


def empty_like(row, capacity: int) -> ReplayBuffer:
  """An empty buffer of `capacity` slots shaped like `row` (a Transition, or ReturnTransition,
  of one transition, no leading axis), in its dtypes."""
  if capacity < 1:
    raise ValueError(f"capacity must be >= 1, got {capacity}")
  data = jax.tree.map(lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), row)
  return ReplayBuffer(data=data, next_index=jnp.zeros((), jnp.int32),
                      size=jnp.zeros((), jnp.int32))


def insert_first(buffer: ReplayBuffer, transitions, count) -> ReplayBuffer:
  """Writes the first `count` of K staged transitions (leading axis K, K <= C), like `insert`.

  count: int32 scalar, 0 <= count <= K, traced: one compiled call serves every count, so a host
  loop that hands over a variable number of rows (whole finished episodes) pads them to K and
  never compiles twice. Rows at and after `count` are dropped.
  """
  num_new = int(transitions.reward.shape[0])
  capacity = buffer.capacity
  if num_new > capacity:
    raise ValueError(f"cannot stage {num_new} transitions for a buffer of capacity {capacity}")
  rows = jnp.arange(num_new, dtype=jnp.int32)
  idx = jnp.where(rows < count, (buffer.next_index + rows) % capacity, capacity)  # C: dropped.
  data = jax.tree.map(
      lambda store, new: store.at[idx].set(jnp.asarray(new, store.dtype), mode="drop"),
      buffer.data, transitions)
  return ReplayBuffer(data=data, next_index=(buffer.next_index + count) % capacity,
                      size=jnp.minimum(buffer.size + count, capacity))


def sample(buffer: ReplayBuffer, key, batch_size: int) -> Transition:
  """Uniformly samples `batch_size` filled slots with replacement -> Transition [B, ...].

  The buffer must hold at least one transition (with size 0 every index would be slot 0).
  """
  idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
  return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), buffer.data)
