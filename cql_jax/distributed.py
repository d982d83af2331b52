"""Several processes, one run: start-up, agreement, ownership and failure across processes.

A multi-process run (TPU pod hosts, GPU nodes, or N local processes rehearsing one with
`experiments.launch`) runs the same program in every process. JAX's coordinator (process 0)
introduces the processes, watches their heartbeats and carries a few small host values (the
digests, scores and messages below); arrays travel through XLA's collectives (gloo on CPU).
Each process loads the dataset itself.

What this module adds to JAX's own multi-controller model:
  * `initialize()`: `jax.distributed.initialize` from the environment, with CPU collectives
    switched on where the platform is the CPU, and a heartbeat short enough that a dead process
    stops the others within a bounded time (`HEARTBEAT_SECONDS`).
  * `together(what)`: a block that fails on every process when it fails on any, with the
    failing process's own message, so that an error one process sees at start-up (a workdir
    held by another run, a missing dataset, a mismatched config) stops the group instead of
    leaving the others waiting in a collective.
  * `check_agreement(values)`: refuses a start where processes disagree on the config, seeds,
    sweep or data (compared through digests; the data never travel).
  * `member_owners` / `evaluate_owned`: each member is evaluated exactly once, by the lowest
    process that holds its parameters; the scores are gathered onto every process.
With one process every function here is a no-op or the plain single-process computation.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import numpy as np

ENV_COORDINATOR = "CQL_JAX_COORDINATOR"
ENV_NUM_PROCESSES = "CQL_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "CQL_JAX_PROCESS_ID"
ENV_AUTO = "CQL_JAX_DISTRIBUTED"
ENV_HEARTBEAT = "CQL_JAX_HEARTBEAT_SECONDS"
# How long the coordinator waits for a silent process before it stops every process. JAX's
# default (100 s) is for pods whose hosts may stall; a dead local process should stop the group
# well within a minute. Heartbeats come from a thread of their own, so a long compile does not
# miss them.
HEARTBEAT_SECONDS = 30


class ProcessGroupError(ValueError):
  """Processes of one run disagree, or another one failed at start-up; the message says which.

  A ValueError: like a bad flag, the launch is what must change (cql_jax.cli prints it as one
  message)."""


def _platform_is_cpu() -> bool:
  """Whether JAX will run on the CPU: JAX_PLATFORMS says so, or no accelerator plugin exists.

  Decided without touching a device (which must wait for `jax.distributed.initialize`).
  """
  platforms = (jax.config.jax_platforms or os.environ.get("JAX_PLATFORMS") or "").strip()
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  accelerators = ("libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm7_plugin")
  return not any(importlib.util.find_spec(name) for name in accelerators)


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None,
               heartbeat_seconds: Optional[int] = None) -> bool:
  """Calls `jax.distributed.initialize` when this is a multi-process run; returns whether it did.

  Multi-process is signalled by arguments or by the environment:
    CQL_JAX_COORDINATOR (host:port of process 0's coordinator), CQL_JAX_NUM_PROCESSES,
    CQL_JAX_PROCESS_ID; or CQL_JAX_DISTRIBUTED=1 alone, which lets JAX detect the cluster
    (Cloud TPU pods, SLURM, Open MPI, Kubernetes) and fill in all three itself.
    CQL_JAX_HEARTBEAT_SECONDS overrides HEARTBEAT_SECONDS.
  On the CPU, collectives between processes need an implementation: gloo is switched on (XLA's
  CPU client has none by default). Must run before anything touches a device.
  """
  env = os.environ
  coordinator_address = coordinator_address or env.get(ENV_COORDINATOR)
  if num_processes is None and env.get(ENV_NUM_PROCESSES):
    num_processes = int(env[ENV_NUM_PROCESSES])
  if process_id is None and env.get(ENV_PROCESS_ID):
    process_id = int(env[ENV_PROCESS_ID])
  auto = env.get(ENV_AUTO, "0") not in ("", "0", "false", "False")
  if coordinator_address is None and not auto:
    return False
  if heartbeat_seconds is None:
    heartbeat_seconds = int(env.get(ENV_HEARTBEAT, HEARTBEAT_SECONDS))
  if _platform_is_cpu():
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             heartbeat_timeout_seconds=heartbeat_seconds)
  threading.excepthook = quiet_lost_process_in_threads(threading.excepthook)
  return True


def quiet_lost_process_in_threads(default_hook):
  """A threading.excepthook: a lost process in a background thread is one log line, not a trace.

  When a peer dies during a checkpoint save, orbax's save thread meets the broken collective
  too and Python would print its traceback beside the one clear message of the main thread
  (cli: "lost contact with another process"); anything else goes to `default_hook`.
  """
  def hook(args):
    if args.exc_value is not None and is_lost_process(args.exc_value):
      name = args.thread.name if args.thread is not None else "?"
      logging.getLogger(__name__).info("thread %s stopped: %s", name, args.exc_value)
      return
    default_hook(args)
  return hook


def is_primary() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return jax.process_index() == 0


# ---------------------------------------------------------------------------
# Small host values shared between processes (through a collective, not the coordinator).
# ---------------------------------------------------------------------------


# How long a process waits for the others at a meeting point of the host (allgather_json): a
# loaded machine may start one process minutes after another; a dead one is caught by the
# heartbeat long before this.
MEET_TIMEOUT_SECONDS = 30 * 60
_rounds = [0]


def allgather_json(value: Any) -> List[Any]:
  """[value of process 0, value of process 1, ...]: a small JSON-able value from every process.

  Every process must call it, in the same order. The values go through the coordinator's
  key-value store (JAX's distributed client, as orbax's barriers do), not through XLA's
  collectives: gloo gives a peer 30 s to join a new collective, too little for processes that a
  loaded machine starts, loads data or compiles far apart.
  """
  if jax.process_count() == 1:
    return [value]
  from jax._src import distributed as jax_distributed  # the client orbax uses too.
  client = jax_distributed.global_state.client
  _rounds[0] += 1
  prefix = f"cql_jax/allgather/{_rounds[0]}/"
  client.key_value_set(prefix + str(jax.process_index()), json.dumps(value, sort_keys=True))
  return [json.loads(client.blocking_key_value_get(prefix + str(i), MEET_TIMEOUT_SECONDS * 1000))
          for i in range(jax.process_count())]


def meet(name: str, timeout_seconds: int = MEET_TIMEOUT_SECONDS) -> None:
  """Waits until every process has reached the point called `name` (a coordinator barrier).

  Called before the first collectives of a phase: gloo gives a process 30 s to join a new
  group of devices, and processes that compiled or loaded at different speeds (one reads a
  program from the cache, another compiles it) can arrive further apart than that.
  """
  if jax.process_count() == 1:
    return
  from jax._src import distributed as jax_distributed  # the client orbax uses too.
  _rounds[0] += 1
  jax_distributed.global_state.client.wait_at_barrier(f"cql_jax/meet/{name}/{_rounds[0]}",
                                                      int(timeout_seconds * 1000))


def compile_then_meet(name: str, jitted, *args):
  """`jitted` compiled here for `args`, returned once every process has compiled its own copy.

  In a multi-process run the first call of a program is also the first meeting of the
  processes in its collectives; one that reads the program from a cache while another compiles
  it would wait there longer than gloo allows. With one process, `jitted` itself.
  """
  if jax.process_count() == 1:
    return jitted
  compiled = jitted.lower(*args).compile()
  meet(name)
  return compiled


@contextlib.contextmanager
def together(what: str):
  """Runs the block on every process; if it raises on any, it raises on all.

  The process that failed re-raises its own exception; the others raise ProcessGroupError
  quoting the lowest failing process's message. The block must contain no collective (it is
  the code *before* the processes next meet). With one process, a plain block.
  """
  if jax.process_count() == 1:
    yield
    return
  error = None
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    error = e
  reports = allgather_json(None if error is None else f"{type(error).__name__}: {error}")
  if error is not None:
    raise error
  failed = [(i, r) for i, r in enumerate(reports) if r is not None]
  if failed:
    index, message = failed[0]
    raise ProcessGroupError(f"process {index} of {len(reports)} failed during {what}, so this "
                            f"process stops too. Its error: {message}")


def fingerprint(tree) -> str:
  """A digest of a pytree of arrays (the dataset as loaded), to compare processes' data."""
  digest = hashlib.blake2b(digest_size=16)
  for leaf in jax.tree.leaves(tree):
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{array.dtype}{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _flatten(value, prefix: str = "") -> Dict[str, str]:
  if isinstance(value, dict):
    out = {}
    for k, v in value.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix.rstrip("."): json.dumps(value, sort_keys=True)}


