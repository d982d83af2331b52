"""Home-made D4RL-style sparse-reward maze datasets on Gymnasium-Robotics' PointMaze_UMaze-v3.

D4RL's maze2d data came from a waypoint planner steering a point mass through the maze; the
project makes its own the same way (no dataset can be downloaded here), stored as Minari datasets
``cql_jax/pointmaze/<kind>-v0`` that the normal loader reads. They are the project's cheap
sparse-reward task, the kind of reward Cal-QL's return-to-go handling is for.

PointMaze_UMaze-v3 facts used below (the environment's defaults, recorded with the data):
observation dict ``observation`` [x, y, vx, vy], ``achieved_goal`` [x, y], ``desired_goal``
[gx, gy]; action a force [fx, fy] in [-1, 1]²; the 5×5 U-maze map of 1 m cells (walls on the
border and the middle row's left three cells); each episode resets the ball and the goal in two
different open cells, with uniform noise of ±0.25 m; reward 1 at every step within 0.45 m of the
goal, else 0 (sparse); the task is continuing (reaching the goal ends nothing) and episodes are
truncated at 300 steps. A return is therefore the number of steps spent at the goal.

Kinds (policy names as recorded in the metadata):
  random         uniform random force.
  medium         the expert, but each step with probability 0.9 a uniform random force instead
                 (normalised score about 30: it reaches the goal late, or not at all).
  expert         the expert plus N(0, 0.1²) force noise (about 100).
  medium-replay  a mock replay buffer: 10 equal consecutive blocks whose random-action
                 probability falls linearly from 1.0 to 0.9.
  medium-expert  first half medium episodes, second half expert episodes.
"""
from __future__ import annotations

import collections
import logging
from typing import Dict, Optional, Sequence

import numpy as np

from cql_jax.makers import generate

ENV_ID = "PointMaze_UMaze-v3"
NAMESPACE = "cql_jax/pointmaze"
VERSION = 0
KINDS = generate.D4RL_KINDS
# Gymnasium-Robotics' U_MAZE (1: wall), cells of 1 m, row 0 at the top (+y).
MAZE = np.array([[1, 1, 1, 1, 1],
                 [1, 0, 0, 0, 1],
                 [1, 1, 1, 0, 1],
                 [1, 0, 0, 0, 1],
                 [1, 1, 1, 1, 1]])
REF_SEED = 20_200_200
MEDIUM_RANDOM_PROB = 0.9
EXPERT_NOISE_STD = 0.1
REPLAY_BLOCKS = 10
DEFAULT_EPISODES = 300  # 90,000 transitions per kind.
# PD gains of the waypoint follower; the expert is not sensitive to them (kp in 5–20 and kd in
# 1–2 moved its mean return over 32 episodes between 234 and 244 of the 300 steps).
_KP, _KD = 10.0, 1.0

_log = logging.getLogger(__name__)


def dataset_id(kind: str, version: int = VERSION) -> str:
  """Minari id of a PointMaze dataset kind, e.g. ``cql_jax/pointmaze/medium-v0``."""
  if kind not in KINDS:
    raise ValueError(f"unknown PointMaze dataset kind '{kind}'; choose from {KINDS}.")
  return f"{NAMESPACE}/{kind}-v{version}"


def _next_cells(maze: np.ndarray) -> np.ndarray:
  """[R, C, R, C, 2]: from cell (r, c) towards goal cell (gr, gc), the next cell of a shortest
  path through open cells (the goal cell itself when there; walls map to themselves)."""
  rows, cols = maze.shape
  out = np.zeros((rows, cols, rows, cols, 2), np.int64)
  out[..., 0] = np.arange(rows)[:, None, None, None]
  out[..., 1] = np.arange(cols)[None, :, None, None]
  steps = ((1, 0), (-1, 0), (0, 1), (0, -1))
  for goal in zip(*np.nonzero(maze == 0)):
    dist = {goal: 0}
    queue = collections.deque([goal])
    while queue:
      r, c = queue.popleft()
      for dr, dc in steps:
        n = (r + dr, c + dc)
        if 0 <= n[0] < rows and 0 <= n[1] < cols and maze[n] == 0 and n not in dist:
          dist[n] = dist[(r, c)] + 1
          queue.append(n)
    for cell, d in dist.items():
      if d:
        out[cell + goal] = min(((cell[0] + dr, cell[1] + dc) for dr, dc in steps
                                if (cell[0] + dr, cell[1] + dc) in dist), key=dist.get)
  return out


_NEXT = _next_cells(MAZE)


def cell_of(xy: np.ndarray) -> tuple:
  """(row, col) int arrays [B] of the cells holding positions xy [B, 2] (metres)."""
  rows, cols = MAZE.shape
  col = np.clip(np.floor(xy[:, 0] + cols / 2), 0, cols - 1).astype(np.int64)
  row = np.clip(np.floor(rows / 2 - xy[:, 1]), 0, rows - 1).astype(np.int64)
  return row, col


def cell_centre(row: np.ndarray, col: np.ndarray) -> np.ndarray:
  """[B, 2] positions (metres) of the centres of cells (row, col)."""
  rows, cols = MAZE.shape
  return np.stack([col + 0.5 - cols / 2, rows / 2 - row - 0.5], axis=-1).astype(np.float32)


