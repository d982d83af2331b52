"""One live process per run directory: an advisory lock file holding the owner's PID.

The lock is an flock(2) on `<workdir>/.lock`. The kernel drops it when its process exits for any
reason, SIGKILL included, so a lock file left behind by a killed run is stale by construction:
the next process locks it and takes over (logging the dead PID it found). The PID written inside
serves only the message that refuses a second process while the first one is alive.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pathlib

_log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class WorkdirLockedError(RuntimeError):
  """Another live process holds the run directory; the message names its PID."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by another user.
    return True
  return True


def _read_pid(fd: int):
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 64).decode(errors="replace").strip()
  return int(text) if text.isdigit() else None


def acquire(workdir) -> int:
  """Locks `workdir` (which must exist) for this process; returns the lock's file descriptor.

  Raises WorkdirLockedError naming the holder's PID when a live process holds it.
  """
  path = pathlib.Path(workdir) / LOCK_FILE
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      pid = _read_pid(fd)
      os.close(fd)
      who = f"process {pid}" if pid is not None else "another process"
      if pid is not None and not _pid_alive(pid):
        who += " (no longer running: a process it started still holds the lock)"
      raise WorkdirLockedError(
          f"{workdir} is in use by {who}: a run directory belongs to one live process. "
          f"Wait for it to finish (or stop it: kill {pid if pid is not None else '<pid>'}) before "
          "launching or resuming this run, or choose another --workdir.") from None
    # The holder we waited on may have unlinked the file after we opened it: then we hold a lock
    # on a name nobody else will open. Retry on the path's current file.
    try:
      same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
      same = False
    if not same:
      os.close(fd)
      continue
    previous = _read_pid(fd)
    if previous is not None and previous != os.getpid():
      _log.warning("taking over the stale lock of %s, left by process %d, which is no longer "
                   "running", workdir, previous)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.fsync(fd)
    return fd


def release(workdir, fd: int) -> None:
  """Removes the lock file and drops the lock (unlink first, so no one locks a dying name)."""
  with contextlib.suppress(FileNotFoundError):
    os.unlink(pathlib.Path(workdir) / LOCK_FILE)
  os.close(fd)


@contextlib.contextmanager
def hold(workdir):
  """Context manager: acquire(workdir) ... release."""
  fd = acquire(workdir)
  try:
    yield
  finally:
    release(workdir, fd)
