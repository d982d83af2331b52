"""PointMaze U-maze: the project's sparse-reward task, on its own data `cql_jax/pointmaze/<kind>-v0`.

Variants are the kinds random, medium, expert, medium-replay, medium-expert, e.g.
--config=cql_jax/configs/pointmaze.py:medium-replay. The data are made on demand, in seconds on a
free core, by cql_jax.makers.pointmaze (a scripted waypoint follower, as D4RL made maze2d), in
Gymnasium-Robotics' PointMaze_UMaze-v3: reward 1 within 0.45 m of the goal and 0 elsewhere, a
continuing task with 300-step episodes, ball and goal reset per episode. Evaluation runs in the
same environment (a new goal every episode), so a policy must read the goal from its input.

  observation  ("observation", "desired_goal"): [x, y, vx, vy, gx, gy]. "achieved_goal" repeats
               [x, y] and is left out.
  reward       r·10 − 5, the {0, 1} reward becoming {−5, +5}: the transform Cal-QL's and CORL's
               AntMaze recipes use, so that staying away from the goal costs something.
  return-to-go data.sparse_failure_reward = −5: an episode that never reaches the goal gets
               −5/(1 − γ) at every step (Cal-QL's reference value for sparse tasks), not the
               truncated sum of its −5s.
  agent        base.short_budget_agent_config (two layers of 64 units, critic lr 1e-3, fixed
               α = 5), with 50k gradient steps, the budget control.py chose on its dev datasets
               (2.5 critic time constants at Polyak 0.005). Not tuned on this task.
"""
from __future__ import annotations

import ml_collections

from cql_jax.configs import base
from cql_jax.makers import pointmaze

OBS_KEYS = ("observation", "desired_goal")


def get_config(variant: str = "medium-replay") -> ml_collections.ConfigDict:
  if variant not in pointmaze.KINDS:
    raise ValueError(f"unknown pointmaze variant '{variant}'; choose one of "
                     f"{', '.join(pointmaze.KINDS)} (e.g. --config=cql_jax/configs/pointmaze.py:"
                     "medium-replay).")
  c = base.get_config()
  c.dataset_id = pointmaze.dataset_id(variant)
  c.config_arg = f"cql_jax/configs/pointmaze.py:{variant}"
  c.data.obs_keys = OBS_KEYS
  c.data.reward_scale = 10.0
  c.data.reward_bias = -5.0
  c.data.sparse_failure_reward = -5.0
  c.agent = base.short_budget_agent_config(64)
  c.num_steps = 50_000
  c.eval_every = 5_000
  c.checkpoint_every = 10_000
  c.eval_episodes = 20
  # How a missing dataset is made (ensure_pointmaze_datasets arguments; None: its default).
  c.generation = ml_collections.ConfigDict()
  c.generation.num_episodes = ml_collections.config_dict.placeholder(int)
  c.generation.ref_episodes = 100
  c.generation.seed = 0
  c.lock()
  return c
