"""The maze a maze dataset is evaluated in: the one its data was recorded in.

Gymnasium-Robotics' maze environments (AntMaze, PointMaze) take a `maze_map` keyword: a list of
rows whose cells are 1 (wall), 0 (free), "r" (reset cell), "g" (goal cell) or "c" (either).
A Minari dataset stores two specs: the one its data was recorded in and one for evaluation.
For Minari's D4RL/antmaze/umaze and umaze-diverse the stored evaluation map is the recording
maze mirrored left to right (its inner wall on the other side; Farama-Foundation/Minari#304,
open; minari-dataset-generation-scripts scripts/D4RL/antmaze/create_antmaze_dataset.py keeps
one EVAL_ENV_MAPS entry per maze size, and the umaze one is mirrored), so an evaluation there
measures a task the data never shows. The medium and large evaluation maps keep the recording
walls and only fix the reset and goal cells.

`reconcile_eval_spec` is applied to every Minari dataset when it is loaded:
  - the walls agree (or the specs hold no maze): the evaluation spec is kept;
  - the recording map fixes its own reset and goal cells (umaze: the data's one task): the
    evaluation uses the recording map itself;
  - otherwise, if mirroring the evaluation map (left-right, up-down or both) gives the recording
    walls: the mirrored evaluation map, so its reset and goal cells keep their places in the
    maze's structure (umaze-diverse);
  - otherwise the dataset is refused: no evaluation in that maze would measure the data's task.
`cql_jax.evaluation.check_eval_env` then compares the built environment's maze with the
recording map at start-up.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np

from cql_jax.data.errors import DatasetError

MAZE_KWARG = "maze_map"
_MIRRORS = (("left-right", lambda m: m[:, ::-1]), ("up-down", lambda m: m[::-1, :]),
            ("left-right and up-down", lambda m: m[::-1, ::-1]))


def walls(maze_map: Sequence[Sequence[Any]]) -> np.ndarray:
  """[rows, columns] bool: which cells of `maze_map` are walls (1 or "1")."""
  return np.asarray([[str(cell) == "1" for cell in row] for row in maze_map], bool)


def spec_maze_map(spec) -> Optional[list]:
  """The maze_map an EnvSpec builds: its own kwarg, else its registered default, else None."""
  if spec is None:
    return None
  maze_map = (spec.kwargs or {}).get(MAZE_KWARG)
  if maze_map is None:
    import gymnasium as gym  # pylint: disable=import-outside-toplevel
    registered = gym.registry.get(spec.id)
    maze_map = None if registered is None else (registered.kwargs or {}).get(MAZE_KWARG)
  return None if maze_map is None else [list(row) for row in maze_map]


def same_walls(a: Sequence[Sequence[Any]], b: Sequence[Sequence[Any]]) -> bool:
  wa, wb = walls(a), walls(b)
  return wa.shape == wb.shape and bool(np.array_equal(wa, wb))


def render(maze_map: Sequence[Sequence[Any]]) -> str:
  """One line per row: '#' wall, '.' free, r/g/c as stored; rows joined by '/'."""
  cell = lambda c: "#" if str(c) == "1" else ("." if str(c) == "0" else str(c))
  return "/".join("".join(cell(c) for c in row) for row in maze_map)


def _fixes_reset_and_goal(maze_map) -> bool:
  cells = {str(c) for row in maze_map for c in row}
  return "r" in cells and "g" in cells


def reconcile_eval_spec(eval_spec, data_spec, dataset_id: str):
  """(spec, note): the evaluation spec to use for a dataset recorded in `data_spec`.

  note is None when the stored evaluation spec is kept, else one sentence saying what changed
  and why (for the log). Rules in the module docstring.

  Raises:
    DatasetError: the evaluation maze's walls differ from the recording maze's in a way no
      mirror explains.
  """
  eval_map, data_map = spec_maze_map(eval_spec), spec_maze_map(data_spec)
  if eval_map is None or data_map is None or same_walls(eval_map, data_map):
    return eval_spec, None
  stored = (f"{dataset_id}'s stored evaluation maze {render(eval_map)} has other walls than the "
            f"maze its data was recorded in, {render(data_map)}")
  if _fixes_reset_and_goal(data_map):
    fixed = data_map
    how = "evaluating in the recording maze with its own reset and goal cells"
  else:
    arr = np.asarray([[str(c) for c in row] for row in eval_map], object)
    found = [(name, mirror(arr)) for name, mirror in _MIRRORS
             if same_walls(mirror(arr).tolist(), data_map)]
    if not found:
      raise DatasetError(
          f"{stored}, and no mirror of it matches, so no evaluation would measure the task the "
          "data shows. Evaluate in the recording environment instead: pass the recording "
          "spec's maze_map through config.env_kwargs with config.dataset_path data, or fix "
          "the dataset's eval_env_spec.")
    name, mirrored = found[0]
    fixed = [[int(c) if c in ("0", "1") else c for c in row] for row in mirrored.tolist()]
    how = f"evaluating in the stored maze mirrored {name}, which has the recording walls"
  kwargs = dict(eval_spec.kwargs or {}, **{MAZE_KWARG: fixed})
  return dataclasses.replace(eval_spec, kwargs=kwargs), f"{stored}; {how}: {render(fixed)}."
