"""The training loop: K updates per call in one lax.scan, compiled once, vmapped over seeds."""
from __future__ import annotations

import functools
from typing import Callable, Dict, Optional, Sequence

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
    # The key rides in the carry (split once per step) rather than as scanned-over xs: same
    # cost, and JAX's key-reuse checker accepts it under vmap, which it does not for xs keys.
    def body(carry, _):
      state, key = carry
      key, batch_key, update_key = jax.random.split(key, 3)
      state, metrics = update(state, sample(data, batch_key), update_key)
      return (state, key), metrics
    (state, _), metrics = jax.lax.scan(body, (state, key), None, num_steps)
    return state, metrics
  return chunk


def compile_chunk(agent: Agent, batch_size: int, num_steps: int, num_seeds: Optional[int] = None,
                  sample: Optional[Callable] = None):
  """jit(chunk) with the state donated: chunk(state, data, key) -> (state, metrics).

  Donated means the call deletes the `state` passed in (XLA reuses its buffers for the new
  state, so a chunk needs no second copy of parameters and optimiser moments): always rebind,
  `state, metrics = chunk(state, data, key)`, and copy first what you want to keep
  (`kept = jax.tree.map(jnp.copy, state)`); touching a passed-in state afterwards raises
  "Array has been deleted". `fit` does the copying for you.
  With num_seeds = S the state carries a leading seed axis and `key` is [S] per-seed keys
  (see seed_keys/chunk_keys); the data is shared by all seeds, never copied per seed, and
  metrics come back [S, num_steps]. sample(data, key) -> batch defaults to uniform sampling
  of flat transitions (buffer.sample_batch with `batch_size`); pass another, e.g. the
  stacked-frame sampler of cql_jax.data.dopamine_replay.sample_fn, for other data layouts.
  """
  if sample is None:
    sample = functools.partial(buffer.sample_batch, batch_size=batch_size)
  chunk = make_train_chunk(agent.update, sample, num_steps)
  if num_seeds is not None:
    chunk = jax.vmap(chunk, in_axes=(0, None, 0))
  return jax.jit(chunk, donate_argnums=0)


def seed_keys(seeds: Sequence[int]):
  """Per-seed (init_keys [S], loop_keys [S]) derived from each integer seed alone.

  Seed s gets the same keys whether it trains alone or inside a sweep of any size.
  """
  run_keys = jax.vmap(jax.random.key)(jnp.asarray(list(seeds), jnp.uint32))
  return jax.vmap(jax.random.split, out_axes=1)(run_keys)


def init_states(agent: Agent, key, num_seeds: Optional[int] = None):
  """agent.init(key) for one seed; with num_seeds, `key` is [S] keys and states are stacked.

  Every leaf gets its own buffer: an init that returns one array twice (e.g. target params
  equal to params) would otherwise make the donated chunk call fail ("donate the same buffer
  twice").
  """
  state = agent.init(key) if num_seeds is None else jax.vmap(agent.init)(key)
  return jax.tree.map(jnp.copy, state)


def chunk_key(run_key, chunk_index: int):
  """Key for the chunk at `chunk_index`, derived (not carried) so a resumed run replays it."""
  return jax.random.fold_in(run_key, chunk_index)


def chunk_keys(loop_keys, chunk_index: int):
  """chunk_key for each of [S] per-seed loop keys."""
  return jax.vmap(chunk_key, in_axes=(0, None))(loop_keys, chunk_index)


def summarize(metrics: Dict[str, jax.Array]) -> Dict[str, np.ndarray]:
  """Averages stacked chunk metrics over the step axis on the host.

  Values are [T] for one seed or [S, T] for vmapped seeds (the scan axis is always last);
  returns scalars or [S] arrays.
  """
  return {k: np.asarray(v).mean(axis=-1) for k, v in jax.device_get(metrics).items()}


def fit(agent: Agent, data: Transition, *, seed: int, num_steps: int, steps_per_chunk: int = 1000,
        batch_size: int = 256, num_seeds: Optional[int] = None, state=None,
        on_chunk: Optional[Callable] = None, sample: Optional[Callable] = None):
  """Trains for `num_steps` gradient steps (a multiple of steps_per_chunk) and returns the state.

  data: device Transition (see cql_jax.agents.device_data). The chunk is compiled once.
  With num_seeds = S, seeds seed, seed+1, ..., seed+S-1 train together (vmapped) and the
  returned state is stacked [S, ...]. sample: as in compile_chunk.
  state: where to start (default: agent.init from the seeds); it is copied, so the caller's
  arrays stay valid although the chunk donates its input.
  on_chunk(step, state, metrics) is called on the host after each chunk with `step` the number
  of updates done so far, `state` a copy the callback may keep (the next chunk deletes the one
  it trains on), and `metrics` the per-chunk means from `summarize`.
  """
  if num_steps % steps_per_chunk:
    raise ValueError(f"num_steps={num_steps} must be a multiple of steps_per_chunk="
                     f"{steps_per_chunk}")
  init_keys, loop_keys = seed_keys(range(seed, seed + (num_seeds or 1)))
  if num_seeds is None:
    init_keys, loop_keys = init_keys[0], loop_keys[0]
    keys_for = chunk_key
  else:
    keys_for = chunk_keys
  # A fresh state, or a copy of the caller's: the donated chunk deletes what it is given.
  state = (init_states(agent, init_keys, num_seeds) if state is None
           else jax.tree.map(jnp.copy, state))
  chunk = compile_chunk(agent, batch_size, steps_per_chunk, num_seeds, sample)
  for i in range(num_steps // steps_per_chunk):
    state, metrics = chunk(state, data, keys_for(loop_keys, i))
    if on_chunk is not None:
      on_chunk((i + 1) * steps_per_chunk, jax.tree.map(jnp.copy, state), summarize(metrics))
  return state
