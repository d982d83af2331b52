"""Metric sinks: an append-only jsonl file (crash-safe lines) and TensorBoard event files.

Every record is one line written with a single os.write on an O_APPEND descriptor, so a process
killed at any moment leaves only whole lines (a partial line would need the kernel to stop inside
one write to a regular file). Whole-file results go through write-to-temp + os.replace.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

METRICS_FILE = "metrics.jsonl"


def _plain(value: Any) -> Any:
  """NumPy/JAX scalars and arrays → floats and lists that json can write."""
  value = np.asarray(value)
  return value.item() if value.ndim == 0 else value.tolist()


def atomic_write_text(path, text: str) -> None:
  """Writes `text` to `path` so that readers see the old file or the new one, never a torn one."""
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def atomic_write_json(path, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_jsonl(path) -> List[dict]:
  """All records of a jsonl file; a missing file reads as empty."""
  path = pathlib.Path(path)
  if not path.exists():
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def truncate_jsonl(path, max_step: int) -> None:
  """Keeps only records with step ≤ max_step (a resume replays everything after its checkpoint).

  An unterminated last line (impossible with JsonlWriter, possible with other writers) is dropped.
  """
  path = pathlib.Path(path)
  if not path.exists():
    return
  kept = []
  with open(path) as f:
    for line in f:
      if line.endswith("\n") and json.loads(line).get("step", 0) <= max_step:
        kept.append(line)
  atomic_write_text(path, "".join(kept))


class JsonlWriter:
  """Appends one JSON object per line; each line is one write() system call."""

  def __init__(self, path):
    self.path = pathlib.Path(path)
    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

  def write(self, record: Dict[str, Any]) -> None:
    data = (json.dumps(record, sort_keys=True) + "\n").encode()
    written = os.write(self._fd, data)
    if written != len(data):  # only on a full disk; fail loudly rather than leave half a line.
      raise OSError(f"short write to {self.path} ({written} of {len(data)} bytes); disk full?")

  def close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None


class MetricWriter:
  """Per-member metrics to jsonl and TensorBoard (one event directory per member, plus `mean`).

  write(step, kind, metrics): metrics map names to scalars or per-member arrays [M]. The jsonl
  record is {"step", "kind", "seeds", <name>: value-or-[M] list}, plus "members" (the run
  names) for a sweep; TensorBoard gets "<kind>/<name>" per member, and the across-member mean
  under tb/mean for eval metrics.
  run_names: a sweep's member names (e.g. "cql.weight=5,seed_0"), which name the TensorBoard
    runs; default seed_<s> per seed.
  purge_step: on resume, TensorBoard hides events at or after this step from the killed run.
  """

  def __init__(self, workdir, seeds: Sequence[int], purge_step: Optional[int] = None,
               tensorboard: bool = True, run_names: Optional[Sequence[str]] = None):
    from tensorboardX import SummaryWriter  # local: heavy import, and optional for readers.
    workdir = pathlib.Path(workdir)
    self.seeds = [int(s) for s in seeds]
    self.members = None if run_names is None else list(run_names)
    self._names = self.members or [f"seed_{s}" for s in self.seeds]
    self.jsonl = JsonlWriter(workdir / METRICS_FILE)
    self._tb = {}
    if tensorboard:
      for name in self._names + ["mean"]:
        self._tb[name] = SummaryWriter(str(workdir / "tb" / name), purge_step=purge_step)

  def write(self, step: int, kind: str, metrics: Dict[str, Any], **extra) -> None:
    record = {"step": int(step), "kind": kind, "seeds": self.seeds, **extra}
    if self.members is not None:
      record["members"] = self.members
    record.update({k: _plain(v) for k, v in metrics.items()})
    self.jsonl.write(record)
    for name, value in metrics.items():
      value = np.asarray(value, np.float64)
      tag = name if "/" in name else f"{kind}/{name}"
      if value.ndim == 1:
        for run, v in zip(self._names, value):
          if run in self._tb:
            self._tb[run].add_scalar(tag, float(v), step)
        if kind == "eval" and "mean" in self._tb:
          self._tb["mean"].add_scalar(tag, float(value.mean()), step)
      elif "mean" in self._tb:
        self._tb["mean"].add_scalar(tag, float(value), step)

  def flush(self) -> None:
    for w in self._tb.values():
      w.flush()

  def close(self) -> None:
    self.jsonl.close()
    for w in self._tb.values():
      w.close()


class NullWriter:
  """MetricWriter's interface, writing nothing: the non-primary processes of a multi-host run."""

  def write(self, step: int, kind: str, metrics: Dict[str, Any], **extra) -> None:
    del step, kind, metrics, extra

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass
