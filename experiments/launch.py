"""Runs N local processes of the training entry point as one multi-process run: a pod rehearsal.

  python -m experiments.launch --processes=2 --devices_per_process=2 -- \
      --config=classic:medium --workdir=runs/pod --seeds=0-3

Everything after `--` goes to `experiments.train` (`--module` picks another absl entry point
that calls `cql_jax.parallel.maybe_initialize_distributed`). Process i gets the coordinator
variables cql_jax.distributed reads (CQL_JAX_COORDINATOR on a free local port,
CQL_JAX_NUM_PROCESSES, CQL_JAX_PROCESS_ID). With --platform=cpu (the default) each process
sees --devices_per_process simulated CPU devices and the processes' collectives run over gloo,
so a laptop runs the same program, with the same process boundaries, as a pod of N hosts.

Process 0 writes to this terminal; the others to <logdir>/process_<i>.log. When a process
fails or is killed, the others are stopped (SIGTERM, then SIGKILL after --grace_seconds), one
message names the process and how it ended, and the launcher exits with that process's status.
Without the launcher (real hosts), the processes stop each other through JAX's heartbeat
(cql_jax.distributed.HEARTBEAT_SECONDS).
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Sequence

from absl import app
from absl import flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The flags; defined only when run as a script, so importing this module defines none."""
  flags.DEFINE_integer("processes", 2, "Number of processes (hosts of the rehearsed pod).")
  flags.DEFINE_integer("devices_per_process", 1, "Simulated CPU devices per process "
                       "(--platform=cpu); each process's share of the pod's chips.")
  flags.DEFINE_enum("platform", "cpu", ["cpu", "native"], "cpu: simulated CPU devices and gloo "
                    "collectives; native: leave JAX's platform and devices alone (e.g. one GPU "
                    "per process, chosen by your own CUDA_VISIBLE_DEVICES).")
  flags.DEFINE_integer("port", 0, "Coordinator port on 127.0.0.1 (0: a free one).")
  flags.DEFINE_string("module", "experiments.train", "The entry point each process runs.")
  flags.DEFINE_string("logdir", None, "Where processes 1..N-1 write their output (default: a "
                      "new temporary directory, printed).")
  flags.DEFINE_float("grace_seconds", 10.0, "After one process ends badly, how long the others "
                     "get to exit on SIGTERM before SIGKILL.")


LAUNCH_COMMAND_ENV = "CQL_JAX_LAUNCH_COMMAND"


