"""AntMaze on Minari `D4RL/antmaze/<maze>-v1`, with the JaxCQL/CORL recipe (REFERENCE.md §1, §5).

Variants: umaze, umaze-diverse, medium-play, medium-diverse, large-play, large-diverse.
Recipe: reward r·10 − 5 (sparse 0/1 goal reward → −5/+5), Lagrangian α′ with w = 5 and τ = 0.8
(CORL; JaxCQL's young-geng/CQL#2 recipe uses τ = 0.2), log α′₀ = 1 (JaxCQL/CORL init e), Q 3x256
(JaxCQL; CORL 5x256), π lr 1e-4, Q lr 3e-4, 40k BC warm-start steps, 1M steps, 100 evaluation
episodes, max-backup. Minari AntMaze was re-collected on Gymnasium-Robotics AntMaze_*-v4
(continuing task), so D4RL scores are only a rough guide. Not in our agent yet:
`cql_clip_diff_min=-200`, orthogonal init and a state-independent σ.
Observation: the ant's x, y (`achieved_goal`; Gymnasium-Robotics keeps them out of the 27-d
`observation`), then `observation`, then the 2-d `desired_goal`: D4RL's 29-d [x, y, qpos[2:], qvel]
followed by the goal, 31-d in all.
"""
from __future__ import annotations

import ml_collections

from cql_jax.configs import base

MAZES = ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")


def get_config(variant: str = "umaze") -> ml_collections.ConfigDict:
  c = base.variant_config("antmaze", variant, MAZES, "D4RL/antmaze/{variant}-v1")
  c.data.reward_scale = 10.0
  c.data.reward_bias = -5.0
  c.data.obs_keys = ("achieved_goal", "observation", "desired_goal")
  base.use_reference_recipe(c, cql_weight=5.0)
  c.agent.bc_steps = 40_000
  c.agent.max_backup = True       # JaxCQL/CORL antmaze recipe: max over N policy samples.
  c.agent.cql.lagrange = True
  c.agent.cql.target_gap = 0.8
  c.agent.cql.init_log_alpha_prime = 1.0
  c.agent.cql.alpha_prime_lr = 3e-4
  c.eval_every = 50_000          # 100 episodes of up to 700-1000 steps are costly.
  c.eval_episodes = 100
  c.lock()
  return c
