"""Hyperparameter sweeps: settings × seeds = members, trained in one compiled program.

A *setting* maps dotted config keys to values, e.g. {"agent.cql.weight": 5.0,
"agent.critic_lr": 1e-3}. Settings × seeds are the sweep's *members*, in setting-major order
(setting 0 with every seed, then setting 1, ...). Every member trains in one vmapped program:
each swept value is an array in the member's state (`Agent.init(key, hparams)`), so members
with different values share one compiled update. A member draws its keys from its seed alone
(`train.seed_keys`), so it trains exactly as the same setting and seed would alone.

Only keys in the agent's `sweepable` (CQL weight, τ, γ, target updates, learning rates) can
be swept. Keys that change the program's shapes or which terms are compiled in (network sizes,
number of critics, variant, Lagrange on/off) and the run's own settings (batch size, dataset,
schedule) are refused with the reason: sweep those with one workdir per value (plotted
together by `experiments.plot --sweep`). When any member has a non-zero CQL weight the penalty
is compiled in for all, and a member with weight 0 multiplies it by zero.

Command line (experiments.train):
  --sweep=agent.cql.weight=1,5,10 --sweep=agent.critic_lr=3e-4,1e-3   # grid: 3 × 2 = 6 settings
  --sweep_zip=agent.cql.weight=1,5 --sweep_zip=agent.critic_lr=3e-4,1e-3  # zipped: 2 settings
All --sweep_zip axes (of equal length) form one axis, crossed with the --sweep axes.
Python: `runner.train_and_evaluate(config, workdir, range(4),
                                   grid={"agent.cql.weight": [1, 5, 10]})`.

This module never imports the runner: the runner (one layer up) plans the members here, loads
the data, then builds the program here and trains it (ARCHITECTURE.md).

Everything here is checked before data loads, anything compiles or the workdir is written:
unknown or non-sweepable keys, value types, empty axes, and (once the agent exists)
`check_memory`'s estimate of whether the members fit in device memory.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import itertools
import math
import os
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cql_jax import evaluation
from cql_jax import train
from cql_jax.types import Agent, OfflineDataset

AGENT_PREFIX = "agent."


class SweepError(ValueError):
  """A sweep that cannot run as asked; the message says what to change."""


# ---------------------------------------------------------------------------
# The grid: what the user asked for.
# ---------------------------------------------------------------------------


def _split_values(text: str) -> List[str]:
  """Splits "1,5,(64,64)" on the commas outside brackets."""
  parts, depth, current = [], 0, ""
  for char in text:
    if char in "([{":
      depth += 1
    elif char in ")]}":
      depth -= 1
    if char == "," and depth == 0:
      parts.append(current)
      current = ""
    else:
      current += char
  parts.append(current)
  return [p.strip() for p in parts]


def parse_literal(text: str) -> Any:
  """A flag value as a Python literal ("0.02" -> 0.02, "(64, 64)" -> tuple), else the string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare word such as H: a string, which the type check then judges.


def parse_axis(spec: str) -> Tuple[str, Tuple[Any, ...]]:
  """"agent.cql.weight=1,5,10" -> ("agent.cql.weight", (1, 5, 10)); values are Python literals."""
  key, sep, values = spec.partition("=")
  key = key.strip()
  if not sep or not key:
    raise SweepError(f"--sweep={spec!r} is not KEY=V1,V2,...; e.g. --sweep=agent.cql.weight=1,5,10.")
  raw = _split_values(values)
  if not values.strip() or any(not v for v in raw):
    raise SweepError(f"--sweep={spec!r} has an empty value; give KEY=V1,V2,... with at least one "
                     "value, e.g. --sweep=agent.cql.weight=1,5,10.")
  return key, tuple(parse_literal(v) for v in raw)


