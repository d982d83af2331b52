"""Metric sinks behind one small protocol: jsonl lines, TensorBoard events, Weights & Biases.

Every jsonl record is one line written with a single os.write on an O_APPEND descriptor, so a
process killed at any moment leaves only whole lines (a partial line would need the kernel to stop
inside one write to a regular file). Whole-file results go through write-to-temp + os.replace.

A writer takes write(step, kind, metrics) with `kind` "train" or "eval" and `metrics` mapping
names ("critic/loss", "eval/return") to a scalar or to per-seed values [S]; `make_writers` builds
the set a run uses and `MultiWriter` fans one call out to all of them.
"""
from __future__ import annotations

import json
import os
import pathlib
import uuid
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence

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


class Writer(Protocol):
  """What the runner logs through. metrics: name -> scalar or per-seed array [S]."""

  def write(self, step: int, kind: str, metrics: Mapping[str, Any]) -> None: ...

  def flush(self) -> None: ...

  def close(self) -> None: ...


def _tag(kind: str, name: str) -> str:
  return name if "/" in name else f"{kind}/{name}"


def _run_names(seeds: Sequence[int], run_names: Optional[Sequence[str]]) -> List[str]:
  """One name per entry of a metric's [S] axis: run_names (e.g. a sweep's members) or seed_<s>."""
  return list(run_names) if run_names is not None else [f"seed_{int(s)}" for s in seeds]


class MetricsJsonl:
  """metrics.jsonl: {"step", "kind", "seeds", <name>: value or [S] list} per write.

  run_names, when given (a sweep's members, one per entry of the [S] axis), go in as "members".
  """

  def __init__(self, workdir, seeds: Sequence[int], run_names: Optional[Sequence[str]] = None):
    self.seeds = [int(s) for s in seeds]
    self.members = None if run_names is None else list(run_names)
    self._lines = JsonlWriter(pathlib.Path(workdir) / METRICS_FILE)

  def write(self, step: int, kind: str, metrics: Mapping[str, Any]) -> None:
    record = {"step": int(step), "kind": kind, "seeds": self.seeds}
    if self.members is not None:
      record["members"] = self.members
    record.update({k: _plain(v) for k, v in metrics.items()})
    self._lines.write(record)

  def flush(self) -> None:
    pass  # every line is already in the kernel's hands.

  def close(self) -> None:
    self._lines.close()


class TensorBoardWriter:
  """One event directory per seed (tb/seed_<s>/, or tb/<run name>/) plus tb/mean/.

  Per-seed values go to their seed's directory as "<kind>/<name>"; eval metrics and scalars also
  go to tb/mean. purge_step: on resume, TensorBoard hides events at or after this step that the
  interrupted run wrote.
  """

  def __init__(self, workdir, seeds: Sequence[int], purge_step: Optional[int] = None,
               run_names: Optional[Sequence[str]] = None):
    from tensorboardX import SummaryWriter  # local: heavy import, and optional for readers.
    self.names = _run_names(seeds, run_names)
    root = pathlib.Path(workdir) / "tb"
    self._tb = {name: SummaryWriter(str(root / name), purge_step=purge_step)
                for name in self.names + ["mean"]}

  def write(self, step: int, kind: str, metrics: Mapping[str, Any]) -> None:
    for name, value in metrics.items():
      value = np.asarray(value, np.float64)
      tag = _tag(kind, name)
      if value.ndim == 1:
        for name, v in zip(self.names, value):
          self._tb[name].add_scalar(tag, float(v), step)
        if kind == "eval":
          self._tb["mean"].add_scalar(tag, float(value.mean()), step)
      else:
        self._tb["mean"].add_scalar(tag, float(value), step)

  def flush(self) -> None:
    for w in self._tb.values():
      w.flush()

  def close(self) -> None:
    for w in self._tb.values():
      w.close()


WANDB_DIR = "wandb"
_WANDB_ID_FILE = "run_id"


