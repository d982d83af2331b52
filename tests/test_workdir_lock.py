"""One live process per workdir: a live holder is refused by PID, a killed one's lock taken over."""
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from cql_jax import workdir_lock

ROOT = pathlib.Path(__file__).resolve().parents[1]
HOLD = ("import sys, time\nfrom cql_jax import workdir_lock\nworkdir_lock.acquire(sys.argv[1])\n"
        "print('locked', flush=True)\ntime.sleep(600)\n")


def _holder(workdir):
  proc = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == "locked"
  return proc


def test_live_lock_is_refused_naming_its_pid(tmp_path):
  proc = _holder(tmp_path)
  try:
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"in use by process {proc.pid}:"):
      workdir_lock.acquire(tmp_path)
    assert (tmp_path / workdir_lock.LOCK_FILE).read_text().strip() == str(proc.pid)
  finally:
    proc.kill()
    proc.wait()


def test_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
  proc = _holder(tmp_path)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  with pytest.raises(ProcessLookupError):
    os.kill(proc.pid, 0)
  with caplog.at_level("WARNING", logger="cql_jax.workdir_lock"):
    with workdir_lock.hold(tmp_path):
      assert (tmp_path / workdir_lock.LOCK_FILE).read_text().strip() == str(os.getpid())
  assert any(f"left by process {proc.pid}" in m for m in caplog.messages), caplog.messages
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()
  # Released: the next holder gets it without a takeover warning.
  caplog.clear()
  with caplog.at_level("WARNING", logger="cql_jax.workdir_lock"):
    with workdir_lock.hold(tmp_path):
      pass
  assert caplog.messages == []


def test_two_acquires_in_one_process_are_refused_too(tmp_path):
  fd = workdir_lock.acquire(tmp_path)
  try:
    with pytest.raises(workdir_lock.WorkdirLockedError, match=str(os.getpid())):
      workdir_lock.acquire(tmp_path)
  finally:
    workdir_lock.release(tmp_path, fd)
