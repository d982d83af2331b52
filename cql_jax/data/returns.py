"""Monte-Carlo discounted returns-to-go of a dataset's episodes (Cal-QL's reference values).

Cal-QL (Nakamoto et al., 2023) lower-bounds the Q-values of the policy's actions by the value
of the behaviour policy, estimated for each transition by the discounted return of the rest of
its own recorded episode:

  G_t = r_t + γ · d_t · G_{t+1},   G_{T+1} = 0,

with d_t = 0 where the episode terminated. Conventions, as the paper's public code:

- A *truncated* episode (time limit, or the data simply stops) is summed to its last recorded
  step and nothing is bootstrapped after it: the tail beyond the data counts as 0.
- *Sparse-reward* tasks (`sparse_failure_reward` set, e.g. AntMaze's per-step failure reward
  after the reward transform): an episode whose every reward equals the failure reward never
  reached the goal, and cut by the time limit it would have gone on failing, so each of its
  steps gets the infinite-horizon value of failing forever, r_fail / (1 − γ), instead of the
  truncated sum, which would rate a failing state near the time limit close to 0 (as high as
  the goal's value).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from cql_jax.data import split
from cql_jax.types import ReturnTransition, Transition


def episode_return_to_go(rewards, terminations, gamma: float,
                         sparse_failure_reward: Optional[float] = None) -> np.ndarray:
  """[T] discounted return-to-go of one episode's rewards [T] (float64).

  terminations: [T] bool or 0/1, true where the episode terminated (the rest is cut there too,
  so a termination before the last step starts a fresh sum, as in the public code).
  """
  rewards = np.asarray(rewards, np.float64)
  terminations = np.asarray(terminations, bool)
  if rewards.shape != terminations.shape or rewards.ndim != 1:
    raise ValueError(f"rewards {rewards.shape} and terminations {terminations.shape} must be "
                     "equal 1-d shapes")
  if not 0.0 <= gamma < 1.0:
    raise ValueError(f"gamma must be in [0, 1), got {gamma}")
  if (sparse_failure_reward is not None and rewards.size
      and np.all(rewards == np.float64(np.float32(sparse_failure_reward)))):
    return np.full(rewards.shape, rewards[0] / (1.0 - gamma))
  out = np.empty_like(rewards)
  running = 0.0
  for t in range(rewards.shape[0] - 1, -1, -1):
    running = rewards[t] + gamma * running * (0.0 if terminations[t] else 1.0)
    out[t] = running
  return out


def return_to_go(transitions: Transition, gamma: float,
                 sparse_failure_reward: Optional[float] = None) -> np.ndarray:
  """[T] float32 return-to-go of every transition of flat, episode-ordered data.

  Episodes are found as cql_jax.data.split.episode_starts finds them (a break where the stored
  next observation is not the next row's observation, or after a termination).
  """
  reward = np.asarray(transitions.reward, np.float64)
  terminated = np.asarray(transitions.discount) == 0.0
  starts = split.episode_starts(transitions)
  ends = np.append(starts[1:], reward.shape[0])
  out = np.empty(reward.shape, np.float64)
  for s, e in zip(starts, ends):
    out[s:e] = episode_return_to_go(reward[s:e], terminated[s:e], gamma, sparse_failure_reward)
  return out.astype(np.float32)


def with_return_to_go(transitions: Transition, gamma: float,
                      sparse_failure_reward: Optional[float] = None) -> ReturnTransition:
  """The transitions with their return-to-go attached (ReturnTransition, NumPy)."""
  return ReturnTransition(*transitions[:5],
                          mc_return=return_to_go(transitions, gamma, sparse_failure_reward))
