"""Pendulum-v1 helpers: set the simulator to the state behind an observation."""
from __future__ import annotations

import gymnasium as gym
import numpy as np


def pendulum_state_from_obs(obs: np.ndarray) -> np.ndarray:
  """Pendulum-v1 physical state [θ, θ̇] from its observation [cos θ, sin θ, θ̇] ([..., 3] -> [..., 2])."""
  obs = np.asarray(obs, np.float64)
  return np.stack([np.arctan2(obs[..., 1], obs[..., 0]), obs[..., 2]], axis=-1)


def set_pendulum_state(env: gym.Env, obs: np.ndarray) -> None:
  """Puts a (reset) Pendulum-v1 env into the state whose observation is `obs` [3]."""
  env.unwrapped.state = pendulum_state_from_obs(obs)
