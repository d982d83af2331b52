"""Processes × devices on one machine: member-steps/s of a sweep, and what data parallelism sends.

  PYTHONPATH=. python -m benchmarks.pods [--grid=1x4,2x2,4x1] [--members=4] [--steps=100]
      [--chunks=3] [--json=out.json]

For each P×D in --grid, `experiments.launch` starts P processes with D simulated CPU devices
each (gloo collectives between processes) and every process builds the runner's program
(cql_jax.sweep, as benchmarks.sweep does, synthetic Hopper-shaped data, batch 256, N = 10):
  * sweep: M members on layout "auto" (members over all P·D devices, no data split);
  * data: one member, its batch split over all P·D devices (layout "1x<P·D>"): every update
    all-reduces the gradients across devices, and across processes when P > 1.
Each is timed over --chunks steady chunks of --steps updates after a first, compiling call.
"all-reduce B/step" is read from the compiled program (XLA's HLO): the bytes all-reduced in one
update (the scan body), i.e. what a pod's interconnect carries per step on the data axis.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

_DTYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "s32": 4, "u32": 4, "s8": 1, "u8": 1,
                "pred": 1, "s64": 8, "u64": 8}


def _shape_bytes(text: str) -> int:
  total = 0
  for dtype, dims in re.findall(r"\b(f32|f16|bf16|f64|s32|u32|s8|u8|pred|s64|u64)\[([\d,]*)\]",
                                text):
    total += _DTYPE_BYTES[dtype] * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
  return total


def allreduce_bytes(hlo: str) -> dict:
  """{"per_step": bytes all-reduced inside while loops, "other": outside}, from HLO text.

  A scanned chunk is one while loop whose body is one update: all-reduces in the body, or in
  computations it calls, run once per step; the others (e.g. the metrics, once per chunk) are
  counted apart. Async pairs count once (at their -start).
  """
  calls, sizes, computation = {}, {}, None
  for line in hlo.splitlines():
    head = re.match(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
    if head and " = " not in line:  # a computation's header (instructions are "x = ...").
      computation = head.group(1)
      calls.setdefault(computation, set())
      sizes.setdefault(computation, 0)
      continue
    if computation is None:
      continue
    for callee in re.findall(
        r"(?:body|calls|to_apply|condition|branch_computations)=\{?%?([\w.\-]+(?:,\s*%?[\w.\-]+)*)",
        line):
      calls[computation].update(c.strip().lstrip("%") for c in callee.split(","))
    match = re.search(r"=\s*(.*?)\s+all-reduce(?:-start)?\(", line)
    if match:
      sizes[computation] += _shape_bytes(match.group(1))
  in_loop, stack = set(), list(set(re.findall(r"body=%?([\w.\-]+)", hlo)))
  while stack:
    name = stack.pop()
    if name not in in_loop:
      in_loop.add(name)
      stack.extend(calls.get(name, ()))
  per_step = sum(sizes[c] for c in in_loop if c in sizes)
  return {"per_step": per_step, "other": sum(sizes.values()) - per_step}


def gradient_bytes(hidden) -> int:
  """Bytes of what one update differentiates (actor, critics, log α): from shapes, no compile."""
  import jax
  from benchmarks import sweep as sweep_bench
  from cql_jax.continuous import agent as cql
  config = sweep_bench.sweep_config(hidden, 1)
  agent = cql.make_cql_agent(config.agent, sweep_bench.OBS_DIM, -np.ones(sweep_bench.ACTION_DIM),
                             np.ones(sweep_bench.ACTION_DIM))
  state = jax.eval_shape(agent.init, jax.random.key(0))
  trained = (state.actor_params, state.critic_params, state.log_alpha, state.log_alpha_prime)
  return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(trained))


def measure(config, grid, data, chunks: int) -> dict:
  """Times the runner's program of `grid` (None: one member) and reads its all-reduces."""
  import jax
  from benchmarks import sweep as sweep_bench
  from cql_jax import sweep
  from cql_jax.continuous import agent as cql
  plan = sweep.plan(config, grid, [0])
  agent = cql.make_cql_agent(plan.program_config(config).agent, sweep_bench.OBS_DIM,
                             -np.ones(sweep_bench.ACTION_DIM), np.ones(sweep_bench.ACTION_DIM))
  layout = sweep.check_program(config, plan, agent, data)
  program = sweep.build_program(config, plan, agent, data, None, layout)
  state = program.state
  t0 = time.perf_counter()
  compiled = program.chunk.lower(state, program.data, program.chunk_keys(program.loop_keys, 0)
                                 ).compile()
  compile_s = time.perf_counter() - t0
  from cql_jax import distributed
  distributed.meet("timing")  # every process compiled: the first collectives start together.
  times = []
  for i in range(chunks + 1):
    keys = program.chunk_keys(program.loop_keys, i)
    jax.block_until_ready(keys)
    t0 = time.perf_counter()
    state, metrics = compiled(state, program.data, keys)
    jax.device_get(metrics)  # replicated: every process holds them, as the runner reads them.
    times.append(time.perf_counter() - t0)
  steady = float(np.median(times[1:]))
  k = config.steps_per_chunk
  return {"members": plan.num_members, "steps": k, "chunk_s": steady,
          "layout": "single" if layout is None else f"{layout.member_shards}x{layout.data_shards}",
          "member_steps_per_s": plan.num_members * k / steady, "compile_s": compile_s,
          "allreduce": allreduce_bytes(compiled.as_text())}