@dataclasses.dataclass(frozen=True)
class Grid:
  """Crossed axes and one zipped axis of (key, values); `settings()` expands them.

  axes:   ((key, values), ...): their Cartesian product, first axis outermost.
  zipped: ((key, values), ...) of equal lengths, stepped together as one more (innermost) axis.
  """
  axes: Tuple[Tuple[str, Tuple[Any, ...]], ...] = ()
  zipped: Tuple[Tuple[str, Tuple[Any, ...]], ...] = ()

  @classmethod
  def from_flags(cls, sweep: Sequence[str] = (), sweep_zip: Sequence[str] = ()) -> Optional["Grid"]:
    """The grid of --sweep / --sweep_zip flag values, or None when neither is given."""
    if not sweep and not sweep_zip:
      return None
    return cls(tuple(parse_axis(s) for s in sweep), tuple(parse_axis(s) for s in sweep_zip))

  @classmethod
  def from_dict(cls, grid: Optional[Mapping[str, Sequence]] = None,
                zipped: Optional[Mapping[str, Sequence]] = None) -> "Grid":
    as_axes = lambda d: tuple((str(k), tuple(v)) for k, v in (d or {}).items())
    return cls(as_axes(grid), as_axes(zipped))

  @property
  def keys(self) -> Tuple[str, ...]:
    return tuple(k for k, _ in self.axes + self.zipped)

  def settings(self) -> List[Dict[str, Any]]:
    """Every setting, as {key: raw value}; checks the grid's own shape (not the config)."""
    if not self.axes and not self.zipped:
      raise SweepError("the sweep has no axes: give at least one --sweep=KEY=V1,V2,...")
    for key, values in self.axes + self.zipped:
      if not values:
        raise SweepError(f"sweep axis '{key}' has no values; give at least one.")
      if len(set(map(repr, values))) != len(values):
        raise SweepError(f"sweep axis '{key}' repeats a value: {list(values)}; members with one "
                         "setting would be trained twice.")
    repeated = sorted({k for k in self.keys if self.keys.count(k) > 1})
    if repeated:
      raise SweepError(f"sweep key(s) {repeated} given more than once; give each key one axis.")
    lengths = {k: len(v) for k, v in self.zipped}
    if len(set(lengths.values())) > 1:
      raise SweepError(f"--sweep_zip axes must have equal lengths to be zipped; got {lengths}.")
    axes = [[((k, v),) for v in values] for k, values in self.axes]
    if self.zipped:
      axes.append(list(zip(*[[(k, v) for v in values] for k, values in self.zipped])))
    return [dict(p for part in combo for p in part) for combo in itertools.product(*axes)]

  def to_json(self) -> dict:
    plain = lambda axes: {k: list(v) for k, v in axes}
    return {"grid": plain(self.axes), "zip": plain(self.zipped)}


# ---------------------------------------------------------------------------
# The plan: settings checked against the config, members, their hyperparameter arrays.
# ---------------------------------------------------------------------------


def sweepable_keys(agent_config: ml_collections.ConfigDict) -> Tuple[str, ...]:
  """The agent-relative keys (e.g. "cql.weight") that the agent `agent_config` builds can sweep.

  `sweepable` depends on the config alone, so the agent is built for a stand-in observation
  and action space (building traces nothing).
  """
  from cql_jax import agents
  if agents.is_discrete_config(agent_config):
    from cql_jax.discrete import agent as discrete_agent
    return tuple(discrete_agent.make_discrete_agent(agent_config, (1,), 2).sweepable)
  from cql_jax.continuous import agent as continuous_agent
  return tuple(continuous_agent.make_cql_agent(agent_config, 1, [-1.0], [1.0]).sweepable)


def _family_keys(agent_config: ml_collections.ConfigDict) -> Tuple[str, ...]:
  """Keys some mode of this agent family sweeps (penalty and Lagrangian on, all parts trained)."""
  from cql_jax import agents
  if agents.is_discrete_config(agent_config):
    return sweepable_keys(agent_config)
  from cql_jax.configs import base
  full = base.override(ml_collections.ConfigDict({"agent": agent_config}), {
      "agent.cql.lagrange": True, "agent.algorithm": "cql", "agent.policy_evaluation": False,
      "agent.evaluated_action": "sample",
      "agent.auto_entropy": True})
  return sweepable_keys(full.agent)


def _lookup(config: ml_collections.ConfigDict, dotted: str):
  """(found, value) of a dotted key."""
  node = config
  for part in dotted.split("."):
    if not isinstance(node, (ml_collections.ConfigDict, Mapping)) or part not in node:
      return False, None
    node = node[part]
  return True, node


_STRUCTURE = {
    "hidden_sizes": "sets the networks' shapes",
    "num_critics": "sets the critic ensemble's shape",
    "num_quantiles": "sets the network's output shape",
    "num_heads": "sets the network's output shape",
    "num_samples": "sets how many actions the penalty samples (a shape)",
    "variant": "chooses which soft-maximum is compiled in",
    "lagrange": "chooses whether the dual step on α′ is compiled in",
    "loss": "chooses which TD loss is compiled in",
    "torso": "chooses the network",
    "algorithm": "chooses which updates are compiled in",
}


