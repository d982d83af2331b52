"""Members × devices: independent runs and data parallelism over one Mesh, and multi-host start-up.

A *member* is one independent run: a seed, or a (hyperparameter setting, seed) pair of a sweep.
Mesh axes: "member" (members, vmapped) × "data" (each member's batch split across devices).
The chunk is the same scan as `cql_jax.train.make_train_chunk`; only shardings are added:
  * parameters and optimiser state are replicated over "data" (split over "member" when
    members are vmapped), the dataset is replicated, and each sampled batch [B, ...] is
    constrained to P("data") right after sampling;
  * XLA's SPMD partitioner then runs every per-example op on the local shard and turns the
    batch means in the losses into all-reduces, so gradients are averaged across devices
    without touching the agent's code.
The global batch is sampled from the same key as on one device (threefry random bits are
partitionable), so a D-device run follows the single-device run up to float reduction order.
With a "data" axis of size 1 no value crosses devices: each device runs its own members.

`choose_layout` turns the config's `layout` field into (member shards, data shards).

Multi-host: call `maybe_initialize_distributed()` first thing in every process; then
`jax.devices()` lists every host's devices and `make_mesh` spans them all.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cql_jax import train
from cql_jax.data import buffer
from cql_jax.types import Agent

MEMBER_AXIS, DATA_AXIS = "member", "data"


def maybe_initialize_distributed(coordinator_address: Optional[str] = None,
                                 num_processes: Optional[int] = None,
                                 process_id: Optional[int] = None) -> bool:
  """Calls `jax.distributed.initialize` when this is a multi-process run; returns whether it did.

  See `cql_jax.distributed.initialize` (the environment variables, CPU collectives, heartbeat).
  Must run before anything touches a device (including `jax.devices()`).
  """
  from cql_jax import distributed
  return distributed.initialize(coordinator_address, num_processes, process_id)


class Layout(NamedTuple):
  """member_shards × data_shards devices: members split over the first, each batch over the second."""
  member_shards: int
  data_shards: int

  @property
  def num_devices(self) -> int:
    return self.member_shards * self.data_shards


LAYOUT_HELP = ('"auto" (every device: members split over as many devices as divide their '
               'number, each batch over the rest), "single" (one device, no mesh) or "MxD" '
               '(M member shards × D data shards on the first M·D devices, e.g. "4x2")')


def choose_layout(spec: str, num_members: int, batch_size: int,
                  num_devices: Optional[int] = None) -> Optional[Layout]:
  """The Layout that config.layout = `spec` asks for, or None for "single" (no mesh).

  "auto" on one device is also None, so a one-device run takes exactly the mesh-free path.
  Raises ValueError, naming what to change, when members or the batch do not split.
  """
  num_devices = jax.device_count() if num_devices is None else num_devices
  spec = str(spec).strip().lower()
  if jax.process_count() > 1 and spec != "auto":
    # Every process runs the same program on its own devices: a layout that leaves some
    # process without a device (or keeps the run on one) has no multi-process meaning.
    wanted = 1 if spec == "single" else math.prod(int(p) for p in spec.split("x") if p.isdigit())
    if wanted != num_devices:
      raise ValueError(
          f"config.layout={spec!r} uses {wanted} of the {num_devices} devices of this "
          f"{jax.process_count()}-process run; a multi-process run spans every device. Use "
          "'auto' or an 'MxD' with M·D = the number of devices.")
  if spec == "single":
    return None
  if spec == "auto":
    if num_devices == 1:
      return None
    members = math.gcd(num_members, num_devices)
    layout = Layout(members, num_devices // members)
    if batch_size % layout.data_shards:
      raise ValueError(
          f"layout 'auto' puts {num_members} members on {members} of {num_devices} devices and "
          f"splits each batch over the other {layout.data_shards}, but batch_size={batch_size} "
          f"does not divide by {layout.data_shards}. Set config.layout to 'MxD' explicitly "
          f"(e.g. '{members}x1') or choose a batch size that divides.")
    return layout
  parts = spec.split("x")
  if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
    raise ValueError(f"config.layout={spec!r} is not a layout; use {LAYOUT_HELP}.")
  layout = Layout(int(parts[0]), int(parts[1]))
  if layout.num_devices > num_devices:
    raise ValueError(f"config.layout={spec!r} needs {layout.num_devices} devices; "
                     f"{num_devices} are available.")
  if num_members % layout.member_shards:
    raise ValueError(f"config.layout={spec!r}: {num_members} members do not split over "
                     f"{layout.member_shards} member shards.")
  if batch_size % layout.data_shards:
    raise ValueError(f"config.layout={spec!r}: batch_size={batch_size} does not split over "
                     f"{layout.data_shards} data shards.")
  return layout


def make_mesh(num_member_shards: int = 1, devices=None) -> Mesh:
  """A ("member", "data") mesh over all (global) devices; "data" gets devices // num_member_shards.

  Consecutive devices (those of one host, first) share a member shard, so the all-reduces of
  data parallelism stay as local as the device order allows.
  """
  devices = jax.devices() if devices is None else list(devices)
  if len(devices) % num_member_shards:
    raise ValueError(f"{len(devices)} devices do not split into {num_member_shards} member shards")
  grid = np.asarray(devices, dtype=object).reshape(num_member_shards, -1)
  return Mesh(grid, (MEMBER_AXIS, DATA_AXIS))


def layout_mesh(layout: Layout) -> Mesh:
  """The mesh of `layout` over the first layout.num_devices global devices."""
  return make_mesh(layout.member_shards, jax.devices()[:layout.num_devices])


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
  """Copies every leaf to every device of the mesh (dataset, single-member state)."""
  return _put(jax.device_get(tree), NamedSharding(mesh, P()))


def shard_members(tree, mesh: Mesh):
  """Splits the leading member axis [M, ...] of every leaf over the mesh's "member" axis."""
  return _put(jax.device_get(tree), NamedSharding(mesh, P(MEMBER_AXIS)))


