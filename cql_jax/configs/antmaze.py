"""AntMaze on Minari `D4RL/antmaze/<maze>-v1`, with CORL's CQL recipe or the official code's.

Variants "<maze>" (CORL's recipe) and "<maze>-official" (the official code's), maze one of
umaze, umaze-diverse, medium-play, medium-diverse, large-play, large-diverse; e.g.
--config=cql_jax/configs/antmaze.py:medium-play or antmaze.py:medium-play-official.

The paper (Section 4) tunes the CQL weight by Lagrangian dual descent on AntMaze; its values are
in an appendix we do not have, so the recipes are the public codes'.

CORL recipe (default): tinkoff-ai/CORL configs/offline/cql/antmaze/*_v2.yaml with
algorithms/offline/cql.py, the public CQL with published D4RL -v2 AntMaze scores:
  reward       r·10 − 5: the sparse {0, 1} goal reward becomes {−5, +5}.
  Lagrange     w = 5, τ = 0.8, log α′ starts at 1 (CORL's Scalar(1.0)), α′ Adam lr = Q lr.
               CORL and this agent both minimise α′·w·(gap − τ), so τ ports unchanged.
  backup       max over 10 actions from π(s′) of the critics' minimum (cql_max_target_backup),
               no entropy term.
  BC warm-start  none (bc_steps: 0).
  networks     π 3×256; Q 5×256 (q_n_hidden_layers: 5; CORL builds only its first critic that
               deep, an oversight, we use it for both). π lr 1e-4, Q lr 3e-4, temperature lr 1e-4.
  schedule     1M gradient steps, evaluation every 50k steps over 100 episodes.
  Not in this agent: CORL's orthogonal initialisation and cql_clip_diff_min = −200.
Official recipe ("-official"): aviralkumar2907/CQL d4rl/examples/cql_antmaze_new.py with its
README command (--lagrange_thresh=5.0 --min_q_weight=5.0 --policy_lr=1e-4 --min_q_version=3):
  reward       (r − 0.5)·4: {0, 1} becomes {−2, +2}.
  Lagrange     w = 5, threshold 5, log α′ starts at 0, α′ lr = Q lr. The official code minimises
               α′·(w·gap − threshold), this agent α′·w·(gap − τ): τ = threshold / w = 1.
  backup       no max-backup (the script's --max_q_backup default), deterministic backup.
  BC warm-start  40k steps (policy_eval_start=40000).
  networks     3×256 both; π lr 1e-4, Q lr 3e-4.
  schedule     3M gradient steps (3000 epochs × 1000), our evaluation schedule as above.
JaxCQL's recipe (young-geng/CQL#2) differs again: τ = 0.2, π 2×256, Q 3×256, 40k BC steps,
state-independent σ, 1.2M steps.

Observation: ("achieved_goal", "observation", "desired_goal"), 31-d. In Gymnasium-Robotics the
ant's torso x, y is `achieved_goal`, not part of the 27-d `observation`; D4RL's 29-d observation
is [x, y, observation]. We add the goal because Minari's rewards depend on it: Minari collected
these datasets as a continuing task whose goal is drawn per episode from the maze's goal cells
(one fixed cell in umaze; minari-dataset-generation-scripts
scripts/D4RL/antmaze/create_antmaze_dataset.py), and each step's reward is 1 within 0.45 of that
episode's `desired_goal`. D4RL instead relabelled every
reward against the maze's one evaluation goal (D4RL scripts/generation/relabel_antmaze_rewards.py),
so its observation needed no goal. Without the goal, Minari's reward is not a function of the
state and the critic cannot tell the rewarded places apart.

Where Minari's data differ from D4RL's, so D4RL scores are a rough guide only:
  - recorded on Gymnasium-Robotics AntMaze_*-v4 (MuJoCo bindings) with a new goal-reaching
    policy, not on D4RL's mujoco-py ant;
  - no terminations: D4RL set a terminal where the ant reached the goal; Minari's episodes only
    truncate (at the 700- or 1000-step limit) and the ant keeps collecting reward while it
    stays at the goal;
  - the evaluation environment is the dataset's stored eval spec: same task, a fixed reset and
    goal cell, still continuing, so a return counts the steps spent at the goal (up to 700 on
    umaze, 1000 elsewhere) and is normalised with Minari's ref_min_score/ref_max_score (random
    and expert-policy returns), not D4RL's 0/1 success;
  - umaze, umaze-diverse: the stored eval maze is the training maze mirrored (its wall is on the
    other side; Farama-Foundation/Minari#304, open). The loader evaluates in the recording maze
    instead (cql_jax.data.maze_maps: umaze's own reset and goal cells; umaze-diverse's evaluation
    map mirrored back) and the start-up check compares the built maze with the recording one.
    Medium and large mazes keep their walls.
"""
from __future__ import annotations

import ml_collections

from cql_jax.configs import base

MAZES = ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")
RECIPES = ("corl", "official")
OFFICIAL_SUFFIX = "-official"
# D4RL's [x, y, 27-d observation], then the goal Minari's rewards are computed against.
OBS_KEYS = ("achieved_goal", "observation", "desired_goal")


def parse_variant(variant: str) -> tuple:
  """"medium-play-official" -> ("medium-play", "official"); "umaze" -> ("umaze", "corl")."""
  if variant.endswith(OFFICIAL_SUFFIX):
    return variant[:-len(OFFICIAL_SUFFIX)], "official"
  return variant, "corl"


def get_config(variant: str = "umaze") -> ml_collections.ConfigDict:
  maze, recipe = parse_variant(variant)
  if maze not in MAZES:
    raise ValueError(f"unknown antmaze variant '{variant}'; choose <maze> or "
                     f"<maze>{OFFICIAL_SUFFIX} with maze one of {', '.join(MAZES)}.")
  c = base.variant_config("antmaze", maze, MAZES, "D4RL/antmaze/{variant}-v1")
  c.config_arg = f"cql_jax/configs/antmaze.py:{variant}"
  c.data.obs_keys = OBS_KEYS
  base.use_reference_recipe(c, cql_weight=5.0)  # 3×256, π lr 1e-4, Q lr 3e-4, α lr 1e-4.
  c.agent.cql.lagrange = True
  c.agent.cql.alpha_prime_lr = c.agent.critic_lr
  if recipe == "corl":
    c.data.reward_scale = 10.0
    c.data.reward_bias = -5.0
    c.agent.critic_hidden_sizes = (256,) * 5
    c.agent.cql.target_gap = 0.8
    c.agent.cql.init_log_alpha_prime = 1.0
    c.agent.max_backup = True
    c.agent.bc_steps = 0
    c.num_steps = 1_000_000
  else:
    c.data.reward_scale = 4.0     # (r − 0.5)·4 = 4r − 2.
    c.data.reward_bias = -2.0
    c.agent.cql.target_gap = 5.0 / c.agent.cql.weight  # official threshold 5 in our units.
    c.agent.cql.init_log_alpha_prime = 0.0
    c.agent.max_backup = False
    c.agent.bc_steps = 40_000
    c.num_steps = 3_000_000
  c.eval_every = 50_000          # 100 episodes of 700-1000 steps are costly.
  c.eval_episodes = 100
  c.lock()
  return c