def worker(args) -> None:
  """One process of a launch: initialise, build and time both programs; process 0 writes JSON."""
  from cql_jax import distributed
  distributed.initialize()
  import jax
  from benchmarks import sweep as sweep_bench
  data = sweep_bench.synthetic_data()
  hidden = sweep_bench.SIZES[args.size]
  rows = []
  for kind, members, layout in (("sweep", args.members, "auto"),
                                ("data", 1, f"1x{jax.device_count()}")):
    config = sweep_bench.sweep_config(hidden, args.steps, layout=layout)
    r = measure(config, sweep_bench.member_grid(members), data, args.chunks)
    r.update(kind=kind, processes=jax.process_count(), devices=jax.local_device_count(),
             device_count=jax.device_count())
    rows.append(r)
  if jax.process_index() == 0:
    with open(args.out, "w") as f:
      json.dump(rows, f)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--grid", default="1x4,2x2,4x1", help="processes x devices per process")
  parser.add_argument("--members", type=int, default=4)
  parser.add_argument("--size", default="small", choices=["small", "reference"])
  parser.add_argument("--steps", type=int, default=100, help="updates per timed chunk")
  parser.add_argument("--chunks", type=int, default=3, help="timed chunks after the first")
  parser.add_argument("--json", default=None)
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args)
  print(f"{'P x D':>6} {'kind':>6} {'M':>3} {'layout':>6} {'member-steps/s':>15} "
        f"{'ms/step':>8} {'all-reduce B/step':>18} {'compile s':>9}", flush=True)
  rows = []
  for cell in args.grid.split(","):
    processes, devices = map(int, cell.split("x"))
    out = tempfile.mktemp(suffix=".json")
    command = [sys.executable, "-m", "experiments.launch", f"--processes={processes}",
               f"--devices_per_process={devices}", "--module=benchmarks.pods", "--",
               "--worker", f"--out={out}", f"--members={args.members}", f"--size={args.size}",
               f"--steps={args.steps}", f"--chunks={args.chunks}"]
    t0 = time.time()
    subprocess.run(command, check=True, timeout=1800)
    for r in json.load(open(out)):
      r["wall_s"] = time.time() - t0
      rows.append(r)
      print(f"{cell:>6} {r['kind']:>6} {r['members']:>3} {r['layout']:>6} "
            f"{r['member_steps_per_s']:>15.1f} {1e3 * r['chunk_s'] / r['steps']:>8.2f} "
            f"{r['allreduce']['per_step']:>18,} {r['compile_s']:>9.1f}", flush=True)
    os.remove(out)
  from benchmarks import sweep as sweep_bench
  for name, hidden in sweep_bench.SIZES.items():
    print(f"gradient bytes per update, {name} {hidden}: {gradient_bytes(hidden):,}", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