def _structural_reason(key: str) -> str:
  for fragment, reason in _STRUCTURE.items():
    if fragment in key.split(".")[-1]:
      return reason
  return "is static structure of the compiled update (a shape or a branch), not a state array"


def _typed(config, key: str, value: Any):
  """`value` cast to the type of config[key] (ints into float fields), or a SweepError."""
  found, current = _lookup(config, key)
  assert found
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise SweepError(f"sweep value {value!r} for {key} is not a finite number; {key} is "
                     f"{type(current).__name__} (currently {current!r}).")
  if isinstance(current, float):
    return float(value)
  if isinstance(current, int) and not isinstance(current, bool):
    if float(value) != int(value):
      raise SweepError(f"sweep value {value!r} for {key} is not an integer; {key} is int "
                       f"(currently {current!r}).")
    return int(value)
  raise SweepError(f"{key} is {type(current).__name__} ({current!r}), not a number, so it "
                   "cannot be swept.")


def _check_names(config: ml_collections.ConfigDict, keys: Sequence[str]) -> None:
  """Refuses a key the config lacks or one outside the agent (run settings every member shares)."""
  listing = ", ".join(AGENT_PREFIX + k for k in _family_keys(config.agent))
  for key in keys:
    found, _ = _lookup(config, key)
    if not found:
      close = difflib.get_close_matches(key, [AGENT_PREFIX + k for k in _family_keys(config.agent)],
                                        n=1)
      hint = f" Did you mean '{close[0]}'?" if close else ""
      raise SweepError(f"unknown sweep key '{key}': the config has no such field.{hint} "
                       f"Sweepable keys of this agent: {listing}.")
    if not key.startswith(AGENT_PREFIX):
      raise SweepError(
          f"'{key}' is a setting of the run that every member shares (data, batch or "
          f"schedule), so it cannot vary inside one program. Sweep it with one workdir per "
          f"value (--config.{key}=...) and plot them together with experiments.plot --sweep. "
          f"Sweepable keys: {listing}.")


def _check_sweepable(program_config: ml_collections.ConfigDict, keys: Sequence[str]) -> None:
  """Refuses an agent key that the compiled program cannot take from the state."""
  sweepable = sweepable_keys(program_config.agent)
  listing = ", ".join(AGENT_PREFIX + k for k in sweepable)
  family = _family_keys(program_config.agent)
  for key in keys:
    relative = key[len(AGENT_PREFIX):]
    if relative in sweepable or (relative == "cql.weight" and program_config.agent.cql.weight == 0):
      continue  # (weights all 0: the same for every member, and compiled out as alone.)
    if relative in family:
      raise SweepError(
          f"'{key}' is not read by the update this config compiles (it matters only in another "
          f"mode, e.g. cql.target_gap with cql.lagrange=True, alpha_lr with auto_entropy), so "
          f"sweeping it would change nothing. Sweepable here: {listing}.")
    raise SweepError(
        f"'{key}' cannot be swept in one program: it {_structural_reason(key)}, so members "
        f"with different values need different compiled programs. Run one sweep per value "
        f"(--config.{key}=... with its own --workdir) and plot them together with "
        f"experiments.plot --sweep. Sweepable keys: {listing}.")


@dataclasses.dataclass(frozen=True)
class Member:
  """One independent run of a sweep: a setting (dotted config keys -> values) and a seed."""
  setting: Mapping[str, Any]
  seed: int

  @property
  def name(self) -> str:
    """Run name for TensorBoard and metrics rows: "cql.weight=5,critic_lr=0.001,seed_0"."""
    parts = [f"{k[len(AGENT_PREFIX):] if k.startswith(AGENT_PREFIX) else k}={v:g}"
             for k, v in self.setting.items()]
    return ",".join(parts + [f"seed_{self.seed}"])

  @property
  def label(self) -> str:
    """For messages: "seed 0" or "cql.weight=5, seed 0"."""
    return ", ".join([n for n in self.name.split(",")[:-1]] + [f"seed {self.seed}"])


