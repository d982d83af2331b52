"""Adroit hand (pen, hammer, door, relocate × human, cloned, expert) on Minari `D4RL/<task>/<kind>-v2`.

Variants "<task>-<kind>", e.g. pen-human or door-cloned.

Recipe: tinkoff-ai/CORL configs/offline/cql/<task>/<kind>_v1.yaml with algorithms/offline/cql.py,
the public CQL with published D4RL Adroit scores: fixed α = 1 (cql_alpha: 1.0, no Lagrange),
networks 3×256 (π and Q), π lr 1e-4, Q lr 3e-4, temperature lr 1e-4, no max-backup, no BC
warm-start, deterministic backup, batch 256, 1M gradient steps, 10 evaluation episodes. Not in
this agent: CORL's observation normalisation (normalize: true, mean/std with eps 1e-3) and
orthogonal initialisation. Expect low scores: CORL's CQL averages 1.5 (best 13.7) over Adroit;
the importance-sampled penalty has high variance in 24-30-d action spaces.
The paper (Section 4) tunes α by Lagrangian dual descent on Adroit instead; its thresholds are in
an appendix we do not have, and the official code ships no Adroit script. Its learning rates
match: π lr from {3e-5, 1e-4, 3e-4} and no larger than Q's.

Observations are the environment's flat arrays (pen 45-d, door 39-d, hammer 46-d, relocate
39-d), the same layout as D4RL's. Where Minari's data differ from D4RL's:
  - Minari re-simulated D4RL's v1 episodes in Gymnasium-Robotics AdroitHand*-v1: each episode
    starts from D4RL's stored initial state and replays D4RL's actions open loop
    (minari-dataset-generation-scripts scripts/D4RL/adroit/recreate_adroit_*.py), so states and
    rewards are the new simulator's and can drift from D4RL's along an episode;
  - the episode limit is part of the stored environment spec, and so of evaluation: 200 steps
    for the expert sets, up to 300 (door) or 625 (hammer) for human and cloned sets, where
    D4RL evaluated 100 steps (pen) or 200 (the others, d4rl/hand_manipulation_suite
    MAX_STEPS), so returns are on a longer horizon;
  - gymnasium-robotics >= 1.2.1 changed the dense rewards of door, hammer and relocate without a
    new environment version (Farama-Foundation/Gymnasium-Robotics#220; 1.4.2 warns about it at
    import); Minari's recording scripts do not pin gymnasium-robotics, so evaluation rewards in
    those three tasks may be computed differently from the stored ones. Pen is unaffected.
Scores are normalised with the dataset's Minari reference scores.
"""
from __future__ import annotations

import ml_collections

from cql_jax.configs import base

TASKS = ("pen", "hammer", "door", "relocate")
KINDS = ("human", "cloned", "expert")


def get_config(variant: str = "pen-human") -> ml_collections.ConfigDict:
  task, _, kind = variant.partition("-")
  if task not in TASKS or kind not in KINDS:
    raise ValueError(f"unknown adroit variant '{variant}'; expected <task>-<kind> with task in "
                     f"{TASKS} and kind in {KINDS}, e.g. door-cloned.")
  c = base.get_config()
  c.dataset_id = f"D4RL/{task}/{kind}-v2"
  c.config_arg = f"cql_jax/configs/adroit.py:{variant}"
  base.use_reference_recipe(c, cql_weight=1.0)  # 3×256, π lr 1e-4, Q lr 3e-4, α lr 1e-4, 1M.
  c.agent.cql.lagrange = False
  c.agent.max_backup = False
  c.agent.bc_steps = 0
  c.eval_episodes = 10
  c.lock()
  return c
