"""Pendulum-v1 from the project's own datasets `cql_jax/pendulum/<kind>-v0` (REFERENCE.md has none).

Variants: random, medium, expert, medium-replay, medium-expert (cql_jax.data.pendulum.KINDS).
The runner generates a missing dataset with ensure_pendulum_datasets(config.pendulum.*).
  python -m experiments.train --config=experiments/configs/classic.py:medium-expert --workdir=runs/pend
"""
from __future__ import annotations

import ml_collections

from cql_jax.data import pendulum
from experiments.configs import base


def get_config(variant: str = "medium-expert") -> ml_collections.ConfigDict:
  if variant not in pendulum.KINDS:
    raise ValueError(f"unknown classic variant '{variant}'; choose one of {', '.join(pendulum.KINDS)} "
                     "(e.g. --config=experiments/configs/classic.py:medium).")
  c = base.get_config()
  c.dataset_id = pendulum.dataset_id(variant)
  c.config_arg = f"experiments/configs/classic.py:{variant}"
  # JaxCQL's 256-256 networks and learning rates; Pendulum (|A| = 1, 200-step episodes) learns
  # in far fewer steps than MuJoCo, so the schedule is 10x shorter.
  c.agent.actor_lr = 3e-4
  c.agent.critic_lr = 3e-4
  c.agent.alpha_lr = 3e-4
  c.agent.cql.weight = 5.0
  c.num_steps = 100_000
  c.eval_every = 5_000
  c.checkpoint_every = 10_000
  # How a missing dataset is generated (ensure_pendulum_datasets arguments).
  c.pendulum = ml_collections.ConfigDict()
  c.pendulum.num_episodes = 100
  c.pendulum.ref_episodes = 100
  c.pendulum.seed = 0
  c.lock()
  return c
