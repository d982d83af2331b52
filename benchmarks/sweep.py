"""Member-steps/s of one-program sweeps against training the same members one after another.

  PYTHONPATH=. python -m benchmarks.sweep [--members=1,4,16,64] [--sizes=small,reference]
      [--steps=20] [--chunks=2] [--json=out.json]

A sweep of M members is built the way the runner builds it (cql_jax.sweep: plan, layout and
memory check, init with per-member hyperparameters, the chunk for config.layout): M settings
zipping M CQL weights with M critic learning rates, one seed each. Each M is timed over
--chunks steady calls of a --steps-update chunk after a first call that compiles.

"One after another" is the M = 1 row: training M members in turn runs M such programs, at its
member-steps/s (and, launched separately, pays its compile M times). Columns:
  member-steps/s   M · steps / seconds per chunk
  vs 1-by-1        member-steps/s over the M = 1 row's: what the one program buys
  chunk s          wall seconds of one chunk, of which "sync s" is the host copy of the
                   metrics after the device finished (what the runner pays per chunk)
  compile s        first call minus one steady chunk
Synthetic data with Hopper's shapes (O = 11, A = 3, 100k transitions), batch 256, N = 10.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Optional

import jax
import numpy as np

SIZES = {"small": (64, 64), "reference": (256, 256, 256)}
OBS_DIM, ACTION_DIM = 11, 3


def synthetic_data(size: int = 100_000):
  from cql_jax.data import buffer
  from cql_jax.types import Transition
  rng = np.random.default_rng(0)
  f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
  return buffer.to_device(Transition(
      obs=f(size, OBS_DIM), action=np.tanh(f(size, ACTION_DIM)), reward=f(size),
      discount=np.ones(size, np.float32), next_obs=f(size, OBS_DIM)))


def sweep_config(hidden, steps: int, batch_size: int = 256, layout: str = "auto"):
  """The base config with the reference CQL(H) agent at `hidden` sizes (fixed α, N = 10)."""
  from cql_jax.configs import base
  config = base.get_config()
  config.agent.actor_hidden_sizes = config.agent.critic_hidden_sizes = tuple(hidden)
  config.batch_size, config.steps_per_chunk, config.layout = batch_size, steps, layout
  return config


def member_grid(num_members: int):
  """M settings, one seed each: CQL weights 1..10 zipped with critic lrs 1e-4..1e-3."""
  from cql_jax import sweep
  if num_members == 1:
    return None
  return sweep.Grid(zipped=(
      ("agent.cql.weight", tuple(np.linspace(1.0, 10.0, num_members).tolist())),
      ("agent.critic_lr", tuple(np.geomspace(1e-4, 1e-3, num_members).tolist()))))


def _kernels(compiled) -> Optional[int]:
  """Fusions and library calls in the compiled module: roughly the kernels of one update."""
  try:
    text = compiled.as_text()
  except Exception:  # pylint: disable=broad-except
    return None
  return sum(line.count(" fusion(") + line.count(" custom-call(") for line in text.splitlines())


def _flops(compiled) -> Optional[float]:
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops"))
  except Exception:  # pylint: disable=broad-except
    return None


def measure(hidden, grid, seeds, steps: int, chunks: int, data, batch_size: int = 256,
            layout: str = "auto") -> dict:
  """Times the runner's program for `grid` (None: plain seeds) × `seeds`."""
  from cql_jax import sweep
  from cql_jax.continuous import agent as cql
  config = sweep_config(hidden, steps, batch_size, layout)
  plan = sweep.plan(config, grid, seeds)
  agent_config = plan.program_config(config).agent
  agent = cql.make_cql_agent(agent_config, OBS_DIM, -np.ones(ACTION_DIM), np.ones(ACTION_DIM))
  layout_ = sweep.check_program(config, plan, agent, data)
  program = sweep.build_program(config, plan, agent, data, None, layout_)
  state = program.state
  t0 = time.perf_counter()
  compiled = program.chunk.lower(state, program.data, program.chunk_keys(program.loop_keys, 0)
                                 ).compile()
  compile_s = time.perf_counter() - t0
  times, syncs = [], []
  for i in range(chunks + 1):
    keys = program.chunk_keys(program.loop_keys, i)
    jax.block_until_ready(keys)
    t0 = time.perf_counter()
    state, metrics = compiled(state, program.data, keys)
    jax.block_until_ready((state, metrics))
    t1 = time.perf_counter()
    jax.device_get(metrics)
    t2 = time.perf_counter()
    times.append(t2 - t0)
    syncs.append(t2 - t1)
  steady = float(np.median(times[1:])) if chunks else times[0]
  flops = _flops(compiled)
  members = plan.num_members
  return {
      "members": members, "steps": steps, "layout": "single" if layout_ is None else
      f"{layout_.member_shards}x{layout_.data_shards}",
      "member_steps_per_s": members * steps / steady, "steps_per_s": steps / steady,
      "chunk_s": steady, "sync_s": float(np.median(syncs[1:] if chunks else syncs)),
      "first_chunk_s": times[0], "compile_s": compile_s,
      "tflops_per_s": None if flops is None else flops / steady / 1e12,
      "kernels_per_step": _kernels(compiled),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--members", default="1,4,16,64")
  parser.add_argument("--sizes", default="small,reference")
  parser.add_argument("--steps", type=int, default=20, help="updates per timed chunk")
  parser.add_argument("--reference_steps", type=int, default=None,
                      help="updates per chunk for the reference size (default --steps)")
  parser.add_argument("--chunks", type=int, default=2, help="timed chunks after the first")
  parser.add_argument("--layout", default="auto")
  parser.add_argument("--json", default=None, help="also write the rows to this file")
  args = parser.parse_args()
  data = synthetic_data()
  print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].device_kind}; "
        f"batch 256, N = 10 per source; median of {args.chunks} chunks", flush=True)
  print(f"{'network':<22} {'M':>3} {'layout':>6} {'steps':>5} {'member-steps/s':>15} "
        f"{'vs 1-by-1':>9} {'chunk s':>8} {'sync s':>7} {'compile s':>9}", flush=True)
  rows = []
  for name in args.sizes.split(","):
    steps = args.reference_steps if name == "reference" and args.reference_steps else args.steps
    one = None
    for m in [int(x) for x in args.members.split(",")]:
      r = measure(SIZES[name], member_grid(m), [0], steps, args.chunks, data, layout=args.layout)
      r["network"] = f"{name} {'x'.join(map(str, SIZES[name]))}"
      one = one or (r["member_steps_per_s"] if m == 1 else None)
      ratio = f"{r['member_steps_per_s'] / one:.2f}x" if one else "-"
      print(f"{r['network']:<22} {m:>3} {r['layout']:>6} {steps:>5} "
            f"{r['member_steps_per_s']:>15.1f} {ratio:>9} {r['chunk_s']:>8.3f} "
            f"{r['sync_s']:>7.4f} {r['compile_s']:>9.1f}", flush=True)
      rows.append(r)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
