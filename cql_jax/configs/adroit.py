"""Adroit hand (pen, hammer, door, relocate × human, cloned) on Minari `D4RL/<task>/<kind>-v2`.

Variants "<task>-<kind>", e.g. pen-human. CORL settings (REFERENCE.md §1): 3x256 networks,
π lr 1e-4, Q lr 3e-4, fixed α = 1, 1M steps. Expect low scores: CORL's CQL averages ≈ 1.5 on
Adroit (the importance-sampled penalty has high variance in 24-30-d action spaces, §5).
Minari re-simulated the D4RL v1 actions in AdroitHand*-v1.
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
  base.use_reference_recipe(c, cql_weight=1.0)
  c.lock()
  return c
