"""The training loop: K updates per call in one lax.scan, compiled once, vmapped over seeds."""
from __future__ import annotations

import functools
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cql_jax.data import buffer
from cql_jax.types import Agent, Transition


def make_train_chunk(update: Callable, sample: Callable, num_steps: int) -> Callable:
  """Returns chunk(state, data, key) -> (state, metrics) running `num_steps` updates in a scan.

  update(state, batch, key) -> (state, metrics); sample(data, key) -> batch. The dataset is an
  argument rather than a closed-over constant so XLA does not embed it in the program.
  metrics come back stacked: each value has a leading axis [num_steps].
  """
  def chunk(state, data: Transition, key):
    def body(state, step_key):
      batch_key, update_key = jax.random.split(step_key)
      return update(state, sample(data, batch_key), update_key)
    return jax.lax.scan(body, state, jax.random.split(key, num_steps))
  return chunk


def compile_chunk(agent: Agent, batch_size: int, num_steps: int, num_seeds: Optional[int] = None):
  """jit(chunk) with the state donated; with num_seeds, states carry a leading seed axis [S].

  Returns chunk(state, data, key) where key is a single key (split per seed inside).
  """
  sample = functools.partial(buffer.sample_batch, batch_size=batch_size)
  chunk = make_train_chunk(agent.update, sample, num_steps)
  if num_seeds is None:
    return jax.jit(chunk, donate_argnums=0)
  seeded = jax.vmap(chunk, in_axes=(0, None, 0))
  return jax.jit(lambda state, data, key: seeded(state, data, jax.random.split(key, num_seeds)),
                 donate_argnums=0)


def init_states(agent: Agent, key, num_seeds: Optional[int] = None):
  """agent.init for one seed, or stacked states [S, ...] for num_seeds seeds.

  Every leaf gets its own buffer: an init that returns one array twice (e.g. target params
  equal to params) would otherwise make the donated chunk call fail ("donate the same buffer
  twice").
  """
  if num_seeds is None:
    state = agent.init(key)
  else:
    state = jax.vmap(agent.init)(jax.random.split(key, num_seeds))
  return jax.tree.map(jnp.copy, state)


def chunk_key(run_key, chunk_index: int):
  """Key for the chunk at `chunk_index`, derived (not carried) so a resumed run replays it."""
  return jax.random.fold_in(run_key, chunk_index)


def summarize(metrics: Dict[str, jax.Array]) -> Dict[str, np.ndarray]:
  """Averages stacked chunk metrics over the step axis on the host.

  Values are [T] for one seed or [S, T] for vmapped seeds (the scan axis is always last);
  returns scalars or [S] arrays.
  """
  return {k: np.asarray(v).mean(axis=-1) for k, v in jax.device_get(metrics).items()}


def fit(agent: Agent, data: Transition, *, seed: int, num_steps: int, steps_per_chunk: int = 1000,
        batch_size: int = 256, num_seeds: Optional[int] = None, state=None,
        on_chunk: Optional[Callable] = None):
  """Trains for `num_steps` gradient steps (a multiple of steps_per_chunk) and returns the state.

  data: device Transition (see cql_jax.data.buffer.to_device). The chunk is compiled once.
  on_chunk(step, state, metrics) is called on the host after each chunk with `step` the number
  of updates done so far and `metrics` the per-chunk means from `summarize`.
  """
  if num_steps % steps_per_chunk:
    raise ValueError(f"num_steps={num_steps} must be a multiple of steps_per_chunk="
                     f"{steps_per_chunk}")
  run_key = jax.random.key(seed)
  init_key, loop_key = jax.random.split(run_key)
  if state is None:
    state = init_states(agent, init_key, num_seeds)
  chunk = compile_chunk(agent, batch_size, steps_per_chunk, num_seeds)
  for i in range(num_steps // steps_per_chunk):
    state, metrics = chunk(state, data, chunk_key(loop_key, i))
    if on_chunk is not None:
      on_chunk((i + 1) * steps_per_chunk, state, summarize(metrics))
  return state
