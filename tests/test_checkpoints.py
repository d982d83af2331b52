"""Checkpoints: the kept steps read back whole, and steps beyond max_to_keep leave by a rename
into the trash, so a process killed while their files are removed leaves no unreadable step."""
import shutil

import numpy as np

from cql_jax import checkpoints


def _state(step):
  return {"w": np.full((3, 2), float(step), np.float32), "step": np.asarray(step, np.int32)}


def test_kept_steps_read_back_and_old_ones_leave_through_the_trash(tmp_path):
  ckpt = checkpoints.Checkpointer(tmp_path / "checkpoints", max_to_keep=2)
  for step in (10, 20, 30, 40):
    ckpt.save(step, _state(step), {"next_chunk": step // 10})
  assert ckpt.all_steps() == [30, 40]
  assert not (tmp_path / "checkpoints" / checkpoints.TRASH).exists()
  for step in (30, 40):
    state, meta = ckpt.restore(_state(0), step)
    np.testing.assert_array_equal(state["w"], np.full((3, 2), float(step), np.float32))
    assert int(state["step"]) == step and meta == {"next_chunk": step // 10}
  ckpt.close()


def test_a_removal_cut_short_leaves_no_step_and_is_finished_by_the_next_manager(tmp_path):
  root = tmp_path / "checkpoints"
  ckpt = checkpoints.Checkpointer(root, max_to_keep=2)
  for step in (10, 20):
    ckpt.save(step, _state(step), {"next_chunk": step // 10})
  ckpt.close()
  # What a kill during the removal of step 10 leaves: part of its files, in the trash.
  torn = root / checkpoints.TRASH / "10"
  shutil.copytree(root / "10", torn)
  shutil.rmtree(torn / "meta")
  again = checkpoints.Checkpointer(root, max_to_keep=2)
  assert not (root / checkpoints.TRASH).exists()
  assert again.all_steps() == [10, 20]
  state, meta = again.restore(_state(0))
  assert int(state["step"]) == 20 and meta == {"next_chunk": 2}
  again.close()


def test_old_steps_are_renamed_into_the_trash_not_removed_in_place(tmp_path, monkeypatch):
  monkeypatch.setattr(checkpoints.Checkpointer, "_empty_trash", lambda self: None)
  ckpt = checkpoints.Checkpointer(tmp_path / "checkpoints", max_to_keep=1)
  for step in (10, 20, 30):
    ckpt.save(step, _state(step), {"next_chunk": step // 10})
  trash = tmp_path / "checkpoints" / checkpoints.TRASH
  assert sorted(p.name for p in trash.iterdir()) == ["10", "20"]
  assert ckpt.all_steps() == [30]
  ckpt.close()
