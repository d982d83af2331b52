"""What vmapping S seeds into one compiled program costs, against one seed.

  PYTHONPATH=. python -m benchmarks.seeds [--seeds=1,4,8] [--steps=20] [--chunks=2]

For each network size and S it builds the runner's chunk (jit(vmap(scan(update))), state donated),
times the first call (trace + compile + one chunk, minus one steady chunk = compile time) and then
`chunks` steady calls. Prints steps/s (per seed) and seed-steps/s (S x steps/s). Synthetic data
with Hopper's shapes (O = 11, A = 3, 100k transitions) stands in for a dataset; the persistent
compile cache is not used, so compile times are real.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from cql_jax import train
from cql_jax.continuous import agent as cql
from cql_jax.data import buffer
from cql_jax.types import Transition

SIZES = {"reference 256-256": (256, 256), "small 32-32": (32, 32)}


def synthetic_data(size: int = 100_000, obs_dim: int = 11, action_dim: int = 3) -> Transition:
  rng = np.random.default_rng(0)
  f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
  return buffer.to_device(Transition(
      obs=f(size, obs_dim), action=np.tanh(f(size, action_dim)), reward=f(size),
      discount=np.ones(size, np.float32), next_obs=f(size, obs_dim)))


def measure(hidden, num_seeds: int, steps: int, chunks: int, data: Transition,
            batch_size: int = 256) -> dict:
  config = cql.default_config()
  config.actor_hidden_sizes = config.critic_hidden_sizes = hidden
  agent = cql.make_cql_agent(config, 11, -np.ones(3), np.ones(3))
  init_keys, loop_keys = train.seed_keys(range(num_seeds))
  state = jax.jit(jax.vmap(agent.init))(init_keys)
  chunk = train.compile_chunk(agent, batch_size, steps, num_seeds=num_seeds)
  times = []
  for i in range(chunks + 1):
    ck = train.chunk_keys(loop_keys, i)
    t0 = time.perf_counter()
    state, metrics = chunk(state, data, ck)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  steady = float(np.median(times[1:]))
  return {"seeds": num_seeds, "steps_per_s": steps / steady,
          "seed_steps_per_s": num_seeds * steps / steady, "compile_s": times[0] - steady}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", default="1,4,8")
  parser.add_argument("--steps", type=int, default=20, help="updates per timed chunk")
  parser.add_argument("--chunks", type=int, default=2, help="timed chunks after the first")
  parser.add_argument("--sizes", default=",".join(SIZES))
  args = parser.parse_args()
  data = synthetic_data()
  print(f"device: {jax.devices()[0].device_kind}, batch 256, N = 10 samples per source, "
        f"{args.steps} steps/chunk, median of {args.chunks} chunks")
  print(f"{'network':<18} {'S':>2} {'steps/s':>9} {'seed-steps/s':>13} {'vs S=1':>7} {'compile s':>10}")
  for name in args.sizes.split(","):
    base = None
    for s in [int(x) for x in args.seeds.split(",")]:
      r = measure(SIZES[name], s, args.steps, args.chunks, data)
      base = base or r["seed_steps_per_s"]
      print(f"{name:<18} {s:>2} {r['steps_per_s']:>9.1f} {r['seed_steps_per_s']:>13.1f} "
            f"{r['seed_steps_per_s'] / base:>6.2f}x {r['compile_s']:>10.1f}", flush=True)


if __name__ == "__main__":
  main()
