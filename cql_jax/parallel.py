"""Data-parallel training over a device mesh, seeds × devices, and multi-host start-up.

Mesh axes: "seed" (independent runs, vmapped) × "data" (the batch split across devices).
The chunk is the same scan as `cql_jax.train.make_train_chunk`; only shardings are added:
  * parameters and optimiser state are replicated over "data" (sharded over "seed" when seeds
    are vmapped), the dataset is replicated, and each sampled batch [B, ...] is constrained to
    P("data") right after sampling;
  * XLA's SPMD partitioner then runs every per-example op on the local shard and turns the
    batch means in the losses into all-reduces, so gradients are averaged across devices
    without touching the agent's code.
The global batch is sampled from the same key as on one device (threefry random bits are
partitionable), so a D-device run follows the single-device run up to float reduction order.

Multi-host: call `maybe_initialize_distributed()` first thing in every process; then
`jax.devices()` lists every host's devices and `make_mesh` spans them all.
"""
from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cql_jax import train
from cql_jax.data import buffer
from cql_jax.types import Agent

SEED_AXIS, DATA_AXIS = "seed", "data"


def maybe_initialize_distributed(coordinator_address: Optional[str] = None,
                                 num_processes: Optional[int] = None,
                                 process_id: Optional[int] = None) -> bool:
  """Calls `jax.distributed.initialize` when this is a multi-process run; returns whether it did.

  Multi-process is signalled by arguments, or by the environment:
    CQL_JAX_COORDINATOR (host:port of process 0), CQL_JAX_NUM_PROCESSES, CQL_JAX_PROCESS_ID;
    or CQL_JAX_DISTRIBUTED=1 alone, which lets JAX detect the cluster (TPU pods, SLURM,
    Open MPI, Kubernetes JobSet) and fill in all three itself.
  Must run before anything touches a device (including `jax.devices()`).
  """
  env = os.environ
  coordinator_address = coordinator_address or env.get("CQL_JAX_COORDINATOR")
  if num_processes is None and "CQL_JAX_NUM_PROCESSES" in env:
    num_processes = int(env["CQL_JAX_NUM_PROCESSES"])
  if process_id is None and "CQL_JAX_PROCESS_ID" in env:
    process_id = int(env["CQL_JAX_PROCESS_ID"])
  auto = env.get("CQL_JAX_DISTRIBUTED", "0") not in ("", "0", "false", "False")
  if coordinator_address is None and not auto:
    return False
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  return True


def make_mesh(num_seed_shards: int = 1, devices=None) -> Mesh:
  """A ("seed", "data") mesh over all (global) devices; "data" gets devices // num_seed_shards."""
  devices = jax.devices() if devices is None else list(devices)
  if len(devices) % num_seed_shards:
    raise ValueError(f"{len(devices)} devices do not split into {num_seed_shards} seed shards")
  grid = np.asarray(devices, dtype=object).reshape(num_seed_shards, -1)
  return Mesh(grid, (SEED_AXIS, DATA_AXIS))


def _put(tree, sharding):
  """Places host values (identical on every process) as global arrays with `sharding`.

  make_array_from_callback only asks each process for its addressable shards, so it works
  across hosts where a plain device_put of a host array would not.
  """
  def one(x):
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
      impl = jax.random.key_impl(x)
      return jax.random.wrap_key_data(one(jax.random.key_data(x)), impl=impl)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(one, tree)


def replicate(tree, mesh: Mesh):
  """Copies every leaf to every device of the mesh (dataset, single-seed state)."""
  return _put(jax.device_get(tree), NamedSharding(mesh, P()))


def shard_seeds(tree, mesh: Mesh):
  """Splits the leading seed axis [S, ...] of every leaf over the mesh's "seed" axis."""
  return _put(jax.device_get(tree), NamedSharding(mesh, P(SEED_AXIS)))


def compile_data_parallel_chunk(agent: Agent, batch_size: int, num_steps: int, mesh: Mesh,
                                num_seeds: Optional[int] = None):
  """Like `train.compile_chunk`, with every batch split over the mesh's "data" axis.

  batch_size is the global batch; it must divide by the "data" axis size. With num_seeds, the
  state carries a leading [S] axis split over "seed" (S must divide by that axis size) and the
  key is [S] per-seed keys (train.chunk_keys), as in `train.compile_chunk`, so results match
  it. Arguments: state (see `replicate`/`shard_seeds`), data (`replicate`d), key
  (`replicate`d, or `shard_seeds` for per-seed keys).
  """
  data_size = mesh.shape[DATA_AXIS]
  if batch_size % data_size:
    raise ValueError(f"batch_size={batch_size} must divide by the {data_size} data shards")
  if num_seeds is None and mesh.shape[SEED_AXIS] != 1:
    raise ValueError("a mesh with several seed shards needs num_seeds")
  if num_seeds is not None and num_seeds % mesh.shape[SEED_AXIS]:
    raise ValueError(f"num_seeds={num_seeds} must divide by {mesh.shape[SEED_AXIS]} seed shards")
  batch_sharding = NamedSharding(mesh, P(DATA_AXIS))

  def sample(data, key):
    batch = buffer.sample_batch(data, key, batch_size)
    return jax.lax.with_sharding_constraint(batch, batch_sharding)

  chunk = train.make_train_chunk(agent.update, sample, num_steps)
  replicated = NamedSharding(mesh, P())
  if num_seeds is None:
    return jax.jit(chunk, donate_argnums=0, in_shardings=(replicated, replicated, replicated),
                   out_shardings=(replicated, replicated))
  # spmd_axis_name puts the vmapped seed axis of every constrained value on "seed", so the
  # batch becomes [S, B, ...] with P("seed", "data").
  seeded = jax.vmap(chunk, in_axes=(0, None, 0), spmd_axis_name=SEED_AXIS)
  by_seed = NamedSharding(mesh, P(SEED_AXIS))

  return jax.jit(seeded, donate_argnums=0, in_shardings=(by_seed, replicated, by_seed),
                 out_shardings=(by_seed, by_seed))
