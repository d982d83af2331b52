"""Times d3rlpy's CQL on the reference configuration; imported only inside an interpreter
that has d3rlpy (and torch) installed. Never a dependency of cql_jax.

Configuration matched to `benchmarks/throughput.py --suites=continuous`: batch 256, actor and
critic MLPs 256-256, 2 critics, 10 sampled actions, conservative weight 5, α′ fixed (its learning
rate is 0), Hopper shapes (obs 11, action 3), CPU.
"""
from __future__ import annotations

import time

import numpy as np


def measure(steps: int, repeats: int, threads: int):
  """Best steps/s of `steps` consecutive `CQL.update` calls over `repeats` tries."""
  import d3rlpy
  import torch
  from d3rlpy.dataset import TransitionMiniBatch
  torch.set_num_threads(threads)
  obs_dim, action_dim, batch = 11, 3, 256
  encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=[256, 256])
  config = d3rlpy.algos.CQLConfig(
      batch_size=batch, actor_encoder_factory=encoder, critic_encoder_factory=encoder,
      n_critics=2, n_action_samples=10, conservative_weight=5.0, alpha_learning_rate=0.0,
      initial_alpha=1.0, actor_learning_rate=1e-4, critic_learning_rate=3e-4)
  cql = config.create(device="cpu:0")
  cql.create_impl((obs_dim,), action_dim)
  rng = np.random.default_rng(0)
  f32 = np.float32

  def minibatch():
    return TransitionMiniBatch(
        observations=rng.normal(size=(batch, obs_dim)).astype(f32),
        actions=rng.uniform(-1, 1, (batch, action_dim)).astype(f32),
        rewards=rng.normal(size=(batch, 1)).astype(f32),
        next_observations=rng.normal(size=(batch, obs_dim)).astype(f32),
        next_actions=rng.uniform(-1, 1, (batch, action_dim)).astype(f32),
        terminals=np.zeros((batch, 1), f32), intervals=np.ones((batch, 1), f32), transitions=[])
  batches = [minibatch() for _ in range(8)]
  for b in batches[:3]:
    cql.update(b)  # warm-up
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    for i in range(steps):
      cql.update(batches[i % len(batches)])
    best = min(best, time.perf_counter() - t0)
  return {"threads": threads, "version": f"d3rlpy {d3rlpy.__version__} torch {torch.__version__}",
          "steps_per_s": steps / best}
