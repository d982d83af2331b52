"""Discrete CQL learns where offline DQN fails: CartPole-v1 medium-replay, two vmapped seeds.

Both agents are the same DQN (Huber TD, hard target updates, MLP torso); CQL adds the CQL(H)
penalty with weight 1, the baseline has weight 0. The data is the project's medium-replay mix
(random up to medium quality), whose own mean return is the bar CQL has to reach.
"""
import time

import numpy as np
import pytest

from cql_jax import agents
from cql_jax import evaluation
from cql_jax import train
from cql_jax.makers import cartpole
from cql_jax.data import minari_io
from cql_jax.discrete.agent import default_config

KIND = "medium-replay"
NUM_SEEDS = 2
NUM_STEPS = 30_000
STEPS_PER_CHUNK = 10_000
BATCH_SIZE = 64
EVAL_EPISODES = 10


def learning_config(cql_weight: float):
  """Small-MLP DQN for CartPole; only cql_weight differs between CQL and the baseline."""
  config = default_config()
  config.loss = "dqn"
  config.torso = "mlp"
  config.hidden_sizes = (64, 64)
  config.lr = 1e-3
  config.target_update_period = 250
  config.cql.weight = cql_weight
  return config


def train_and_evaluate(dataset, cql_weight: float, seed: int = 0) -> np.ndarray:
  """Mean evaluation return of each of NUM_SEEDS vmapped seeds, [NUM_SEEDS]."""
  agent = agents.make_agent(learning_config(cql_weight), dataset)
  states = train.fit(agent, agents.device_data(dataset), seed=seed, num_steps=NUM_STEPS,
                     steps_per_chunk=STEPS_PER_CHUNK, batch_size=BATCH_SIZE, num_seeds=NUM_SEEDS)
  return np.array([
      evaluation.evaluate_agent(agent, evaluation.seed_state(states, i), dataset,
                                num_episodes=EVAL_EPISODES, seed=1000 + i).mean_return
      for i in range(NUM_SEEDS)])


@pytest.mark.slow
def test_cql_beats_behaviour_and_offline_dqn():
  cartpole.ensure_cartpole_datasets([KIND])
  dataset = minari_io.load_dataset(cartpole.dataset_id(KIND))
  behaviour = float(dataset.episode_returns.mean())
  start = time.perf_counter()
  cql = train_and_evaluate(dataset, cql_weight=1.0)
  dqn = train_and_evaluate(dataset, cql_weight=0.0)
  print(f"\n{dataset.dataset_id}: behaviour {behaviour:.1f}; {NUM_SEEDS} seeds x {NUM_STEPS} "
        f"steps: CQL {cql.mean():.1f} ({cql.round(1)}), DQN {dqn.mean():.1f} ({dqn.round(1)}); "
        f"{time.perf_counter() - start:.0f}s")
  assert cql.mean() >= behaviour
  assert dqn.mean() < cql.mean()
