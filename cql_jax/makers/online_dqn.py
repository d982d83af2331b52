"""Online DQN for Gymnasium environments with Discrete actions, on the online SAC's loop.

The agent is the project's discrete agent (cql_jax.discrete.agent with loss "dqn", an MLP torso
and cql.weight = 0: DQN with a Huber TD loss and hard target updates). Acting, the device ring
buffer, the scanned updates per round, the evaluation and the episode records are
cql_jax.makers.online.run_loop's; this module only supplies the acting rule and the config.

Exploration is ε-greedy with ε falling linearly from `epsilon_start` to `epsilon_end` over the
first `epsilon_fraction` of total_steps (Mnih et al. 2015), after `warmup_steps` of uniform
random actions. The ε draw is made on the host from the loop's NumPy generator, so the agent's
own `act` stays the greedy/evaluation one. Evaluations are greedy.

Defaults follow rl-baselines3-zoo's tuned DQN for Acrobot-v1 and LunarLander-v2 (lr 6.3e-4,
batch 128, buffer 50k, target update every 250 gradient steps, ε over the first 12%), with three
changes for a shared 2-core CPU and the datasets: a 128-128 MLP (theirs 256-256: 3.7x the
update time here), 8 environment copies with one gradient step per 2 environment steps (one
copy at UTD 1 ran 120 steps/s, bound by one jitted act per step and the 256-wide update), and
the final ε 0.05 that the datasets also act with (cql_jax.makers.discrete_datasets) in place
of 0.1.
"""
from __future__ import annotations

from typing import Callable, Optional

import gymnasium as gym
import jax
import ml_collections
import numpy as np

from cql_jax.discrete import agent as discrete
from cql_jax.makers import online


def default_config() -> ml_collections.ConfigDict:
  """DQN's agent settings (cql_jax.discrete.agent keys) plus the online loop's."""
  c = discrete.default_config()
  c.loss = "dqn"
  c.cql.weight = 0.0
  c.torso = "mlp"
  c.hidden_sizes = (128, 128)
  c.lr = 6.3e-4
  c.adam_eps = 1e-8            # optax's default (the discrete config's 3.125e-4 is batch_rl's).
  c.target_update_period = 250  # gradient steps between hard target syncs.
  c.gamma = 0.99
  c.epsilon_start = 1.0
  c.epsilon_end = 0.05
  c.epsilon_fraction = 0.12    # of total_steps over which ε falls linearly.
  c.num_envs = 8               # one jitted act per 8 env steps: acting costs as much as learning.
  c.total_steps = 100_000      # environment steps, summed over the vector env's copies.
  c.warmup_steps = 1_000       # uniform random actions before the first gradient step.
  c.steps_per_round = 25       # vector-env steps per host round trip (x num_envs transitions).
  c.update_every = 2           # env steps per gradient step (UTD = 1 / update_every).
  c.batch_size = 128
  c.buffer_capacity = 50_000
  c.eval_every = 5_000
  c.eval_episodes = 10
  return c


def epsilon_at(config: ml_collections.ConfigDict, env_steps: int) -> float:
  """ε of the exploring policy after `env_steps` environment steps (linear, then flat)."""
  horizon = max(1.0, config.epsilon_fraction * config.total_steps)
  frac = min(1.0, env_steps / horizon)
  return float(config.epsilon_start + frac * (config.epsilon_end - config.epsilon_start))


def epsilon_greedy(greedy_actions: np.ndarray, epsilon: float, num_actions: int,
                   rng: np.random.Generator) -> np.ndarray:
  """Each row independently: with probability ε a uniform random action, else the greedy one.

  greedy_actions: [N] ints -> [N] int64 (a uniform draw may repeat the greedy action, as in DQN).
  """
  greedy_actions = np.asarray(greedy_actions, np.int64)
  explore = rng.random(greedy_actions.shape[0]) < epsilon
  random_actions = rng.integers(0, num_actions, size=greedy_actions.shape[0])
  return np.where(explore, random_actions, greedy_actions).astype(np.int64)


def train_online(env_id: str, config: ml_collections.ConfigDict, *, seed: int,
                 env_kwargs: Optional[dict] = None, max_seconds: Optional[float] = None,
                 record_episodes: bool = False,
                 on_eval: Optional[Callable[[int, object, dict], None]] = None,
                 log: Optional[Callable[[str], None]] = None) -> online.OnlineResult:
  """Trains DQN online in `env_id` (Box observations, Discrete actions); as online.train_online.

  The state passed to on_eval and returned is a DiscreteAgentState (its `params` is the
  Q-network); OnlineResult.episodes hold int64 [T] actions.
  """
  cfg = config
  if cfg.update_every < 1 or (cfg.steps_per_round * cfg.num_envs) % cfg.update_every:
    raise ValueError(f"update_every={cfg.update_every} must divide steps_per_round * num_envs = "
                     f"{cfg.steps_per_round * cfg.num_envs}")
  env = online.make_env(env_id, cfg.num_envs, env_kwargs)
  if not isinstance(env.single_action_space, gym.spaces.Discrete):
    env.close()
    raise ValueError(f"{env_id} has action space {env.single_action_space}; online DQN needs a "
                     "Discrete one (online.train_online trains SAC on Box actions).")
  num_actions = int(env.single_action_space.n)
  obs_shape = env.single_observation_space.shape
  agent = discrete.make_discrete_agent(cfg, obs_shape, num_actions)
  act = jax.jit(agent.act, static_argnums=3)

  def random_action(rng, num_envs, env_steps):
    del env_steps
    return rng.integers(0, num_actions, size=num_envs).astype(np.int64)

  def policy_action(state, obs, key, rng, env_steps):
    return epsilon_greedy(np.asarray(act(state, obs, key, True)), epsilon_at(cfg, env_steps),
                          num_actions, rng)

  hooks = online.LoopHooks(
      random_action=random_action, policy_action=policy_action,
      greedy=lambda state, obs, key: act(state, obs, key, True),
      stored_action=lambda a: np.asarray(a, np.float32), action_dim=None,
      updates_per_round=lambda round_size: round_size // int(cfg.update_every))
  return online.run_loop(env, env_id, agent, cfg, hooks, seed=seed, env_kwargs=env_kwargs,
                         max_seconds=max_seconds, record_episodes=record_episodes,
                         on_eval=on_eval, log=log)
