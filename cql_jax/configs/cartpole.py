"""Discrete CQL on the project's CartPole-v1 datasets `cql_jax/cartpole/<kind>-v0`.

Argument "<kind>[-<algo>]": kind in cql_jax.makers.cartpole.KINDS (random, medium, expert,
medium-replay, medium-expert); algo cql (default: DQN + CQL(H), weight 1) or dqn (weight 0).
e.g. --config=cql_jax/configs/cartpole.py:medium-replay or cartpole.py:medium-replay-dqn.

Recipe (RESULTS.md, "Diagnosis of the recipe"): DQN (Huber) + CQL(H) weight 1, MLP 64-64, Adam
lr 1e-3, batch 64, 30k gradient steps, hard target update every 2000 steps (the paper's Atari
period in gradient steps). Why 2000: with hard updates the critic after N steps has done N/P
Bellman iterations from Q = 0, so Q(s0) ≈ (1 - γ^(N/P))/(1 - γ) for reward 1 per step (measured
Q followed that curve within a few units on every CartPole run). P = 250 reaches a long horizon sooner but its score dipped between
evaluations (93 and 96.6 on two medium-expert draws, 86 early on medium-replay); P = 2000 held 100
at every evaluation on all three datasets (8000 on both medium-expert draws). The learning rate only matters with
the period: 6.25e-5 with P = 250 fell to the behaviour policy's score, so lower the lr only
together with a longer period (d3rlpy's DiscreteCQL pairs 6.25e-5 with 8000). Keep N/P above
the horizon the task needs. tests/test_discrete_learning.py keeps its own P = 250 settings.
A missing dataset is made by cartpole.ensure_cartpole_datasets([kind], generation.num_episodes,
generation.seed).
"""
from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from cql_jax.makers import cartpole
from cql_jax.discrete import agent as discrete
from cql_jax.discrete import variants
from cql_jax.configs import base

ALGOS = ("cql", "dqn")


def get_config(arg: str = "medium-replay") -> ml_collections.ConfigDict:
  """Config for one CartPole dataset kind and algorithm; see the module docstring."""
  kind, algo = arg, "cql"
  for name in ALGOS:
    if arg.endswith(f"-{name}"):
      kind, algo = arg[:-len(name) - 1], name
  if kind not in cartpole.KINDS:
    raise ValueError(f"bad cartpole config argument {arg!r}: expected <kind>[-<algo>] with kind "
                     f"in {cartpole.KINDS} and algo in {ALGOS}, e.g. 'medium-replay-dqn'.")
  c = base.get_config()
  c.dataset_id = cartpole.dataset_id(kind)
  c.config_arg = f"cql_jax/configs/cartpole.py:{arg}"
  # How a missing dataset is generated (ensure_cartpole_datasets arguments; None: defaults).
  c.generation = ml_collections.ConfigDict()
  c.generation.num_episodes = config_dict.placeholder(int)
  c.generation.seed = 0

  agent = discrete.default_config()
  agent.torso = "mlp"
  agent.hidden_sizes = (64, 64)
  agent.lr = 1e-3
  agent.target_update_period = 2000  # gradient steps; see the module docstring
  c.agent = variants.variant_config("cql_dqn" if algo == "cql" else "dqn", agent, cql_weight=1.0)

  c.num_steps = 30_000
  c.batch_size = 64
  c.steps_per_chunk = 5_000
  c.eval_every = 5_000
  c.checkpoint_every = 10_000
  c.eval_episodes = 10
  c.eval_deterministic = True  # greedy; CartPole needs no exploration at test time.
  c.lock()
  return c
