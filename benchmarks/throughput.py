"""Gradient steps per second, FLOPs per step and the matmul roofline for cql_jax.

Usage (from the repo root):
  PYTHONPATH=$PWD python benchmarks/throughput.py                       # everything
  PYTHONPATH=$PWD python benchmarks/throughput.py --suites=continuous --seeds=1
  PYTHONPATH=$PWD python benchmarks/throughput.py --suites=roofline --threads=1,2
  PYTHONPATH=$PWD python benchmarks/throughput.py --suites=d3rlpy --d3rlpy_python=/tmp/d3venv/bin/python

Suites:
  continuous  reference CQL(H): batch 256, MLP 256-256 (actor and critics), 2 critics, N = 10
              actions per source (uniform, π(s), π(s′)), fixed α = 5, Hopper shapes (O 11, A 3).
  atari       discrete CQL + QR-DQN: Nature CNN, batch 32, 200 quantiles, 18 actions, uint8 frames.
  cartpole    discrete CQL + QR-DQN: obs 4, 2 actions, MLP 256-256, batch 32.
  roofline    fp32 matmul peak and the continuous step, each in a subprocess pinned to 1 or 2
              threads (see `_thread_env`), and the fraction of the peak the step reaches.
  memory      device bytes of 1M / 10M transitions (Hopper float32; Atari uint8 frames).
  d3rlpy      d3rlpy's CQL on the continuous configuration (same process if importable, else
              in a subprocess of --d3rlpy_python), and the ratio to cql_jax.

Every timing is the best of --repeats calls of a compiled chunk of --steps updates (a lax.scan
with sampling inside, as in training), so dispatch and host syncs are amortised the way
`cql_jax.train.fit` amortises them. Compile time is reported separately. "cpu" columns are
process CPU-seconds per step: on a shared machine they are less noisy than wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

_RESULT = "RESULT "


def _cpu_seconds() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def _block(tree):
  import jax
  jax.tree.map(lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x, tree)


def time_calls(fn, args_fn, repeats: int):
  """Best wall seconds and mean CPU seconds over `repeats` calls of fn(*args_fn())."""
  best, cpu_total = float("inf"), 0.0
  for _ in range(repeats):
    args = args_fn()
    _block(args)
    c0, t0 = _cpu_seconds(), time.perf_counter()
    _block(fn(*args))
    best = min(best, time.perf_counter() - t0)
    cpu_total += _cpu_seconds() - c0
  return best, cpu_total / repeats


def cost_flops(compiled) -> float:
  """FLOPs of one call from XLA's cost analysis (a dict, or a list of dicts on older JAX)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get("flops", float("nan")))


# ----------------------------------------------------------------------------- configurations

def continuous_agent(update_variant: str = "library"):
  """Reference CQL agent (Hopper shapes) and a synthetic dataset; returns (agent, data)."""
  from cql_jax.continuous import agent as cql
  from cql_jax.types import Transition
  import jax.numpy as jnp
  config = cql.default_config()
  config.cql.weight = 5.0
  config.cql.num_samples = 10
  config.num_critics = 2
  config.critic_hidden_sizes = config.actor_hidden_sizes = (256, 256)
  obs_dim, action_dim = 11, 3
  agent = cql.make_cql_agent(config, obs_dim, -np.ones(action_dim), np.ones(action_dim))
  if update_variant != "library":
    from benchmarks import fast_cql
    agent = fast_cql.make_variant(config, obs_dim, action_dim, update_variant)
  rng = np.random.default_rng(0)
  size = 100_000
  data = Transition(
      obs=jnp.asarray(rng.normal(size=(size, obs_dim)), jnp.float32),
      action=jnp.asarray(rng.uniform(-1, 1, (size, action_dim)), jnp.float32),
      reward=jnp.asarray(rng.normal(size=size), jnp.float32),
      discount=jnp.ones(size, jnp.float32),
      next_obs=jnp.asarray(rng.normal(size=(size, obs_dim)), jnp.float32))
  return agent, data, 256