def to_host(tree):
  """NumPy copies of (possibly sharded, possibly multi-host) arrays, whole on every process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def compile_data_parallel_chunk(agent: Agent, batch_size: int, num_steps: int, mesh: Mesh,
                                num_members: Optional[int] = None,
                                sample: Optional[Callable] = None):
  """Like `train.compile_chunk`, with members split over "member" and batches over "data".

  batch_size is the global batch; it must divide by the "data" axis size. With num_members,
  the state carries a leading [M] axis split over "member" (M must divide by that axis size)
  and the key is [M] per-member keys (train.chunk_keys), as in `train.compile_chunk`, so
  results match it. Arguments: state (see `replicate`/`shard_members`), data (`replicate`d),
  key (`replicate`d, or `shard_members` for per-member keys). sample(data, key) -> batch
  defaults to uniform sampling of flat transitions, as in `train.compile_chunk`. Metrics come
  back replicated on every device, so every process can read them.
  """
  data_size = mesh.shape[DATA_AXIS]
  if batch_size % data_size:
    raise ValueError(f"batch_size={batch_size} must divide by the {data_size} data shards")
  if num_members is None and mesh.shape[MEMBER_AXIS] != 1:
    raise ValueError("a mesh with several member shards needs num_members")
  if num_members is not None and num_members % mesh.shape[MEMBER_AXIS]:
    raise ValueError(f"num_members={num_members} must divide by {mesh.shape[MEMBER_AXIS]} "
                     "member shards")
  batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
  if sample is None:
    sample = lambda data, key: buffer.sample_batch(data, key, batch_size)

  def constrained_sample(data, key):
    return jax.lax.with_sharding_constraint(sample(data, key), batch_sharding)

  chunk = train.make_train_chunk(agent.update, constrained_sample, num_steps)
  replicated = NamedSharding(mesh, P())
  if num_members is None:
    return jax.jit(chunk, donate_argnums=0, in_shardings=(replicated, replicated, replicated),
                   out_shardings=(replicated, replicated))
  # spmd_axis_name puts the vmapped member axis of every constrained value on "member", so the
  # batch becomes [M, B, ...] with P("member", "data").
  vmapped = jax.vmap(chunk, in_axes=(0, None, 0), spmd_axis_name=MEMBER_AXIS)
  by_member = NamedSharding(mesh, P(MEMBER_AXIS))
  return jax.jit(vmapped, donate_argnums=0, in_shardings=(by_member, replicated, by_member),
                 out_shardings=(by_member, replicated))
