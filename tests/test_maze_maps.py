"""AntMaze evaluates in the maze its data was recorded in (cql_jax.data.maze_maps)."""
import dataclasses
import warnings

import numpy as np
import pytest

from cql_jax import evaluation
from cql_jax.configs import antmaze
from cql_jax.data import maze_maps
from cql_jax.data import minari_io
from cql_jax.data.errors import DatasetError

gym = pytest.importorskip("gymnasium")
pytest.importorskip("gymnasium_robotics")
minari = pytest.importorskip("minari")
from cql_jax.envs import robotics  # noqa: E402  (needs gymnasium-robotics)

pytestmark = pytest.mark.filterwarnings("ignore")
R, G = "r", "g"

# What Minari stores for each AntMaze dataset the configs name, as its generation script
# (minari-dataset-generation-scripts scripts/D4RL/antmaze/create_antmaze_dataset.py) makes it:
# the recording environment, the recording maze when it is not that environment's default,
# and the evaluation maze written into the evaluation spec (one per maze size).
UMAZE_DATA = [[1, 1, 1, 1, 1], [1, G, 0, 0, 1], [1, 1, 1, 0, 1], [1, R, 0, 0, 1], [1, 1, 1, 1, 1]]
EVAL_MAPS = {
    "umaze": [[1, 1, 1, 1, 1], [1, 0, 0, R, 1], [1, 0, 1, 1, 1], [1, 0, 0, G, 1],
              [1, 1, 1, 1, 1]],
    "medium": [[1, 1, 1, 1, 1, 1, 1, 1], [1, R, 0, 1, 1, 0, 0, 1], [1, 0, 0, 1, 0, 0, 0, 1],
               [1, 1, 0, 0, 0, 1, 1, 1], [1, 0, 0, 1, 0, 0, 0, 1], [1, 0, 1, 0, 0, 1, 0, 1],
               [1, 0, 0, 0, 1, 0, G, 1], [1, 1, 1, 1, 1, 1, 1, 1]],
    "large": [[1] * 12, [1, R, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1], [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
              [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1], [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
              [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1], [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
              [1, 0, 0, 1, 0, 0, 0, 1, 0, G, 0, 1], [1] * 12],
}
STORED = {  # maze variant -> (recording env id, recording maze_map or None, evaluation map)
    "umaze": ("AntMaze_UMaze-v4", UMAZE_DATA, EVAL_MAPS["umaze"]),
    "umaze-diverse": ("AntMaze_UMaze-v4", None, EVAL_MAPS["umaze"]),
    "medium-play": ("AntMaze_Medium-v4", None, EVAL_MAPS["medium"]),
    "medium-diverse": ("AntMaze_Medium_Diverse_GR-v4", None, EVAL_MAPS["medium"]),
    "large-play": ("AntMaze_Large-v4", None, EVAL_MAPS["large"]),
    "large-diverse": ("AntMaze_Large_Diverse_GR-v4", None, EVAL_MAPS["large"]),
}


def _stored_specs(maze):
  env_id, data_map, eval_map = STORED[maze]
  robotics.register_robotics_envs()
  kwargs = dict(continuing_task=True, reset_target=False)
  if data_map is not None:
    kwargs["maze_map"] = data_map
  registered = gym.spec(env_id)
  data_spec = dataclasses.replace(registered, kwargs=dict(registered.kwargs, **kwargs))
  eval_spec = dataclasses.replace(data_spec, kwargs=dict(data_spec.kwargs, maze_map=eval_map))
  return data_spec, eval_spec


def _built_maze(spec):
  env = gym.make(spec)
  try:
    env.reset(seed=0)
    return [list(row) for row in env.unwrapped.maze.maze_map], env.unwrapped
  finally:
    env.close()


def _wall_cells(maze_map):
  return {(i, j) for i, row in enumerate(maze_map) for j, c in enumerate(row) if c == 1}


# --------------------------------------------------------------------------- rules, by hand

def test_walls_and_mirror_rules_on_hand_made_maps():
  data = [[1, 1, 1], [1, 0, 1], [1, 1, 0]]
  spec = gym.envs.registration.EnvSpec("Made-v0", kwargs={"maze_map": data})
  assert maze_maps.walls(data).sum() == 7 and maze_maps.same_walls(data, [[1, 1, 1], [1, R, 1],
                                                                          [1, 1, G]])
  # Same walls: kept as stored.
  same = dataclasses.replace(spec, kwargs={"maze_map": [[1, 1, 1], [1, R, 1], [1, 1, G]]})
  assert maze_maps.reconcile_eval_spec(same, spec, "d") == (same, None)
  # Mirrored left-right, recording map without fixed cells: mirrored back, r/g moved with it.
  mirrored = dataclasses.replace(spec, kwargs={"maze_map": [[1, 1, 1], [1, R, 1], [G, 1, 1]]})
  fixed, note = maze_maps.reconcile_eval_spec(mirrored, spec, "d")
  assert fixed.kwargs["maze_map"] == [[1, 1, 1], [1, R, 1], [1, 1, G]]
  assert "mirrored left-right" in note and "d's stored evaluation maze" in note
  # Recording map with its own reset and goal: that map.
  own = dataclasses.replace(spec, kwargs={"maze_map": [[1, 1, 1], [1, G, 1], [1, 1, R]]})
  assert maze_maps.reconcile_eval_spec(mirrored, own, "d")[0].kwargs["maze_map"] == \
      own.kwargs["maze_map"]
  # No mirror explains it: refused.
  other = dataclasses.replace(spec, kwargs={"maze_map": [[1, 0, 1], [1, 0, 1], [1, 1, 0]]})
  with pytest.raises(DatasetError, match="no mirror of it matches"):
    maze_maps.reconcile_eval_spec(other, spec, "d")
  # Not a maze: nothing to do.
  plain = gym.envs.registration.EnvSpec("Pendulum-v1")
  assert maze_maps.reconcile_eval_spec(plain, plain, "d") == (plain, None)


# --------------------------------------------------------------------------- every config id

def test_the_table_covers_every_antmaze_id_the_configs_name():
  assert set(STORED) == set(antmaze.MAZES)


@pytest.mark.parametrize("maze", antmaze.MAZES)
def test_evaluation_maze_is_the_recording_maze(maze):
  """For each AntMaze id the configs name, with the specs Minari stores: the environment built
  from the reconciled evaluation spec has the walls of the environment built from the recording
  spec, with one reset and one goal cell, both free; only the umaze evaluation maps needed it."""
  data_spec, eval_spec = _stored_specs(maze)
  stored_walls = _wall_cells(maze_maps.spec_maze_map(eval_spec))
  data_built, _ = _built_maze(data_spec)
  assert (stored_walls != _wall_cells(data_built)) == maze.startswith("umaze")
  spec, note = maze_maps.reconcile_eval_spec(eval_spec, data_spec,
                                             f"D4RL/antmaze/{maze}-v1")
  assert (note is not None) == maze.startswith("umaze")
  built, env = _built_maze(spec)
  assert _wall_cells(built) == _wall_cells(data_built)
  cells = [c for row in built for c in row]
  assert cells.count(R) == 1 and cells.count(G) == 1
  # The goal the environment draws lies in the goal cell, not in a wall.
  goal_cell = env.maze.cell_xy_to_rowcol(env.goal)
  assert built[goal_cell[0]][goal_cell[1]] == G
  if maze == "umaze":  # the data's own task: start bottom-left, goal top-left.
    assert built == UMAZE_DATA
  if maze == "umaze-diverse":  # Minari's evaluation task, mirrored into the data's maze.
    assert built[1][1] == R and built[3][1] == G


# --------------------------------------------------------------------------- at start-up

def test_loading_a_minari_antmaze_dataset_evaluates_in_its_maze(tmp_path, monkeypatch):
  """A tiny dataset recorded as Minari recorded umaze-diverse (default maze, evaluation spec
  mirrored): loading makes the evaluation spec the recording maze, the start-up check passes,
  and an evaluation environment forced back to the stored maze is refused."""
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
  dataset_id = "tiny/antmaze-umaze/mirrored-v0"
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    robotics.record_minari_dataset(
        dataset_id, "AntMaze_UMaze-v4", num_episodes=1, max_episode_steps=3,
        ref_min_score=0.0, ref_max_score=1.0,
        env_kwargs=dict(continuing_task=True, reset_target=False),
        eval_env_kwargs={"maze_map": EVAL_MAPS["umaze"]})
    stored = minari.load_dataset(dataset_id)
    assert maze_maps.spec_maze_map(minari_io.eval_env_spec(stored)) == EVAL_MAPS["umaze"]
    data = minari_io.load_dataset(dataset_id, obs_keys=antmaze.OBS_KEYS)
  recorded = _wall_cells(_built_maze(stored.env_spec)[0])
  assert _wall_cells(data.env_spec.kwargs["maze_map"]) == recorded
  assert _wall_cells(_built_maze(data.env_spec)[0]) == recorded
  evaluation.check_eval_env(data)
  back = dataclasses.replace(data, env_spec=minari_io.eval_env_spec(stored))
  with pytest.raises(DatasetError, match="would not measure the data's task"):
    evaluation.check_eval_env(back)