def discrete_agent(kind: str):
  """QR-DQN + CQL for 'atari' (Nature CNN, uint8 84×84×4) or 'cartpole' (MLP); (agent, data, B)."""
  from cql_jax.discrete import agent as discrete
  from cql_jax.types import Transition
  import jax.numpy as jnp
  config = discrete.default_config()
  config.loss, config.num_quantiles = "qrdqn", 200
  rng = np.random.default_rng(0)
  if kind == "atari":
    config.torso, obs_shape, num_actions, size, dtype = "cnn", (84, 84, 4), 18, 1024, np.uint8
    obs = rng.integers(0, 256, (size, *obs_shape), dtype=np.uint8)
    next_obs = rng.integers(0, 256, (size, *obs_shape), dtype=np.uint8)
  else:
    config.torso, obs_shape, num_actions, size = "mlp", (4,), 2, 100_000
    obs = rng.normal(size=(size, 4)).astype(np.float32)
    next_obs = rng.normal(size=(size, 4)).astype(np.float32)
  agent = discrete.make_discrete_agent(config, obs_shape, num_actions)
  data = Transition(obs=jnp.asarray(obs), action=jnp.asarray(rng.integers(0, num_actions, size),
                                                                  jnp.int32),
                    reward=jnp.asarray(rng.normal(size=size), jnp.float32),
                    discount=jnp.ones(size, jnp.float32), next_obs=jnp.asarray(next_obs))
  return agent, data, 32


def build(suite: str, variant: str = "library"):
  if suite == "continuous":
    return continuous_agent(variant)
  return discrete_agent(suite)


# ----------------------------------------------------------------------------- measurements

def step_flops(agent, data, batch_size: int) -> float:
  """XLA FLOPs of one sampled update (no scan: cost analysis counts a loop body once)."""
  import jax
  from cql_jax.data import buffer

  def one(state, data, key):
    batch_key, update_key = jax.random.split(key)
    return agent.update(state, buffer.sample_batch(data, batch_key, batch_size), update_key)
  state = agent.init(jax.random.key(0))
  return cost_flops(jax.jit(one).lower(state, data, jax.random.key(1)).compile())


def measure_agent(suite: str, num_seeds: int, steps: int, repeats: int, variant="library"):
  """Compile seconds, steps/s and CPU-s/step of a compiled chunk; num_seeds 1 means no vmap."""
  import jax
  from cql_jax import train
  agent, data, batch_size = build(suite, variant)
  seeds = None if num_seeds == 1 else num_seeds
  chunk = train.compile_chunk(agent, batch_size, steps, seeds)
  if seeds is None:
    state, key = train.init_states(agent, jax.random.key(0)), jax.random.key(1)
  else:
    init_keys, loop_keys = train.seed_keys(range(seeds))
    state, key = train.init_states(agent, init_keys, seeds), train.chunk_keys(loop_keys, 0)
  t0 = time.perf_counter()
  compiled = chunk.lower(state, data, key).compile()
  compile_s = time.perf_counter() - t0
  holder = {"state": state}

  def run(_):
    # The state is donated, so every call consumes the last call's output.
    holder["state"], metrics = compiled(holder["state"], data, key)
    return holder["state"], metrics
  run(None)  # warm-up: first-call allocations.
  best, cpu = time_calls(run, lambda: (None,), repeats)
  total = steps * num_seeds
  return {"suite": suite, "variant": variant, "seeds": num_seeds, "compile_s": compile_s,
          "steps_per_s": total / best, "cpu_s_per_step": cpu / total,
          "gflop_per_step": step_flops(agent, data, batch_size) / 1e9}


def matmul_peak(n: int = 2048, repeats: int = 7, shape=None):
  """fp32 GFLOP/s of an [n, n] @ [n, n] jnp.dot (or an [m, k] @ [k, n] `shape`).

  Returns (per wall second of the best call, per process CPU-second on average).
  """
  import jax
  import jax.numpy as jnp
  m, k, nn_ = shape or (n, n, n)
  a = jnp.ones((m, k), jnp.float32)
  b = jnp.ones((k, nn_), jnp.float32)
  f = jax.jit(jnp.dot)
  _block(f(a, b))
  best, cpu = time_calls(f, lambda: (a, b), repeats)
  flops = 2.0 * m * k * nn_
  return flops / best / 1e9, flops / cpu / 1e9