def check_agreement(values: Dict[str, Any]) -> None:
  """Raises ProcessGroupError on every process when processes disagree on `values`.

  values: name -> a JSON-able value (config, seeds, sweep), or a function returning one (e.g. a
  `fingerprint` of the data, computed only when there are several processes). Each leaf
  travels as a short digest; the message names the differing leaves and processes. Collective.
  """
  if jax.process_count() == 1:
    return
  values = {k: v() if callable(v) else v for k, v in values.items()}
  mine = {k: hashlib.blake2b(v.encode(), digest_size=8).hexdigest()
          for k, v in _flatten(values).items()}
  everyone = allgather_json(mine)
  differences = []
  for index, theirs in enumerate(everyone[1:], start=1):
    keys = sorted(k for k in set(everyone[0]) | set(theirs) if everyone[0].get(k) != theirs.get(k))
    if keys:
      shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
      differences.append(f"process {index} differs from process 0 in {shown}")
  if differences:
    raise ProcessGroupError(
        "the processes of this run were not started alike: " + "; ".join(differences) + ". "
        "Every process must run the same command (config, overrides, seeds, sweep) on the same "
        "dataset files; launch them with one command (python -m experiments.launch locally, or "
        "the same --command on every host).")


# ---------------------------------------------------------------------------
# Members: which process evaluates which.
# ---------------------------------------------------------------------------