@dataclasses.dataclass(frozen=True)
class Plan:
  """A checked sweep (or, with grid None, plain seeds): what the runner trains.

  settings: typed settings (one empty setting when there is no sweep); seeds: the seeds each
  setting runs with; members: settings × seeds, setting-major.
  """
  grid: Optional[Grid]
  settings: Tuple[Mapping[str, Any], ...]
  seeds: Tuple[int, ...]

  @property
  def members(self) -> Tuple[Member, ...]:
    return tuple(Member(s, seed) for s in self.settings for seed in self.seeds)

  @property
  def num_members(self) -> int:
    return len(self.settings) * len(self.seeds)

  @property
  def keys(self) -> Tuple[str, ...]:
    return () if self.grid is None else self.grid.keys

  def hparams(self) -> Optional[Dict[str, np.ndarray]]:
    """{agent-relative key: [M] values} for `vmap(agent.init)`, or None without a sweep."""
    out = {}
    for key in self.keys:
      if key == AGENT_PREFIX + "cql.weight" and not self._penalty_needed():
        continue  # every weight is 0: the penalty is compiled out and nothing reads it.
      values = [m.setting[key] for m in self.members]
      dtype = np.int32 if all(isinstance(v, int) for v in values) else np.float32
      out[key[len(AGENT_PREFIX):]] = np.asarray(values, dtype)
    return out or None

  def _penalty_needed(self) -> bool:
    return any(s[AGENT_PREFIX + "cql.weight"] != 0.0 for s in self.settings)

  def program_config(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config the shared agent is built from: the penalty is compiled in iff a member needs it.

    The config's own CQL weight decides only that (the members' values arrive through init);
    with every member at weight 0 it is compiled out, with any above 0 it is compiled in.
    """
    key = AGENT_PREFIX + "cql.weight"
    if key not in self.keys:
      return config
    from cql_jax.configs import base
    weights = [s[key] for s in self.settings]
    nonzero = [w for w in weights if w != 0.0]
    return base.override(config, {key: nonzero[0] if nonzero else 0.0})

  def to_json(self) -> Optional[dict]:
    """What config.json records of the sweep (None without one), compared on resume."""
    if self.grid is None:
      return None
    return {**self.grid.to_json(), "settings": [dict(s) for s in self.settings]}


def plan(config: ml_collections.ConfigDict, grid: Optional[Grid | Mapping[str, Sequence]],
         seeds: Sequence[int]) -> Plan:
  """Checks `grid` against `config` (keys, types, shape) and returns the members to train.

  grid: a Grid, or {dotted key: values} for a plain product; None: members are the seeds,
  exactly as an unswept run. Raises SweepError.
  """
  seeds = tuple(int(s) for s in seeds)
  if grid is None:
    return Plan(None, ({},), seeds)
  if isinstance(grid, Mapping):
    grid = Grid.from_dict(grid)
  raw = grid.settings()
  _check_names(config, grid.keys)
  # The CQL weights decide what is compiled in (program_config), hence what else is sweepable;
  # they are typed first, the other values once their keys are known to be sweepable.
  weight = AGENT_PREFIX + "cql.weight"
  weights = Plan(grid, tuple({k: _typed(config, k, v) for k, v in s.items() if k == weight}
                             for s in raw), seeds)
  _check_sweepable(weights.program_config(config), grid.keys)
  return Plan(grid, tuple({k: _typed(config, k, v) for k, v in s.items()} for s in raw), seeds)


def resume_difference(saved: Optional[dict], new: Optional[dict]) -> Optional[str]:
  """Why a workdir's recorded sweep (config.json's "sweep") differs from this one, or None."""
  if saved == new:
    return None
  if saved is None or new is None:
    which = "is not a sweep" if saved is None else "was a sweep"
    return f"the run in the workdir {which}; this launch {'is' if saved is None else 'is not'}"
  parts = []
  for part in ("grid", "zip"):
    a, b = saved.get(part, {}), new.get(part, {})
    for key in sorted(set(a) | set(b)):
      if a.get(key) != b.get(key):
        flag = "--sweep" if part == "grid" else "--sweep_zip"
        parts.append(f"{flag} {key}: {a.get(key)} -> {b.get(key)}")
  return "; ".join(parts) or "the settings differ"


def init_members(agent: Agent, plan_: Plan):
  """(states stacked [M], loop_keys [M]): each member initialised from its seed and values."""
  init_keys, loop_keys = train.seed_keys([m.seed for m in plan_.members])
  hparams = plan_.hparams()
  init = jax.jit(jax.vmap(agent.init))
  state = init(init_keys) if hparams is None else init(init_keys, hparams)
  return state, loop_keys


# ---------------------------------------------------------------------------
# Will it fit? An estimate made from shapes alone, before anything compiles.
# ---------------------------------------------------------------------------


def _nbytes(aval) -> int:
  dtype = aval.dtype
  if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    return int(np.prod(aval.shape, dtype=np.int64)) * 8  # threefry: two uint32 words.
  return int(np.prod(aval.shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _sub_jaxprs(eqn):
  for param in eqn.params.values():
    for p in (param if isinstance(param, (tuple, list)) else (param,)):
      inner = getattr(p, "jaxpr", p)
      if hasattr(inner, "eqns"):
        yield inner


def _peak_bytes(jaxpr) -> int:
  """Most bytes alive at once, inputs excluded, while jaxpr's equations run in their order.

  A value lives from the equation that makes it to its last use; a sub-jaxpr (a jit or scan
  body) adds its own peak while its equation runs. XLA fuses and reorders, which usually needs
  less, so this errs on the safe side (it is not a bound on every schedule).
  """
  skip = lambda v: type(v).__name__ in ("Literal", "DropVar")
  last = {}
  for i, eqn in enumerate(jaxpr.eqns):
    for v in eqn.invars:
      if not skip(v):
        last[v] = i
  for v in jaxpr.outvars:
    if not skip(v):
      last[v] = len(jaxpr.eqns)
  alive, live, peak = {}, 0, 0
  for i, eqn in enumerate(jaxpr.eqns):
    inner = max((_peak_bytes(sub) for sub in _sub_jaxprs(eqn)), default=0)
    outs = [v for v in eqn.outvars if not skip(v)]
    made = sum(_nbytes(v.aval) for v in outs)
    peak = max(peak, live + inner + made)
    for v in outs:
      alive[v] = _nbytes(v.aval)
      live += alive[v]
    for v in list(eqn.invars) + outs:
      if not skip(v) and v in alive and last.get(v, i) <= i:
        live -= alive.pop(v)
  return peak


class MemoryEstimate(NamedTuple):
  """Bytes on one device. dataset: the copy every device holds; the rest per member:
  state (held twice: a chunk's input and output), activations (the peak of one update's
  intermediates alive at once, see _peak_bytes) and a chunk's stacked metrics."""
  dataset: int
  state: int
  activations: int
  metrics: int


