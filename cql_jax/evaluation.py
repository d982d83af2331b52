"""Evaluation rollouts of a policy in Gymnasium vector environments."""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import gymnasium as gym
import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """returns, discounted_returns, lengths: [num_episodes]; normalized: [num_episodes] or None."""
  returns: np.ndarray
  discounted_returns: np.ndarray
  lengths: np.ndarray
  normalized: Optional[np.ndarray]

  @property
  def mean_return(self) -> float:
    return float(self.returns.mean())

  @property
  def mean_normalized(self) -> float:
    if self.normalized is None:
      raise ValueError("this evaluation has no reference scores; pass ref_min/ref_max")
    return float(self.normalized.mean())


def make_vector_env(env_id: str, num_envs: int, env_kwargs: Optional[dict] = None):
  """Synchronous vector env (many small envs are cheaper in-process than in subprocesses)."""
  return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **(env_kwargs or {}))


def evaluate(policy: Callable[[np.ndarray, jax.Array], np.ndarray], env_id: str, *,
             num_episodes: int = 10, seed: int = 0, gamma: float = 0.99,
             env_kwargs: Optional[dict] = None, ref_min: Optional[float] = None,
             ref_max: Optional[float] = None, key=None, max_steps: int = 100_000,
             make_env: Optional[Callable[[int], gym.vector.VectorEnv]] = None) -> EvalResult:
  """Runs `num_episodes` episodes, one per vector-env slot, each to its first termination/truncation.

  policy(obs [num_episodes, O], key) -> actions [num_episodes, A] (or [num_episodes] ints).
  make_env(num_envs) -> vector env, when given, replaces gym.make_vec(env_id, **env_kwargs):
  for environments that need their own wrappers (Atari's Dopamine preprocessing).
  Returns undiscounted and γ-discounted returns, and D4RL normalized scores if refs are given.
  """
  from cql_jax import scores  # local: keeps evaluation importable without the data layer.
  env = (make_vector_env(env_id, num_episodes, env_kwargs) if make_env is None
         else make_env(num_episodes))
  key = jax.random.key(seed) if key is None else key
  try:
    obs, _ = env.reset(seed=seed)
    returns = np.zeros(num_episodes)
    discounted = np.zeros(num_episodes)
    lengths = np.zeros(num_episodes, np.int64)
    running = np.ones(num_episodes, bool)
    for t in range(max_steps):
      key, act_key = jax.random.split(key)
      action = np.asarray(policy(obs, act_key))
      obs, reward, terminated, truncated, _ = env.step(action)
      returns += running * reward
      discounted += running * (gamma ** lengths) * reward
      lengths += running
      running &= ~(terminated | truncated)
      if not running.any():
        break
  finally:
    env.close()
  normalized = None
  if ref_min is not None and ref_max is not None:
    normalized = scores.normalized_score(returns, ref_min, ref_max)
  return EvalResult(returns, discounted, lengths, normalized)


def evaluate_agent(agent, state, dataset, *, num_episodes: int = 10, seed: int = 0,
                   gamma: float = 0.99, deterministic: bool = True) -> EvalResult:
  """Rolls out `agent.act` for one (unstacked) train state in the dataset's environment."""
  if dataset.env_id is None:
    raise ValueError(f"{dataset.dataset_id} records no environment, so it cannot be evaluated; "
                     "pass env_id to evaluate() yourself.")
  act = jax.jit(agent.act, static_argnums=3)
  return evaluate(lambda obs, key: act(state, obs, key, deterministic), dataset.env_id,
                  num_episodes=num_episodes, seed=seed, gamma=gamma, env_kwargs=dataset.env_kwargs,
                  ref_min=dataset.ref_min_score, ref_max=dataset.ref_max_score)


def seed_state(states, index: int):
  """The train state of seed `index` from states stacked on a leading seed axis."""
  return jax.tree.map(lambda x: x[index], states)
