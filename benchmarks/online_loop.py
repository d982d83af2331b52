"""Speed of the online fine-tuning loop (cql_jax.finetune): environment steps/s and updates/s.

  PYTHONPATH=$PWD python -m benchmarks.online_loop                       # a short Cal-QL run
  PYTHONPATH=$PWD python -m benchmarks.online_loop --workdir=runs/finetune-pendulum/medium-replay/calql

Without --workdir it trains Cal-QL on the project's Pendulum medium-replay data (1,000 offline
steps, then --online_steps environment steps per seed, --seeds vmapped) in a temporary
directory. Either way it reads the run's online rows of metrics.jsonl, leaves out the first
window (it compiles), and prints:
  acting: environment steps per second of each member while acting (one jitted, member-vmapped
    act per step plus the Gymnasium step of every copy), i.e. member env steps / acting seconds;
  learning: gradient updates per second of each member (the compiled round: staged insert and
    steps_per_round × utd scanned updates), i.e. member updates / learning seconds;
  overall: member env steps per wall second of the whole loop at the run's UTD;
  and, for runs that log it, the same per CPU second of the process (the cost on a shared core).
"""
from __future__ import annotations

import pathlib
import tempfile

from absl import app
from absl import flags
import numpy as np

from cql_jax import runner
from cql_jax import writers
from cql_jax.configs import base
from cql_jax.configs import classic


def define_flags() -> None:
  """The script's flags, defined only when it runs, so the module imports beside others."""
  flags.DEFINE_string("workdir", None, "an existing run with an online phase (default: run one)")
  flags.DEFINE_integer("online_steps", 3000, "environment steps per seed of the run made here")
  flags.DEFINE_list("seeds", ["0"], "seeds of the run made here")


FLAGS = flags.FLAGS


def measure(workdir) -> dict:
  rows = [r for r in writers.read_jsonl(pathlib.Path(workdir) / writers.METRICS_FILE)
          if r["kind"] == "train" and "online/env_steps" in r]
  if len(rows) < 2:
    raise SystemExit(f"{workdir} has fewer than two online windows to measure.")
  windows = rows[1:]  # rows[0] holds the compile.
  members = len(rows[0]["seeds"])
  env = windows[-1]["online/env_steps"] - rows[0]["online/env_steps"]
  act = sum(r["online/act_seconds"] for r in windows)
  learn = sum(r["online/learn_seconds"] for r in windows)
  updates = sum(r["online/updates_per_second"] * r["online/learn_seconds"] for r in windows)
  cpu = {}
  if all("online/act_cpu_seconds" in r for r in windows):
    act_cpu = sum(r["online/act_cpu_seconds"] for r in windows)
    learn_cpu = sum(r["online/learn_cpu_seconds"] for r in windows)
    cpu = {"acting_env_steps_per_cpu_s": env * members / max(act_cpu, 1e-9),
           "learning_updates_per_cpu_s": updates * members / max(learn_cpu, 1e-9),
           "act_cpu_seconds": act_cpu, "learn_cpu_seconds": learn_cpu}
  return {**cpu, "members": members, "env_steps_per_member": env,
          "acting_env_steps_per_s": env * members / max(act, 1e-9),
          "learning_updates_per_s": updates * members / max(learn, 1e-9),
          "overall_env_steps_per_s": env * members / max(act + learn, 1e-9),
          "act_seconds": act, "learn_seconds": learn}


def main(argv):
  del argv
  workdir = FLAGS.workdir
  if workdir is None:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="online_loop_")) / "run"
    config = base.override(classic.get_config("medium-replay"), {
        "num_steps": 1000, "eval_every": 1000, "checkpoint_every": 1000,
        "agent.cql.calibrated": True, "online.steps": FLAGS.online_steps,
        "online.log_every": 500, "online.eval_every": FLAGS.online_steps,
        "online.checkpoint_every": FLAGS.online_steps, "log.tensorboard": False,
        "selection.statistics": False})
    runner.train_and_evaluate(config, workdir, [int(s) for s in FLAGS.seeds], progress=False)
  result = measure(workdir)
  print(f"{workdir}: {result['members']} member(s), {result['env_steps_per_member']} env steps "
        "each measured (first window left out)")
  print(f"acting:   {result['acting_env_steps_per_s']:.0f} member env steps/s "
        f"({result['act_seconds']:.1f} s)")
  print(f"learning: {result['learning_updates_per_s']:.0f} member updates/s "
        f"({result['learn_seconds']:.1f} s)")
  print(f"overall:  {result['overall_env_steps_per_s']:.0f} member env steps/s at the run's UTD")
  if "act_cpu_seconds" in result:  # per CPU second of this process: what a shared core hides.
    print(f"per CPU second: acting {result['acting_env_steps_per_cpu_s']:.0f} member env "
          f"steps/s, learning {result['learning_updates_per_cpu_s']:.0f} member updates/s "
          f"({result['act_cpu_seconds']:.1f} + {result['learn_cpu_seconds']:.1f} CPU s)")


if __name__ == "__main__":
  define_flags()
  app.run(main)
