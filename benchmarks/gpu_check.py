"""The GPU check: steps/s of the reference config for 1 seed, 16 seeds and a 64-member sweep.

  bash benchmarks/gpu_check.sh            # on the lent GPU machine (installs carried wheels)
  PYTHONPATH=. python -m benchmarks.gpu_check --smoke   # anywhere: tiny networks, a few steps

Reference config: the official CQL(H) recipe (3×256 actor and critics, 2 critics, batch 256,
N = 10 actions per source, fixed α), Hopper shapes on synthetic data (100k transitions).
Every program is the runner's (cql_jax.sweep.build_program, config.layout = "auto").
The 64-member sweep is 16 settings (CQL weight zipped with critic lr) × 4 seeds.

Besides steps/s it prints what a profile would be asked first:
  chunk s / sync s   wall seconds per chunk, and the part spent copying its metrics to the host
                     after the device finished (the runner's per-chunk host sync);
  fixed s            per-chunk overhead from one seed's chunks of two lengths (the last row,
                     printed last as it costs a compile): t(K) = fixed + K · per-step (dispatch,
                     sync, loop set-up); us/step is then one update's time (elsewhere: chunk
                     time / steps);
  TFLOP/s            XLA's FLOP count / time: far below the chip's fp32 peak (~67 TFLOP/s on an
                     H200) with few FLOPs per kernel means launch-bound;
  kernels/step       fusions + library calls in the compiled module (≈ kernels per update);
                     × ~3-5 µs per launch is a floor on the step time when launch-bound.
The issue's goals on an H200: 1 seed ≥ 3,000 steps/s; 64 members ≥ 40,000 member-steps/s.
"""
from __future__ import annotations

import argparse
import json
import time
import traceback

GOALS = {"1 seed": 3_000.0, "64-member sweep": 40_000.0}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true",
                      help="tiny networks and chunks: checks the script, not the machine")
  parser.add_argument("--steps", type=int, default=1000, help="updates per chunk")
  parser.add_argument("--short_steps", type=int, default=100,
                      help="updates per chunk of the second length (fixed-overhead fit)")
  parser.add_argument("--chunks", type=int, default=3, help="timed chunks after the first")
  parser.add_argument("--json", default=None)
  args = parser.parse_args()
  t_start = time.time()

  import jax
  from benchmarks import sweep as bench
  hidden = (16, 16) if args.smoke else bench.SIZES["reference"]
  steps, short, chunks = (10, 5, 1) if args.smoke else (args.steps, args.short_steps, args.chunks)
  batch = 32 if args.smoke else 256
  device = jax.devices()[0]
  stats = device.memory_stats() or {}
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} x "
        f"{device.device_kind}, memory limit {stats.get('bytes_limit', 0) / 2**30:.1f} GiB",
        flush=True)
  print(f"network {'x'.join(map(str, hidden))}, batch {batch}, N = 10, {steps} steps/chunk, "
        f"median of {chunks} chunks", flush=True)
  data = bench.synthetic_data(10_000 if args.smoke else 100_000)
  if args.smoke:  # the same three cases, shrunk: 4 seeds; 4 settings × 2 seeds.
    cases = [("1 seed", None, [0]), ("4 seeds", None, [0, 1, 2, 3]),
             ("8-member sweep", bench.member_grid(4), [0, 1])]
  else:
    cases = [("1 seed", None, [0]), ("16 seeds", None, list(range(16))),
             ("64-member sweep", bench.member_grid(16), [0, 1, 2, 3])]
  rows = []
  header = (f"{'case':<16} {'M':>3} {'layout':>6} {'steps/s':>9} {'member-steps/s':>15} "
            f"{'chunk s':>8} {'sync s':>7} {'fixed s':>8} {'us/step':>8} {'TFLOP/s':>8} "
            f"{'kern/step':>9} {'compile s':>9}")
  print(header, flush=True)

  def save():  # after every case, so a run cut short by its timeout still leaves its numbers.
    if args.json:
      with open(args.json, "w") as f:
        json.dump({"jax": jax.__version__, "device": device.device_kind, "rows": rows}, f,
                  indent=1)

  def show(name, r):
    tflops = "-" if r["tflops_per_s"] is None else f"{r['tflops_per_s']:.2f}"
    fixed = "-" if r.get("fixed_s") is None else f"{r['fixed_s']:.4f}"
    print(f"{name:<16} {r['members']:>3} {r['layout']:>6} {r['steps_per_s']:>9.1f} "
          f"{r['member_steps_per_s']:>15.1f} {r['chunk_s']:>8.3f} {r['sync_s']:>7.4f} "
          f"{fixed:>8} {r['us_per_step']:>8.1f} {tflops:>8} {r['kernels_per_step'] or '-':>9} "
          f"{r['compile_s']:>9.1f}", flush=True)

  for name, grid, seeds in cases:
    try:
      r = bench.measure(hidden, grid, seeds, steps, chunks, data, batch)
      r.update(case=name, us_per_step=r["chunk_s"] / steps * 1e6)
      rows.append(r)
      show(name, r)
      save()
    except Exception:  # pylint: disable=broad-except
      print(f"{name}: FAILED\n{traceback.format_exc()}", flush=True)
  # Last, as it costs one more compile: one seed with chunks of another length separates the
  # fixed per-chunk cost (dispatch, sync, loop set-up) from the time of one update.
  if rows and rows[0]["case"] == "1 seed":
    try:
      one = rows[0]
      r = bench.measure(hidden, None, [0], short, chunks, data, batch)
      per_step = (one["chunk_s"] - r["chunk_s"]) / (steps - short)
      one.update(fixed_s=one["chunk_s"] - steps * per_step, us_per_step=per_step * 1e6,
                 short_chunk_s=r["chunk_s"], short_steps=short)
      show("1 seed (fit)", one)
      save()
    except Exception:  # pylint: disable=broad-except
      print(f"fixed-cost fit: FAILED\n{traceback.format_exc()}", flush=True)
  for r in rows:
    goal = GOALS.get(r["case"])
    if goal is not None and not args.smoke:
      rate = r["steps_per_s"] if r["members"] == 1 else r["member_steps_per_s"]
      print(f"goal {r['case']}: {rate:,.0f} vs {goal:,.0f} -> "
            f"{'met' if rate >= goal else 'NOT met'}", flush=True)
  print(f"total {time.time() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
  main()