def wandb_available() -> bool:
  try:
    import wandb  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True


class WandbWriter:
  """One Weights & Biases run per workdir, offline by default (`wandb sync <workdir>/wandb` later).

  Per-seed values are logged as "seed_<s>/<kind>/<name>" (or "<run name>/...") and their mean
  as "<kind>/<name>", at the gradient step. The run id is kept in <workdir>/wandb/run_id so a resumed run continues the
  same W&B run. Needs the `wandb` package (the [wandb] extra).
  """

  def __init__(self, workdir, seeds: Sequence[int], config: Optional[dict] = None,
               project: str = "cql_jax", mode: str = "offline", name: Optional[str] = None,
               run_names: Optional[Sequence[str]] = None):
    import wandb  # local: optional dependency.
    self.names = _run_names(seeds, run_names)
    root = pathlib.Path(workdir) / WANDB_DIR
    root.mkdir(parents=True, exist_ok=True)
    id_file = root / _WANDB_ID_FILE
    if id_file.exists():
      run_id = id_file.read_text().strip()
    else:
      run_id = uuid.uuid4().hex[:12]
      atomic_write_text(id_file, run_id + "\n")
    self._run = wandb.init(project=project, dir=str(root), mode=mode, id=run_id, resume="allow",
                           config=config, name=name or pathlib.Path(workdir).name,
                           settings=wandb.Settings(silent=True, console="off"))

  def write(self, step: int, kind: str, metrics: Mapping[str, Any]) -> None:
    row = {}
    for name, value in metrics.items():
      value = np.asarray(value, np.float64)
      tag = _tag(kind, name)
      if value.ndim == 1:
        row.update({f"{n}/{tag}": float(v) for n, v in zip(self.names, value)})
        row[tag] = float(value.mean())
      else:
        row[tag] = float(value)
    self._run.log(row, step=int(step))

  def flush(self) -> None:
    pass

  def close(self) -> None:
    if self._run is not None:
      self._run.finish()
      self._run = None


class MultiWriter:
  """Fans each call out to several writers (jsonl first, so it holds a row even if another fails)."""

  def __init__(self, writers: Sequence[Writer]):
    self.writers = list(writers)

  def write(self, step: int, kind: str, metrics: Mapping[str, Any]) -> None:
    for w in self.writers:
      w.write(step, kind, metrics)

  def flush(self) -> None:
    for w in self.writers:
      w.flush()

  def close(self) -> None:
    errors = []
    for w in self.writers:
      try:
        w.close()
      except Exception as e:  # pylint: disable=broad-except
        errors.append(e)
    if errors:
      raise errors[0]


def make_writers(workdir, seeds: Sequence[int], *, purge_step: Optional[int] = None,
                 tensorboard: bool = True, wandb: bool = False, wandb_project: str = "cql_jax",
                 wandb_mode: str = "offline", config: Optional[dict] = None,
                 run_names: Optional[Sequence[str]] = None) -> MultiWriter:
  """metrics.jsonl always; TensorBoard and W&B as asked (W&B needs `wandb` importable).

  run_names: a name per entry of the metrics' [S] axis (default seed_<s>), e.g. a sweep's
  members. A process that must write nothing (a multi-host run's non-primary hosts) uses
  MultiWriter([]) instead.
  """
  if wandb and not wandb_available():
    raise ImportError("config.log.wandb=True needs the wandb package: pip install "
                      "'cql_jax[wandb]' (or set --config.log.wandb=False).")
  out = [MetricsJsonl(workdir, seeds, run_names)]
  try:
    if tensorboard:
      out.append(TensorBoardWriter(workdir, seeds, purge_step, run_names))
    if wandb:
      out.append(WandbWriter(workdir, seeds, config, wandb_project, wandb_mode,
                             run_names=run_names))
  except BaseException:
    MultiWriter(out).close()
    raise
  return MultiWriter(out)