def _thread_env(threads: int):
  """(env, command prefix) that limit XLA:CPU to `threads` cores.

  XLA:CPU runs dots and fusions on an intra-op thread pool sized to the visible cores. Flags
  alone (`--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`) did not keep the
  process on one core here; `taskset -c 0` does, because the pool is sized from, and scheduled
  on, the affinity mask. We apply both for 1 thread, and `taskset -c 0,1` for 2.
  """
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cores = ",".join(str(i) for i in range(threads))
  if threads == 1:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
  return env, ["taskset", "-c", cores]


def _subprocess(args, env=None, prefix=(), python=sys.executable):
  cmd = list(prefix) + [python, os.path.abspath(__file__)] + args
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  results = [json.loads(line[len(_RESULT):]) for line in out.stdout.splitlines()
             if line.startswith(_RESULT)]
  if not results:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
  return results


def roofline(threads: int, steps: int, repeats: int, variant: str):
  """Runs the peak and the step in one pinned subprocess; returns its result dict."""
  env, prefix = _thread_env(threads)
  res = _subprocess(["--worker=roofline", f"--steps={steps}", f"--repeats={repeats}",
                     f"--variant={variant}"], env, prefix)[0]
  res["threads"] = threads
  return res


def _roofline_worker(steps, repeats, variant):
  step = measure_agent("continuous", 1, steps, repeats, variant)
  peak, peak_cpu = matmul_peak()
  # The critic's widest matmul: [B·(1+3N), 256] @ [256, 256].
  shaped, _ = matmul_peak(shape=(256 * 31, 256, 256), repeats=repeats * 3)
  achieved = step["gflop_per_step"] * step["steps_per_s"]
  achieved_cpu = step["gflop_per_step"] / step["cpu_s_per_step"]
  # fraction_of_peak: wall-clock (best call of each). cpu_fraction: GFLOP per CPU-second of the
  # step over the same for the matmul; robust to other processes taking the cores, and with
  # several threads it measures per-core efficiency rather than scaling.
  return {**step, "peak_gflops": peak, "shaped_gflops": shaped, "achieved_gflops": achieved,
          "fraction_of_peak": achieved / peak, "peak_gflops_per_cpu_s": peak_cpu,
          "cpu_fraction_of_peak": achieved_cpu / peak_cpu}


def memory_table():
  """Bytes of 1M and 10M transitions as stored on the device by cql_jax."""
  rows = []
  hopper = 2 * 11 * 4 + 3 * 4 + 4 + 4         # obs + next_obs float32, action, reward, discount
  frames = 84 * 84 + 4 + 4 + 1                 # one uint8 frame, int32 action, f32 reward, terminal
  stacked = 2 * 84 * 84 * 4 + 4 + 4 + 4        # if stacks were stored for s and s′
  for n in (1_000_000, 10_000_000):
    rows.append({"dataset": f"Hopper float32, {n // 10**6}M", "bytes": hopper * n})
    rows.append({"dataset": f"Atari frames stored once, {n // 10**6}M", "bytes": frames * n})
    rows.append({"dataset": f"(Atari stacked s and s', {n // 10**6}M)", "bytes": stacked * n})
  # Check the Hopper formula against real device arrays at 1M.
  import jax
  from cql_jax.data import buffer
  from cql_jax.types import Transition
  n = 1_000_000
  t = Transition(np.zeros((n, 11), np.float32), np.zeros((n, 3), np.float32),
                 np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros((n, 11), np.float32))
  dev = buffer.to_device(t)
  measured = sum(x.nbytes for x in jax.tree.leaves(dev))
  rows.append({"dataset": "Hopper 1M measured on device (sum of nbytes)", "bytes": measured})
  return rows


# ----------------------------------------------------------------------------- d3rlpy

def d3rlpy_worker(steps: int, repeats: int, threads: int):
  """d3rlpy CQL (same configuration) update steps per second on CPU."""
  from benchmarks import d3rlpy_cql
  return d3rlpy_cql.measure(steps, repeats, threads)


def d3rlpy_available() -> bool:
  try:
    import d3rlpy  # noqa: F401
    return True
  except ImportError:
    return False


# ----------------------------------------------------------------------------- main

