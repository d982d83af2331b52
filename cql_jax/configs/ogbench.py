"""OGBench single-task manipulation (Park et al., ICLR 2025): `cube-single-play-singletask-v0`.

The variant is the dataset id: OGBench's (`cube-single-play-singletask-v0`, `-task<N>-`
for the other four tasks; downloaded with --download) or the project's own data made with
OGBench's oracles (`cql_jax/cube-single-play-singletask-v0`, made by
`python -m experiments.make_ogbench --env=cube-single-v0`):
  python -m experiments.train --config=cql_jax/configs/ogbench.py:cube-single-play-singletask-v0 \
      --workdir=runs/cube-single --download
Conventions (rewards −1 per step until the cube sits at its target, masks 0 there, evaluation in
the single-task environment scored by success rate) are in cql_jax.data.ogbench_io.

Recipe, and why. No public CQL code or paper reports CQL on OGBench's single-task data; the
published baselines (Park et al., Flow Q-Learning, 2025, for BC, IQL, ReBRAC, IDQL, SRPO, CAC,
FAWAC, FBRAC, IFQL and FQL) share one training setup, which we keep so that CQL's numbers sit
beside theirs on equal terms:
  networks   actor and critics 4×512 (their MLPs; FQL's repository, agents/*.py);
  optimiser  Adam, learning rate 3e-4 for actor and critics (theirs), temperature 3e-4;
  schedule   1M gradient steps, batch 256, γ = 0.99, target Polyak 0.005;
  evaluation 50 episodes (their eval_episodes), every 100k steps.
The CQL part is the CQL authors' released recipe for dense-reward D4RL tasks, since
these rewards (−1 per step, 0 at the goal) are dense and returns span −100..0 like a scaled
locomotion task: CQL(H) with a fixed α = 5, 10 sampled actions per source, deterministic backup,
no max-backup and no BC warm-start. The rewards and masks are used as OGBench gives them.
"""
from __future__ import annotations

import ml_collections

from cql_jax.configs import base
from cql_jax.data import ogbench_io

DEFAULT = "cube-single-play-singletask-v0"


def get_config(variant: str = DEFAULT) -> ml_collections.ConfigDict:
  if ogbench_io.parse_id(variant) is None:
    raise ValueError(
        f"unknown ogbench variant '{variant}': give an OGBench single-task id, "
        "<env>-<type>-singletask[-task<N>]-v0 (e.g. cube-single-play-singletask-task2-v0), or "
        "cql_jax/<same> for the project's own data.")
  c = base.get_config()
  c.dataset_id = variant
  c.config_arg = f"cql_jax/configs/ogbench.py:{variant}"
  c.agent.actor_hidden_sizes = (512,) * 4
  c.agent.critic_hidden_sizes = (512,) * 4
  c.agent.actor_lr = 3e-4
  c.agent.critic_lr = 3e-4
  c.agent.alpha_lr = 3e-4
  c.agent.gamma = 0.99
  c.agent.polyak = 5e-3
  c.agent.cql.weight = 5.0
  c.agent.cql.lagrange = False
  c.agent.max_backup = False
  c.agent.bc_steps = 0
  c.num_steps = 1_000_000
  c.batch_size = 256
  c.eval_every = 100_000
  c.checkpoint_every = 100_000
  c.eval_episodes = 50
  c.lock()
  return c
