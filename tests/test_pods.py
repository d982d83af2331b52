"""Multi-process runs on this machine: N processes × D simulated CPU devices, gloo collectives.

Every launch goes through the entry point (`experiments.train`, alone or under
`experiments.launch`), as a pod's hosts would run it, on a tiny network. The reference is the
same sweep in one process over 4 devices, where each member runs alone on its own device; the
multi-process runs must match it member by member, in the training metrics, the evaluation
scores and the saved parameters. The launches share one compilation cache, so a program that
was compiled once (the killed run's, the resumed run's) is read back, not compiled again.
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Any process that hangs is killed after this; a healthy launch takes well under a minute of CPU.
TIMEOUT = 600
# Simulated devices are threads: on a loaded 2-core machine one may reach a collective long
# after the others (tests/test_sweep_devices.py).
SLOW_CPU_COLLECTIVES = ("--xla_cpu_collective_timeout_seconds=900 "
                        "--xla_cpu_collective_call_terminate_timeout_seconds=900")
TINY = ["--config=classic:medium", "--noprogress",
        "--config.agent.actor_hidden_sizes=(16,16)", "--config.agent.critic_hidden_sizes=(16,16)",
        "--config.agent.cql.num_samples=4", "--config.batch_size=32",
        "--config.steps_per_chunk=20", "--config.checkpoint_every=20",
        "--config.keep_checkpoints=1000", "--config.eval_episodes=2"]
SWEEP = ["--seeds=0-1", "--sweep=agent.cql.weight=1,5"]  # 4 members, setting-major.
FORTY = ["--config.num_steps=40", "--config.eval_every=40"]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(pendulum_minari_root):
  cache = ROOT / ".jax_cache"  # the suite's persistent compilation cache (tests/conftest.py).
  return {**os.environ, "PYTHONPATH": str(ROOT), "MINARI_DATASETS_PATH": str(pendulum_minari_root),
          "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(cache),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {SLOW_CPU_COLLECTIVES}"}


def _train(env, args, devices=1):
  # First: XLA stops reading flags at a malformed one (the suite's XLA_FLAGS may hold one).
  flags = f"--xla_force_host_platform_device_count={devices} {env['XLA_FLAGS']}"
  return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=ROOT,
                        env={**env, "XLA_FLAGS": flags}, capture_output=True, text=True,
                        timeout=TIMEOUT)


def _launch(env, args, processes, devices):
  return subprocess.run([sys.executable, "-m", "experiments.launch", f"--processes={processes}",
                         f"--devices_per_process={devices}", "--", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=TIMEOUT)


def _bare_processes(env, args, logs, devices=1):
  """One process per entry of `args` (its flags), started as a pod's hosts would be, no launcher."""
  port = _free_port()
  flags = f"--xla_force_host_platform_device_count={devices} {env['XLA_FLAGS']}"
  procs = []
  for i, (arg, log) in enumerate(zip(args, logs)):
    with open(log, "w") as out:
      procs.append(subprocess.Popen(
          [sys.executable, "-m", "experiments.train", *arg], cwd=ROOT, stdout=out,
          stderr=subprocess.STDOUT,
          env={**env, "XLA_FLAGS": flags, "CQL_JAX_COORDINATOR": f"127.0.0.1:{port}",
               "CQL_JAX_NUM_PROCESSES": str(len(args)), "CQL_JAX_PROCESS_ID": str(i)}))
  return procs


def _ok(proc):
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


def _records(workdir, kind):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [r for r in rows if r["kind"] == kind]


def _state(workdir, step):
  """The checkpointed state at `step`: {leaf path: NumPy [M, ...]}, read without devices."""
  import orbax.checkpoint as ocp
  path = (workdir / "checkpoints" / str(step) / "state").resolve()
  with ocp.PyTreeCheckpointer() as checkpointer:
    meta = checkpointer.metadata(path).item_metadata.tree
    restore = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
    tree = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore))
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in
          jax.tree_util.tree_leaves_with_path(tree)}


def _mesh(workdir):
  return json.loads((workdir / "results.json").read_text())["mesh"]


def _numeric(row):
  return {k: np.asarray(v, np.float64) for k, v in row.items()
          if isinstance(v, list) and v and isinstance(v[0], (int, float))}


def _compare(run, ref, members, atol, steps=(20, 40)):
  """Largest difference between `run`'s members and `ref`'s members `members` (same order)."""
  worst = 0.0
  for kind in ("train", "eval", "offline"):
    mine = {r["step"]: _numeric(r) for r in _records(run, kind)}
    theirs = {r["step"]: _numeric(r) for r in _records(ref, kind)}
    assert set(mine) == set(theirs) and mine, (kind, sorted(mine), sorted(theirs))
    for step in mine:
      names = set(mine[step]) - {"steps_per_second"}
      assert names == set(theirs[step]) - {"steps_per_second"}, (kind, step)
      for name in names:
        a, b = mine[step][name], theirs[step][name][members]
        assert a.shape == b.shape, (kind, step, name)
        scale = 1.0 + np.abs(b)
        worst = max(worst, float(np.max(np.abs(a - b) / scale)))
        assert np.allclose(a, b, atol=atol, rtol=atol), (kind, step, name, a, b)
  for step in steps:
    mine, theirs = _state(run, step), _state(ref, step)
    assert set(mine) == set(theirs)
    for name in mine:
      if mine[name].dtype.kind == "f":
        b = theirs[name][members]
        assert np.allclose(mine[name], b, atol=atol, rtol=atol), (step, name)
  return worst


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
  """The 4-member sweep in one process over 4 devices (one member per device)."""
  workdir = tmp_path_factory.mktemp("ref") / "run"
  _ok(_train(env, [*TINY, *FORTY, *SWEEP, f"--workdir={workdir}"], devices=4))
  return workdir