# Headroom on the activation estimate: it matched XLA's own temp-buffer size to within 10% on
# the CPU (tests/test_sweep.py), and allocators fragment.
ACTIVATION_MARGIN = 1.25


def estimate_memory(agent: Agent, data, batch_size: int, steps_per_chunk: int,
                    sample: Optional[Callable] = None, hparams: Optional[Mapping] = None
                    ) -> MemoryEstimate:
  """Shapes-only estimate (jax.eval_shape / make_jaxpr; nothing compiles or runs)."""
  from cql_jax.data import buffer
  if sample is None:
    sample = functools.partial(buffer.sample_batch, batch_size=batch_size)
  key = jax.eval_shape(lambda: jax.random.key(0))
  one = None if hparams is None else {k: np.asarray(v)[0] for k, v in hparams.items()}
  state = jax.eval_shape(agent.init if one is None else functools.partial(agent.init, hparams=one),
                         key)
  def step(s, d, k):
    batch_key, update_key = jax.random.split(k)
    return agent.update(s, sample(d, batch_key), update_key)
  closed = jax.make_jaxpr(step)(state, data, key)
  metrics = jax.eval_shape(step, state, data, key)[1]
  tree_bytes = lambda t: sum(_nbytes(x) for x in jax.tree.leaves(t))
  return MemoryEstimate(dataset=tree_bytes(data), state=tree_bytes(state),
                        activations=_peak_bytes(closed.jaxpr),
                        metrics=tree_bytes(metrics) * steps_per_chunk)