def member_owners(states, num_members: int) -> List[int]:
  """[M] process index that evaluates each member: the lowest process holding its parameters.

  states: [M, ...] leaves sharded over the member axis (replicated over the data axis), as the
  training loop holds them.
  """
  leaf = jax.tree.leaves(states)[0]
  owners = [None] * num_members
  for device, index in leaf.sharding.devices_indices_map(leaf.shape).items():
    for m in range(num_members)[index[0] if index else slice(None)]:
      if owners[m] is None or device.process_index < owners[m]:
        owners[m] = device.process_index
  return owners


def local_members(states, members: Sequence[int]):
  """NumPy [len(members), ...] copies of `members`, read from this process's own shards."""
  def one(leaf):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(one(jax.random.key_data(leaf)),
                                      impl=jax.random.key_impl(leaf))
    rows = {}
    for shard in leaf.addressable_shards:
      start = shard.index[0].start or 0 if shard.index else 0
      data = np.asarray(shard.data)
      for offset in range(data.shape[0]):
        rows.setdefault(start + offset, data[offset])
    return np.stack([rows[m] for m in members])
  return jax.tree.map(one, states)


def evaluate_owned(states, num_members: int,
                   evaluate: Callable[[Any, int], Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
  """{name: [M]} scores of every member, each evaluated once, by its owner (`member_owners`).

  evaluate(states [n, ...] host copies, n) -> {name: [n]} evaluates n members on this process.
  A process owning no member evaluates nothing. Collective.
  """
  if jax.process_count() == 1:
    return evaluate(states, num_members)
  owners = member_owners(states, num_members)
  mine = [m for m in range(num_members) if owners[m] == jax.process_index()]
  scores = {}
  if mine:
    scores = {k: np.asarray(v, np.float64).tolist()
              for k, v in evaluate(local_members(states, mine), len(mine)).items()}
  gathered = allgather_json({"members": mine, "scores": scores})
  names = next(g["scores"].keys() for g in gathered if g["members"])
  out = {name: np.zeros(num_members, np.float64) for name in names}
  for g in gathered:
    for name in names if g["members"] else ():
      out[name][g["members"]] = g["scores"][name]
  return out


# ---------------------------------------------------------------------------
# A lost process.
# ---------------------------------------------------------------------------


def lost_process_message(error: BaseException, relaunch: Optional[str] = None) -> str:
  """The one message a process prints when a collective failed because another process died."""
  first = (str(error).strip().splitlines() or [type(error).__name__])[0]
  text = (f"process {jax.process_index()} of {jax.process_count()} lost contact with another "
          f"process of this run ({first[:300]}), most likely because that process died or was "
          "killed; every process of the run stops. Checkpoints already saved are complete.")
  if relaunch:
    text += f" To continue from the latest one, relaunch every process:\n  {relaunch}"
  return text


def is_multi_process() -> bool:
  return jax.process_count() > 1


# What a failed collective or coordination call says when a peer is gone (gloo's socket errors,
# the coordination service's heartbeat and barrier errors, as orbax re-raises them).
_LOST_SIGNS = ("Gloo", "Connection reset", "Connection closed", "heartbeat", "UNAVAILABLE",
               "DEADLINE_EXCEEDED", "Barrier", "barrier")


def is_lost_process(error: BaseException) -> bool:
  """Whether `error` is a failed collective of a multi-process run (a peer gone, not a bug here)."""
  if not is_multi_process():
    return False
  return isinstance(error, jax.errors.JaxRuntimeError) or any(s in str(error) for s in _LOST_SIGNS)


def exit_now(message: str, wait_for_others: bool = False) -> None:
  """Prints `message` and ends this process with status 1.

  os._exit skips JAX's shutdown barrier, which would wait for a dead process until the
  heartbeat timeout and then abort with the coordination service's log. wait_for_others (an
  error every process raised, e.g. at start-up): first wait up to a minute for the others to
  reach this point, then shut the distributed client down together, so process 0, which hosts
  the coordinator, does not leave while the others still read from it.
  """
  import sys
  print(message, file=sys.stderr, flush=True)
  sys.stdout.flush()
  if wait_for_others:
    try:
      meet("exit", timeout_seconds=60)
      # Every process is here and alive, so the shutdown barrier cannot hang; without it
      # process 0 could take the coordinator down while another still polls it, and that
      # process's client aborts (status -6) instead of exiting with 1.
      jax.distributed.shutdown()
    except Exception:  # pylint: disable=broad-except
      pass  # a process that is gone: leave anyway.
  os._exit(1)