def _print_table(rows, cols):
  print(" | ".join(cols))
  for r in rows:
    cells = []
    for c in cols:
      v = r.get(c, "")
      cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
    print(" | ".join(cells))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--suites", default="continuous,atari,cartpole,roofline,memory,d3rlpy")
  p.add_argument("--seeds", default="1,4,16", help="vmapped seed counts to time")
  p.add_argument("--steps", type=int, default=50,
                 help="updates per compiled chunk (per seed: max(steps // seeds, 10))")
  p.add_argument("--atari_steps", type=int, default=5)
  p.add_argument("--atari_seeds", default="1,4", help="seed counts for the (slow on CPU) CNN")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--threads", default="1,2", help="thread counts for the roofline suite")
  p.add_argument("--variant", default="library",
                 help="continuous update: 'library' (cql_jax.continuous.agent) or a prototype in "
                      "benchmarks/fast_cql.py")
  p.add_argument("--d3rlpy_python", default=None,
                 help="interpreter with d3rlpy installed, used when d3rlpy is not importable here")
  p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)

  if args.worker == "roofline":
    print(_RESULT + json.dumps(_roofline_worker(args.steps, args.repeats, args.variant)))
    return
  if args.worker == "d3rlpy":
    print(_RESULT + json.dumps(d3rlpy_worker(args.steps, args.repeats, int(args.threads))))
    return

  suites = args.suites.split(",")
  seeds = [int(s) for s in args.seeds.split(",")]
  print(f"# load (1, 5, 15 min): {os.getloadavg()}  cores: {os.cpu_count()}  argv: {sys.argv[1:]}")
  import jax
  print(f"# jax {jax.__version__} devices {jax.devices()}")
  results = {}
  for suite in ("continuous", "atari", "cartpole"):
    if suite in suites:
      suite_seeds = [int(s) for s in args.atari_seeds.split(",")] if suite == "atari" else seeds
      steps = (lambda s: args.atari_steps) if suite == "atari" else (
          lambda s: max(args.steps // s, 10))
      rows = [measure_agent(suite, s, steps(s), args.repeats, args.variant if suite == "continuous"
                            else "library") for s in suite_seeds]
      print(f"\n## {suite} (all threads; steps/s summed over seeds)")
      _print_table(rows, ["seeds", "variant", "compile_s", "steps_per_s", "cpu_s_per_step",
                          "gflop_per_step"])
      results[suite] = rows
  if "roofline" in suites:
    rows = [roofline(int(t), args.steps, args.repeats, args.variant)
            for t in args.threads.split(",")]
    print("\n## roofline: continuous reference step vs fp32 matmul peak (pinned subprocesses)")
    _print_table(rows, ["threads", "variant", "gflop_per_step", "steps_per_s", "achieved_gflops",
                        "peak_gflops", "shaped_gflops", "fraction_of_peak",
                        "peak_gflops_per_cpu_s", "cpu_fraction_of_peak"])
    results["roofline"] = rows
  if "memory" in suites:
    rows = memory_table()
    print("\n## memory")
    for r in rows:
      print(f"{r['dataset']}: {r['bytes'] / 2**30:.2f} GiB ({r['bytes']:,} B)")
  if "d3rlpy" in suites:
    rows = []
    for t in args.threads.split(","):
      t = int(t)
      if d3rlpy_available():
        env, prefix = _thread_env(t)
        rows += _subprocess(["--worker=d3rlpy", f"--threads={t}", "--steps=50",
                             f"--repeats={args.repeats}"], env, prefix)
      elif args.d3rlpy_python:
        env, prefix = _thread_env(t)
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        rows += _subprocess(["--worker=d3rlpy", f"--threads={t}", "--steps=50",
                             f"--repeats={args.repeats}"], env, prefix, python=args.d3rlpy_python)
    if not rows:
      print("\n## d3rlpy: not importable and no --d3rlpy_python given; skipped")
    else:
      print("\n## d3rlpy CQL, same configuration")
      ours = {r["threads"]: r["steps_per_s"] for r in results.get("roofline", [])}
      for r in rows:
        if r["threads"] in ours:
          r["cql_jax_ratio"] = ours[r["threads"]] / r["steps_per_s"]
      _print_table(rows, ["threads", "version", "steps_per_s", "cql_jax_ratio"])
      results["d3rlpy"] = rows
  print("\n" + _RESULT + json.dumps(results))


if __name__ == "__main__":
  main()
