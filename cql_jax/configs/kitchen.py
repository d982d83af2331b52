"""Franka Kitchen (complete, partial, mixed) on Minari `D4RL/kitchen/<kind>-v2`.

Recipe: none of the public CQL codes ships a Kitchen recipe (the official code's README covers
Gym MuJoCo and AntMaze, CORL's CQL configs stop at AntMaze/Adroit/Maze2d), and the paper (Section
4) tunes α by Lagrangian dual descent on Kitchen with thresholds in an appendix we do not have.
We use the official code's Gym MuJoCo recipe (aviralkumar2907/CQL README and
d4rl/examples/cql_mujoco_new.py): fixed α = 5 (--min_q_weight=5.0 --lagrange_thresh=-1.0),
networks 3×256, π lr 1e-4, Q lr 3e-4, temperature lr 1e-4, no max-backup, no BC warm-start,
deterministic backup, batch 256, 1M gradient steps. Paper scores (on an older kitchen dataset):
complete 43.8, partial 49.8, mixed 51.0.

Observation: Minari's `observation` key only, 59-d (robot joint positions 9 and velocities 9,
object positions 21 and velocities 20). The goal keys hold the same fixed target configuration of
the dataset's four tasks in every episode, so they carry no signal. D4RL's 60-d observation was
robot and object positions (9 + 21) and that fixed 30-d goal (d4rl kitchen_multitask_v0.py
_get_obs), without velocities.

Where Minari's data differ from D4RL's (minari-dataset-generation-scripts
scripts/D4RL/kitchen/create_franka_dataset.py):
  - re-simulated in Gymnasium-Robotics FrankaKitchen-v1 from the teleoperation logs (every 40th
    frame), with tasks microwave, kettle, light switch, slide cabinet (complete, partial) or
    microwave, kettle, bottom burner, light switch (mixed);
  - recorded with remove_task_when_completed=False and terminate_on_tasks_completed=False, so a
    step's reward is the number of those tasks currently in their goal state and episodes only
    truncate (280 steps for complete, 450 for partial and mixed). D4RL rewarded each task once,
    when completed, and ended the episode when all four were (return 0-4, kitchen_envs.py). The
    stored spec is also the evaluation environment, so evaluation returns sum per-step counts
    and are normalised with Minari's reference scores, not D4RL's 0-4.
Gymnasium-Robotics 1.4.2's Kitchen fails to build on MuJoCo >= 3.12 (an enum comparison in its
joint accessors); cql_jax.envs.robotics patches those accessors before building it, only where
the library's own accessor fails, so it trains and evaluates on the pinned MuJoCo 4.
"""
from __future__ import annotations

import ml_collections

from cql_jax.configs import base

KINDS = ("complete", "partial", "mixed")
ENV_ID = "FrankaKitchen-v1"


def get_config(variant: str = "partial") -> ml_collections.ConfigDict:
  c = base.variant_config("kitchen", variant, KINDS, "D4RL/kitchen/{variant}-v2")
  c.env_id = ENV_ID  # only for data that stores no environment; Minari's stored spec wins.
  c.data.obs_keys = ("observation",)
  base.use_reference_recipe(c, cql_weight=5.0)  # 3×256, π lr 1e-4, Q lr 3e-4, α lr 1e-4, 1M.
  c.agent.cql.lagrange = False
  c.agent.max_backup = False
  c.agent.bc_steps = 0
  c.eval_every = 50_000
  c.lock()
  return c
