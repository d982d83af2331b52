"""Franka Kitchen (complete, partial, mixed) on Minari `D4RL/kitchen/<kind>-v2`.

Official-code settings (REFERENCE.md §1): 3x256 networks, π lr 1e-4, Q lr 3e-4, fixed α = 5,
1M steps. Observations use only Minari's `observation` key: the goal keys are the same fixed task
set (microwave, kettle, light switch, slide cabinet) in every episode, so they carry no signal.
Paper scores (older kitchen data): complete 43.8, partial 49.8, mixed 51.0.
"""
from __future__ import annotations

import ml_collections

from cql_jax.configs import base

KINDS = ("complete", "partial", "mixed")


def get_config(variant: str = "partial") -> ml_collections.ConfigDict:
  c = base.variant_config("kitchen", variant, KINDS, "D4RL/kitchen/{variant}-v2")
  c.data.obs_keys = ("observation",)
  base.use_reference_recipe(c, cql_weight=5.0)
  c.eval_every = 50_000
  c.lock()
  return c