def expert_policy(obs: dict, rng: Optional[np.random.Generator] = None) -> np.ndarray:
  """Waypoint follower (deterministic): a PD force towards the centre of the next cell on a
  shortest path to the goal's cell, and towards the goal itself once in that cell.

  Args:
    obs: dict of float32 arrays, "observation" [B, 4], "desired_goal" [B, 2].
    rng: unused (kept for the Policy signature).

  Returns:
    float32 [B, 2] forces in [-1, 1].
  """
  del rng
  pos, vel = obs["observation"][:, :2], obs["observation"][:, 2:4]
  goal = obs["desired_goal"]
  row, col = cell_of(pos)
  goal_row, goal_col = cell_of(goal)
  nxt = _NEXT[row, col, goal_row, goal_col]
  there = (row == goal_row) & (col == goal_col)
  waypoint = np.where(there[:, None], goal, cell_centre(nxt[:, 0], nxt[:, 1]))
  force = _KP * (waypoint - pos) - _KD * vel
  return np.clip(force, -1.0, 1.0).astype(np.float32)


def random_policy(obs: dict, rng: np.random.Generator) -> np.ndarray:
  """Uniform random force, float32 [B, 2] in [-1, 1]."""
  return rng.uniform(-1.0, 1.0, size=(obs["observation"].shape[0], 2)).astype(np.float32)


def degraded_expert(random_prob: float = 0.0, noise_std: float = 0.0) -> generate.Policy:
  """The expert with Gaussian force noise and per-step replacement by a uniform random force."""
  return generate.degrade(expert_policy, random_policy, -1.0, 1.0, random_prob, noise_std)


_DESCRIPTIONS = {
    "random": "Every action is a uniform random force in [-1, 1]^2.",
    "medium": (f"Medium policy: the scripted expert, but at each step with probability "
               f"{MEDIUM_RANDOM_PROB} the force is replaced by a uniform random force."),
    "expert": (f"Expert policy: the scripted expert plus N(0, {EXPERT_NOISE_STD}^2) force noise, "
               "clipped to [-1, 1]."),
    "medium-replay": (
        f"Mock replay buffer up to the medium policy: episodes in {REPLAY_BLOCKS} consecutive "
        "equal blocks; block k uses the scripted expert with per-step random-action probability "
        f"linspace(1.0, {MEDIUM_RANDOM_PROB}, {REPLAY_BLOCKS})[k] (1.0 = uniform random)."),
    "medium-expert": ("First half of the episodes from the medium policy (random-action "
                      f"probability {MEDIUM_RANDOM_PROB}), second half from the expert policy "
                      f"(noise std {EXPERT_NOISE_STD})."),
}
_EXPERT_TEXT = (
    "Scripted expert: breadth-first shortest paths over the maze's cells; a PD force "
    f"{_KP}*(waypoint - position) - {_KD}*velocity, clipped to [-1, 1], towards the centre of the "
    "next cell on the path, or towards the goal once in the goal's cell.")


def _register_env() -> None:
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  import gymnasium_robotics  # pylint: disable=import-outside-toplevel
  gym.register_envs(gymnasium_robotics)


def make_episodes(kind: str, num_episodes: int, seed: int) -> list:
  """Rolls out the behaviour policy of `kind`; deterministic given `seed`.

  Returns:
    List of `num_episodes` EpisodeBuffers (ids 0..E-1) of 300 steps: dict observations
    ("achieved_goal" [301, 2], "desired_goal" [301, 2], "observation" [301, 4]), actions
    float32 [300, 2] in [-1, 1].
  """
  _register_env()
  return generate.d4rl_episodes(
      ENV_ID, kind, num_episodes, seed, random=random_policy,
      medium=degraded_expert(random_prob=MEDIUM_RANDOM_PROB),
      expert=degraded_expert(noise_std=EXPERT_NOISE_STD),
      replay_policy=lambda p: degraded_expert(random_prob=p), replay_blocks=REPLAY_BLOCKS,
      medium_random_prob=MEDIUM_RANDOM_PROB)


def reference_scores(num_episodes: int = 100) -> tuple:
  """(ref_min, ref_max): mean returns of the uniform random policy and of the noiseless expert
  over `num_episodes` episodes each, seeded by REF_SEED."""
  _register_env()
  return generate.reference_scores(ENV_ID, random_policy, expert_policy, num_episodes, REF_SEED)


def ensure_pointmaze_datasets(kinds: Sequence[str] = KINDS, num_episodes: Optional[int] = None,
                              seed: int = 0, ref_episodes: int = 100,
                              version: int = VERSION) -> Dict[str, dict]:
  """Generates the PointMaze datasets that are not stored locally yet (existing ids are kept).

  Args:
    kinds: subset of KINDS.
    num_episodes: episodes per dataset (300 transitions each); None: DEFAULT_EPISODES.
    seed: dataset seed (policy noise and reset seeds).
    ref_episodes: episodes per reference policy for ref_min/ref_max.
    version: dataset version suffix.

  Returns:
    {dataset_id: info}: generate.ensure_datasets' (whether it was made, its wall time, returns,
    references and size).
  """
  ids = {kind: dataset_id(kind, version) for kind in kinds}

  def describe(kind: str, n: int) -> str:
    return (f"{_DESCRIPTIONS[kind]} {_EXPERT_TEXT} Environment {ENV_ID} with its defaults: "
            "sparse reward (1 within 0.45 m of the goal), continuing task, 300-step episodes "
            "that only truncate; ball and goal reset per episode in two different open cells. "
            f"{n} episodes, seed {seed}; reset seeds and policy noise come from numpy "
            "default_rng([seed, kind index]). ref_min_score = mean return of the uniform random "
            f"policy and ref_max_score = mean return of the noiseless expert, {ref_episodes} "
            f"episodes each (seed {REF_SEED}). Generated by cql_jax.makers.pointmaze.")

  return generate.ensure_datasets(
      ENV_ID, ids, episodes=lambda kind: DEFAULT_EPISODES if num_episodes is None else num_episodes,
      make_episodes=lambda kind, n: make_episodes(kind, n, seed),
      reference_scores=lambda: reference_scores(ref_episodes), describe=describe,
      algorithm="scripted-pointmaze", seed=seed, log=_log)