@pytest.fixture(scope="module")
def two_by_two(env, tmp_path_factory):
  """The same sweep over 2 processes × 2 devices: members 0-1 on process 0, 2-3 on process 1."""
  workdir = tmp_path_factory.mktemp("pod") / "run"
  proc = _ok(_launch(env, [*TINY, *FORTY, *SWEEP, f"--workdir={workdir}"], 2, 2))
  return workdir, proc


def test_sweep_over_two_processes_matches_one_process_member_by_member(reference, two_by_two):
  workdir, proc = two_by_two
  assert _mesh(reference) == {"processes": 1, "devices": 4, "layout": "4x1"}
  assert _mesh(workdir) == {"processes": 2, "devices": 4, "layout": "4x1"}
  _compare(workdir, reference, slice(None), atol=1e-5)
  # Process 0 alone wrote the files: one row per chunk and evaluation, one results table.
  assert len(_records(workdir, "train")) == 2 and len(_records(workdir, "eval")) == 1
  results = json.loads((workdir / "results.json").read_text())
  assert [m["name"] for m in results["members"]] == [
      "cql.weight=1,seed_0", "cql.weight=1,seed_1", "cql.weight=5,seed_0", "cql.weight=5,seed_1"]
  assert sorted(p.name for p in (workdir / "tb").iterdir()) == sorted(
      [m["name"] for m in results["members"]] + ["mean"])
  assert "sweep, final scores per setting" in proc.stdout
  assert not (workdir / ".lock").exists()


def test_two_process_run_resumes_in_one_process(env, reference, two_by_two, tmp_path):
  """Orbax reads the 2-process checkpoint back onto another process count (1 × 4 devices)."""
  workdir = tmp_path / "run"
  shutil.copytree(two_by_two[0], workdir)
  shutil.rmtree(workdir / "checkpoints" / "40")  # as if stopped right after step 20's save.
  _ok(_train(env, [*TINY, *FORTY, *SWEEP, f"--workdir={workdir}", "--resume"], devices=4))
  _compare(workdir, reference, slice(None), atol=1e-5, steps=(40,))


def test_data_parallel_over_two_processes_matches_one_device(env, reference, tmp_path):
  """One member, its batch split over 2 processes × 1 device: every gradient is an all-reduce
  across processes. The reference member cql.weight=1, seed 0 ran alone on one device."""
  workdir = tmp_path / "dp"
  _ok(_launch(env, [*TINY, *FORTY, "--seeds=0", "--config.agent.cql.weight=1",
                    f"--workdir={workdir}"], 2, 1))
  assert _mesh(workdir) == {"processes": 2, "devices": 2, "layout": "1x2"}
  _compare(workdir, reference, slice(0, 1), atol=1e-4)


def test_killed_process_stops_the_group_which_then_resumes(env, reference, two_by_two, tmp_path):
  """SIGKILL one of two processes mid-training: the other stops on its own within a minute, with
  one message; a second group on the same workdir is refused while the first lives; the
  relaunch resumes from a checkpoint and ends where the uninterrupted run ended."""
  workdir = tmp_path / "killed"
  args = [*TINY, *SWEEP, f"--workdir={workdir}", "--config.num_steps=1000000",
          "--config.eval_every=1000000"]
  logs = [tmp_path / f"process_{i}.log" for i in range(2)]
  procs = _bare_processes(env, [args, args], logs, devices=2)
  try:
    deadline = time.time() + TIMEOUT
    while not (workdir / "checkpoints" / "20").is_dir():
      assert time.time() < deadline and all(p.poll() is None for p in procs), \
          logs[0].read_text()[-3000:]
      time.sleep(0.2)
    # The lock covers the group: a second group on this workdir stops at once, naming the PID.
    refused = _launch(env, [*args, "--resume"], 2, 1)
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert f"in use by process {procs[0].pid}" in refused.stderr, refused.stderr[-3000:]
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    procs[0].wait(timeout=120)
    stopped_after = time.time() - killed_at
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  err = logs[0].read_text()
  assert stopped_after < 60, stopped_after
  assert procs[0].returncode == 1, err[-3000:]
  assert "lost contact with another process" in err and "Traceback" not in err, err[-3000:]
  assert "--resume" in err, err[-3000:]
  # Resume from step 20 (as if the kill had come right after that save) on the same process count.
  for step in (workdir / "checkpoints").iterdir():
    if step.name.isdigit() and int(step.name) > 20:
      shutil.rmtree(step)
  resumed = [a if a != "--config.num_steps=1000000" else "--config.num_steps=40" for a in args]
  _ok(_launch(env, [*resumed, "--resume"], 2, 2))
  _compare(workdir, two_by_two[0], slice(None), atol=1e-6, steps=(40,))


def test_processes_that_disagree_are_refused_at_start_up(env, tmp_path):
  workdir = tmp_path / "mismatch"
  base = [*TINY, *FORTY, "--seeds=0", f"--workdir={workdir}"]
  logs = [tmp_path / f"process_{i}.log" for i in range(2)]
  procs = _bare_processes(env, [[*base, f"--config.agent.critic_lr={lr}"] for lr in (3e-4, 1e-3)],
                          logs)
  try:
    for p in procs:
      p.wait(timeout=TIMEOUT)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, err in zip(procs, [log.read_text() for log in logs]):
    assert p.returncode == 1, err[-3000:]
    assert "process 1 differs from process 0 in config.agent.critic_lr" in err, err[-3000:]
    assert "Traceback" not in err
  assert not (workdir / "config.json").exists()