def free_port() -> int:
  """A TCP port free on 127.0.0.1 now (the OS picks it)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(index: int, num_processes: int, port: int, devices_per_process: int,
                platform: str, launch_command: str, base: Optional[dict] = None) -> dict:
  """The environment of process `index`: coordinator variables, and the CPU devices on cpu."""
  env = dict(os.environ if base is None else base)
  env.update({"CQL_JAX_COORDINATOR": f"127.0.0.1:{port}",
              "CQL_JAX_NUM_PROCESSES": str(num_processes), "CQL_JAX_PROCESS_ID": str(index),
              LAUNCH_COMMAND_ENV: launch_command})
  if platform == "cpu":
    env["JAX_PLATFORMS"] = "cpu"
    kept = [f for f in env.get("XLA_FLAGS", "").split()
            if not f.startswith("--xla_force_host_platform_device_count")]
    # First: XLA stops reading flags at a malformed one, so an appended flag could be lost.
    env["XLA_FLAGS"] = " ".join(
        [f"--xla_force_host_platform_device_count={devices_per_process}"] + kept)
  return env


def describe_end(index: int, num_processes: int, pid: int, returncode: int) -> str:
  if returncode < 0:
    try:
      how = f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
      how = f"was killed by signal {-returncode}"
  else:
    how = f"exited with status {returncode}"
  return f"process {index} of {num_processes} (pid {pid}) {how}"


def launch(args: Sequence[str], num_processes: int, devices_per_process: int = 1,
           platform: str = "cpu", port: int = 0, module: str = "experiments.train",
           logdir: Optional[str] = None, grace_seconds: float = 10.0,
           launch_command: Optional[str] = None) -> int:
  """Starts the processes, waits for them, stops the rest when one ends badly; returns a status.

  The status is 0 when every process exits 0, else that of the first process to end badly
  (128 + signal number for a signal, as a shell reports it).
  """
  port = port or free_port()
  if launch_command is None:
    launch_command = (f"python -m experiments.launch --processes={num_processes} "
                      f"--devices_per_process={devices_per_process} --")
  logdir = logdir or tempfile.mkdtemp(prefix="cql_jax_launch_")
  os.makedirs(logdir, exist_ok=True)
  procs: List[subprocess.Popen] = []
  logs = []
  for i in range(num_processes):
    env = process_env(i, num_processes, port, devices_per_process, platform, launch_command)
    out = None
    if i:
      out = open(os.path.join(logdir, f"process_{i}.log"), "w")
      logs.append(out)
    procs.append(subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=out,
                                  stderr=subprocess.STDOUT if out else None))
  if num_processes > 1:
    print(f"[launch] {num_processes} processes × {devices_per_process} device(s), coordinator "
          f"127.0.0.1:{port}; processes 1-{num_processes - 1} write to {logdir}/process_<i>.log",
          file=sys.stderr, flush=True)

  def stop_all(sig):
    for p in procs:
      if p.poll() is None:
        p.send_signal(sig)

  stopping = []

  def on_signal(signum, _frame):  # Ctrl-C or kill of the launcher stops the whole group.
    stop_all(signum)
    stopping.append(time.time())
  old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
  status = 0
  try:
    while any(p.poll() is None for p in procs):
      # JAX's distributed client catches SIGTERM (as a preemption notice), so a process may
      # outlive the forwarded signal.
      if stopping and time.time() > stopping[0] + grace_seconds:
        stop_all(signal.SIGKILL)
      bad = [(i, p) for i, p in enumerate(procs) if p.poll() not in (None, 0)]
      if bad:
        i, p = bad[0]
        print(f"[launch] {describe_end(i, num_processes, p.pid, p.returncode)}; stopping the "
              "other processes. Checkpoints already saved are kept: rerun the same launch "
              "command with --resume to continue.", file=sys.stderr, flush=True)
        status = p.returncode if p.returncode > 0 else 128 - p.returncode
        stop_all(signal.SIGTERM)  # (caught by JAX as a preemption notice: SIGKILL follows.)
        deadline = time.time() + grace_seconds
        while time.time() < deadline and any(q.poll() is None for q in procs):
          time.sleep(0.1)
        stop_all(signal.SIGKILL)
        for q in procs:
          q.wait()
        return status
      time.sleep(0.1)
    for i, p in enumerate(procs):
      if p.returncode and not status:
        print(f"[launch] {describe_end(i, num_processes, p.pid, p.returncode)}",
              file=sys.stderr, flush=True)
        status = p.returncode if p.returncode > 0 else 128 - p.returncode
    return status
  finally:
    for s, handler in old.items():
      signal.signal(s, handler)
    for log in logs:
      log.close()


def main(argv):
  args = argv[1:]
  if FLAGS.processes < 1 or FLAGS.devices_per_process < 1:
    raise app.UsageError("--processes and --devices_per_process must be at least 1.")
  flag_text = " ".join(
      f"--{name}={getattr(FLAGS, name)}" for name in ("processes", "devices_per_process")
  ) + ("" if FLAGS.platform == "cpu" else f" --platform={FLAGS.platform}")
  module = "" if FLAGS.module == "experiments.train" else f" --module={FLAGS.module}"
  command = f"python -m experiments.launch {flag_text}{module} --"
  sys.exit(launch(args, FLAGS.processes, FLAGS.devices_per_process, FLAGS.platform, FLAGS.port,
                  FLAGS.module, FLAGS.logdir, FLAGS.grace_seconds, command))


if __name__ == "__main__":
  define_flags()
  app.run(main)