def device_memory_bytes() -> int:
  """Usable bytes of one device: the allocator's limit on GPU/TPU; on CPU, RAM / devices."""
  stats = jax.local_devices()[0].memory_stats()
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return int(ram // jax.local_device_count())


def check_memory(estimate: MemoryEstimate, num_members: int, member_shards: int = 1,
                 data_shards: int = 1, limit_bytes: Optional[int] = None) -> None:
  """Raises SweepError, saying how many members would fit, when the estimate exceeds a device.

  Members are split over `member_shards` devices; `data_shards` split each member's batch
  (and so its activations) further.
  """
  limit = device_memory_bytes() if limit_bytes is None else int(limit_bytes)
  activations = ACTIVATION_MARGIN * estimate.activations / data_shards
  per_member = 2 * estimate.state + activations + estimate.metrics
  per_device = math.ceil(num_members / member_shards)
  need = estimate.dataset + per_device * per_member
  if need <= limit:
    return
  room = max(limit - estimate.dataset, 0)
  fit = int(room // per_member) * member_shards
  mb = lambda b: f"{b / 2**20:,.1f} MB"
  raise SweepError(
      f"{num_members} members do not fit in device memory: by an estimate from shapes a device "
      f"needs {mb(need)} ({per_device} members × {mb(per_member)}: state {mb(estimate.state)} "
      f"twice, one update's peak intermediates with {ACTIVATION_MARGIN:g}× headroom {mb(activations)}, a chunk's "
      f"metrics {mb(estimate.metrics)}; plus the dataset's {mb(estimate.dataset)}) and has "
      f"{mb(limit)}. About {fit} members fit on {member_shards * data_shards} device(s): sweep "
      "fewer settings or seeds (or split the grid over several workdirs), use more devices, or "
      "lower batch_size or steps_per_chunk.")


# ---------------------------------------------------------------------------
# The program: members placed on the devices, one compiled chunk.
# ---------------------------------------------------------------------------


def check_program(config: ml_collections.ConfigDict, plan_: Plan, agent: Agent, data,
                  sample: Optional[Callable] = None, memory_limit_bytes: Optional[int] = None):
  """The device layout for the members (None: one device), once they are known to fit.

  Shapes only: nothing compiles. Raises SweepError (memory) or ValueError (layout).
  """
  from cql_jax import parallel
  layout = parallel.choose_layout(config.get("layout", "auto"), plan_.num_members,
                                  config.batch_size)
  estimate = estimate_memory(agent, data, config.batch_size, config.steps_per_chunk, sample,
                             plan_.hparams())
  check_memory(estimate, plan_.num_members, *(layout or (1, 1)), limit_bytes=memory_limit_bytes)
  return layout


class Program(NamedTuple):
  """What the training loop runs. state: [M] members (sharded over the mesh, if any); data:
  the dataset placed for the chunk; chunk(state, data, keys) -> (state, metrics [M, K]);
  chunk_keys(loop_keys, i) -> the [M] keys of chunk i, placed for the chunk."""
  state: Any
  loop_keys: Any
  data: Any
  chunk: Callable
  chunk_keys: Callable


def build_program(config: ml_collections.ConfigDict, plan_: Plan, agent: Agent, data,
                  sample: Optional[Callable], layout) -> Program:
  """Initialises the members and compiles-on-first-call their chunk, on `layout`'s devices."""
  from cql_jax import parallel
  state, loop_keys = init_members(agent, plan_)
  k, m = config.steps_per_chunk, plan_.num_members
  if layout is None:
    chunk = train.compile_chunk(agent, config.batch_size, k, num_seeds=m, sample=sample)
    return Program(state, loop_keys, data, chunk, jax.jit(train.chunk_keys))
  mesh = parallel.layout_mesh(layout)
  chunk = parallel.compile_data_parallel_chunk(agent, config.batch_size, k, mesh, m, sample)
  keys = lambda loop, i: parallel.shard_members(train.chunk_keys(loop, i), mesh)
  return Program(parallel.shard_members(state, mesh), loop_keys, parallel.replicate(data, mesh),
                 chunk, keys)


# ---------------------------------------------------------------------------
# Evaluation of every member at once.
# ---------------------------------------------------------------------------


def make_member_evaluator(agent: Agent, dataset: OfflineDataset, num_members: int,
                          num_episodes: int, gamma: float, deterministic: bool = True,
                          make_env: Optional[Callable] = None):
  """evaluate(states [M, ...], seed) -> {"eval/return": [M], "eval/length": [M], ...}.

  All M·num_episodes episodes run in one vector env with one vmapped act call per env step,
  so M members cost one rollout of the longest episode, not M. Member k owns env slots
  [k·num_episodes, (k+1)·num_episodes), and every member plays the same episodes (env slot j
  of each member is reset with seed + j): a member scores the same alone as in any sweep, and
  settings are compared on common starting states. make_env(num_envs), when given, builds the
  vector env instead of the dataset's Gymnasium id (e.g. Atari). Adds "eval/normalized_score"
  when the dataset has reference scores, and "eval/success" (percent) where success is the
  measure (evaluation.success_rate_metric: OGBench's single-task environments).
  """
  if dataset.env_id is None and make_env is None:
    raise ValueError(f"{dataset.dataset_id} records no environment to evaluate in.")
  from cql_jax import distributed
  act = jax.jit(jax.vmap(functools.partial(agent.act, deterministic=deterministic),
                         in_axes=(0, 0, None)))
  success = evaluation.success_rate_metric(dataset)

  def run(states, seed: int) -> Dict[str, np.ndarray]:
    # Several processes: each evaluates the members it holds, on its own devices, and the
    # scores are gathered (every member once, distributed.evaluate_owned).
    return distributed.evaluate_owned(states, num_members,
                                      lambda s, n: run_members(s, n, seed))

  def run_members(states, num_members: int, seed: int) -> Dict[str, np.ndarray]:
    total = num_members * num_episodes
    states = jax.tree.map(jnp.asarray, states)

    def policy(obs, key):
      obs = obs.reshape(num_members, num_episodes, *obs.shape[1:])
      action = np.asarray(act(states, obs, key))
      return action.reshape(total, *action.shape[2:])
    result = evaluation.evaluate(
        policy, dataset.env_id, num_episodes=total,
        seed=[seed + j for _ in range(num_members) for j in range(num_episodes)],
        key=jax.random.key(seed), gamma=gamma, env_kwargs=dataset.env_kwargs,
        ref_min=dataset.ref_min_score, ref_max=dataset.ref_max_score, make_env=make_env)
    per_member = lambda x: np.asarray(x, np.float64).reshape(num_members, num_episodes).mean(1)
    out = {"eval/return": per_member(result.returns), "eval/length": per_member(result.lengths)}
    if result.normalized is not None:
      out["eval/normalized_score"] = per_member(result.normalized)
    if success:  # OGBench: percent of episodes ended by reaching the goal.
      out["eval/success"] = 100.0 * per_member(result.terminated)
    return out
  return run


# ---------------------------------------------------------------------------
# Results: a table per setting over seeds.
# ---------------------------------------------------------------------------


def iqm(values: Sequence[float]) -> float:
  """Interquartile mean: the mean of the middle 50% (scipy's trim_mean at 25%, as rliable)."""
  from scipy import stats
  return float(stats.trim_mean(np.asarray(values, np.float64), 0.25))


def headline_metric(scores: Mapping[str, Any]) -> str:
  """The evaluation metric a run is judged by: eval/success, eval/normalized_score or eval/return."""
  return next(m for m in ("eval/success", "eval/normalized_score", "eval/return")
              if m in scores)


def summary(plan_: Plan, final: Mapping[str, Sequence[float]]) -> List[dict]:
  """One row per setting: {"setting", "seeds", "metric", "scores", "mean", "std", "iqm"}.

  final: eval metric -> [M] final values in member order. The metric is the success rate when
  present (OGBench), else the normalized score when present, else the return; std is over seeds
  (ddof 0, as numpy's default).
  """
  metric = headline_metric(final)
  values = np.asarray(final[metric], np.float64).reshape(len(plan_.settings), len(plan_.seeds))
  return [{"setting": dict(setting), "seeds": list(plan_.seeds), "metric": metric,
           "scores": row.tolist(), "mean": float(row.mean()), "std": float(row.std()),
           "iqm": iqm(row)} for setting, row in zip(plan_.settings, values)]


def format_table(rows: Sequence[dict]) -> str:
  """Markdown table of `summary` rows."""
  if not rows:
    return ""
  keys = list(rows[0]["setting"])
  metric = rows[0].get("metric", "score").split("/")[-1]
  cell = lambda v: f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
  head = "| " + " | ".join(keys + [f"{metric} mean ± std", "IQM", "seeds"]) + " |"
  lines = [head, "|" + "---|" * (len(keys) + 3)]
  for r in rows:
    cells = [cell(r["setting"][k]) for k in keys]
    cells += [f"{r['mean']:.1f} ± {r['std']:.1f}", f"{r['iqm']:.1f}", str(len(r["scores"]))]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)

