"""Orbax checkpoints of the (seed-stacked) train state plus the index of the next chunk to run.

Orbax writes each step into a temporary directory and renames it when complete, so a process
killed mid-save leaves a tmp directory that is never listed as a step (and is removed by the next
manager, cleanup_tmp_directories). Deleting a step beyond `max_to_keep` is not atomic in the same
way: a process killed while orbax removes its files leaves a step directory that is listed but
cannot be read (seen: a step holding only its "state"). So old steps are first renamed into
TRASH, which is not a step, and emptied there. Saves are synchronous: the training chunk donates
the state's buffers, so they must be fully read before the next chunk runs.
"""
from __future__ import annotations

import pathlib
import shutil
from typing import Any, Optional, Tuple

import orbax.checkpoint as ocp


# Where steps beyond max_to_keep go (one rename) before their files are removed.
TRASH = "deleted"


class Checkpointer:
  """Keeps the last `max_to_keep` checkpoints under `directory`, named by gradient step."""

  def __init__(self, directory, max_to_keep: int):
    if max_to_keep < 1:
      raise ValueError(f"keep_checkpoints must be >= 1, got {max_to_keep}.")
    self.directory = pathlib.Path(directory).resolve()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False,
        cleanup_tmp_directories=True, todelete_subdir=TRASH)
    self._manager = ocp.CheckpointManager(self.directory, options=options)
    self._empty_trash()  # what a killed process was removing.

  def _empty_trash(self) -> None:
    shutil.rmtree(self.directory / TRASH, ignore_errors=True)

  def all_steps(self) -> list:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves `state` (any pytree of arrays) and JSON `meta` (e.g. {"next_chunk": 5}) at `step`."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()
    self._empty_trash()

  def restore(self, target: Any, step: Optional[int] = None) -> Tuple[Any, dict]:
    """(state, meta) at `step` (default latest); `target` gives the state's structure and shapes."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint under {self.directory}")
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"])

  def read_meta(self, step: Optional[int] = None) -> Optional[dict]:
    """The JSON meta saved at `step` (default latest) without reading the state; None if none."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored["meta"])

  def close(self) -> None:
    self._manager.close()
