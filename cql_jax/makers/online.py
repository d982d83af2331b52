"""Online SAC with Gymnasium vector environments and a replay buffer on the device.

The agent is the project's actor-critic (make_cql_agent with cql.weight = 0, i.e. SAC with an
entropy-regularised backup). The loop alternates acting and learning at one gradient step per
environment step (UTD 1), batched per host round trip: a *round* steps the vector env
`steps_per_round` times with one jitted `act` per step, then a single jitted call inserts the
round's transitions into the ring buffer and runs the matching number of updates in a
lax.scan. Before learning starts, `warmup_steps` steps of uniform random actions fill the buffer.

Discounts: a transition stores discount 0 only when the episode *terminated*; a time-limit
truncation keeps 1 so the backup bootstraps through it. The vector env autoresets in the same
step (AutoresetMode.SAME_STEP), so the observation it returns for a finished env is already the
next episode's first one; the true next observation is taken from info["final_obs"].
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, List, Optional

import gymnasium as gym
import jax
import ml_collections
import numpy as np

from cql_jax import evaluation
from cql_jax import train
from cql_jax.continuous.agent import default_config as cql_default_config, make_cql_agent
from cql_jax.data import replay
from cql_jax.types import Agent, Transition


def default_config() -> ml_collections.ConfigDict:
  """SAC (Haarnoja et al. 2018) hyperparameters on the CQL agent's config, plus the loop's."""
  c = cql_default_config()
  c.cql.weight = 0.0           # no conservative penalty: plain SAC.
  c.backup_entropy = True
  c.actor_lr = 3e-4            # SAC paper: 3e-4 for every network and the temperature.
  c.critic_lr = 3e-4
  c.alpha_lr = 3e-4
  c.num_envs = 1
  c.total_steps = 100_000      # environment steps, summed over the vector env's copies.
  c.warmup_steps = 5_000       # uniform random actions before the first gradient step.
  c.steps_per_round = 50       # vector-env steps per host round trip (x num_envs updates).
  c.batch_size = 256
  c.buffer_capacity = 1_000_000
  c.eval_every = 10_000        # environment steps between evaluations.
  c.eval_episodes = 10
  return c


@dataclasses.dataclass
class Episode:
  """One finished training episode, kept on the host when record_episodes is set.

  observations: [T+1, O] float32 (first to final observation); actions: [T, A] float32 in the
  environment's units ([T] int64 for a Discrete space); rewards: [T] float64; terminations,
  truncations: [T] bool.
  end_step: environment steps taken (over all copies) when the episode ended.
  """
  observations: np.ndarray
  actions: np.ndarray
  rewards: np.ndarray
  terminations: np.ndarray
  truncations: np.ndarray
  end_step: int

  @property
  def episode_return(self) -> float:
    return float(np.sum(self.rewards))


@dataclasses.dataclass
class OnlineResult:
  """What train_online returns.

  state: final agent state. buffer: final ReplayBuffer. agent: the Agent used.
  train_returns, train_end_steps: [num_episodes] returns of finished training episodes and the
    environment step at which each ended.
  evals: list of dicts {"step", "seconds", "mean_return", "returns"} (one per evaluation).
  episodes: recorded Episodes (empty unless record_episodes).
  env_steps, seconds: environment steps taken and wall time of the whole run.
  """
  state: object
  buffer: replay.ReplayBuffer
  agent: Agent
  train_returns: np.ndarray
  train_end_steps: np.ndarray
  evals: List[dict]
  episodes: List[Episode]
  env_steps: int
  seconds: float


def make_round(agent: Agent, batch_size: int, num_updates: int) -> Callable:
  """round(state, buffer, transitions, key) -> (state, buffer, metrics), to be jitted.

  Inserts `transitions` (leading axis K) and then runs `num_updates` agent updates on batches
  sampled from the whole buffer, in one lax.scan. metrics values are stacked [num_updates].
  """
  sample = functools.partial(replay.sample, batch_size=batch_size)
  updates = train.make_train_chunk(agent.update, sample, num_updates)

  def round_fn(state, buffer, transitions: Transition, key):
    buffer = replay.insert(buffer, transitions)
    state, metrics = updates(state, buffer, key)
    return state, buffer, metrics
  return round_fn


def make_env(env_id: str, num_envs: int, env_kwargs: Optional[dict] = None):
  """Synchronous vector env that autoresets within the step and reports info["final_obs"]."""
  return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                      vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
                      **(env_kwargs or {}))


def true_next_obs(next_obs: np.ndarray, info: dict) -> np.ndarray:
  """[N, O] next observations with finished envs' reset obs replaced by their final obs."""
  if "final_obs" not in info:
    return next_obs
  out = np.array(next_obs, dtype=np.float32, copy=True)
  done = np.asarray(info["_final_obs"], bool)
  for i in np.flatnonzero(done):
    out[i] = info["final_obs"][i]
  return out


def train_online(env_id: str, config: ml_collections.ConfigDict, *, seed: int,
                 env_kwargs: Optional[dict] = None, max_seconds: Optional[float] = None,
                 record_episodes: bool = False,
                 on_eval: Optional[Callable[[int, object, dict], None]] = None,
                 log: Optional[Callable[[str], None]] = None) -> OnlineResult:
  """Trains SAC online in `env_id` for config.total_steps environment steps.

  Args:
    env_id: Gymnasium id with a bounded Box action space, e.g. "Hopper-v5".
    config: default_config(), possibly overridden.
    seed: seeds the networks, the env resets, warm-up actions and policy noise.
    env_kwargs: keyword arguments for gymnasium.make.
    max_seconds: stop after the first round that ends past this wall time (None: no limit).
    record_episodes: keep every finished training episode on the host (for datasets).
    on_eval(step, state, eval_info): called after each evaluation; eval_info as in
      OnlineResult.evals. The state is live: copy what you keep (jax.device_get).
    log: called with one-line progress messages.

  Returns:
    OnlineResult.
  """
  env = make_env(env_id, config.num_envs, env_kwargs)
  low = np.asarray(env.single_action_space.low, np.float32)
  high = np.asarray(env.single_action_space.high, np.float32)
  obs_dim = int(np.prod(env.single_observation_space.shape))
  action_dim = int(low.shape[0])
  agent = make_cql_agent(config, obs_dim, low, high)
  act = jax.jit(agent.act, static_argnums=3)

  def random_action(rng, num_envs, env_steps):
    del env_steps
    return rng.uniform(low, high, size=(num_envs, action_dim)).astype(np.float32)

  def policy_action(state, obs, key, rng, env_steps):
    del rng, env_steps
    return np.asarray(act(state, obs, key, False))

  hooks = LoopHooks(
      random_action=random_action, policy_action=policy_action,
      greedy=lambda state, obs, key: act(state, obs, key, True),
      stored_action=lambda a: np.clip(2.0 * (a - low) / (high - low) - 1.0, -1.0, 1.0),
      action_dim=action_dim)
  return run_loop(env, env_id, agent, config, hooks, seed=seed, env_kwargs=env_kwargs,
                  max_seconds=max_seconds, record_episodes=record_episodes, on_eval=on_eval,
                  log=log)


@dataclasses.dataclass(frozen=True)
class LoopHooks:
  """What the acting half of `run_loop` needs from a learner (SAC here, DQN in online_dqn).

  random_action(rng, num_envs, env_steps) -> [N, ...] warm-up actions in the env's units.
  policy_action(state, obs [N, O], key, rng, env_steps) -> [N, ...] exploring actions.
  greedy(state, obs [N, O], key) -> [N, ...] the evaluation policy's actions.
  stored_action(actions) -> what the replay buffer stores (SAC: scaled into [-1, 1]).
  action_dim: the buffer's action width; None stores one scalar (a discrete index) per row.
  updates_per_round(round_size) -> gradient steps per round (default: one per env step).
  """
  random_action: Callable
  policy_action: Callable
  greedy: Callable
  stored_action: Callable
  action_dim: Optional[int]
  updates_per_round: Callable[[int], int] = lambda round_size: round_size


def run_loop(env, env_id: str, agent: Agent, config: ml_collections.ConfigDict,
             hooks: LoopHooks, *, seed: int, env_kwargs: Optional[dict] = None,
             max_seconds: Optional[float] = None, record_episodes: bool = False,
             on_eval: Optional[Callable[[int, object, dict], None]] = None,
             log: Optional[Callable[[str], None]] = None) -> OnlineResult:
  """The act-then-learn rounds shared by the online learners (module docstring); closes `env`.

  config needs num_envs, total_steps, warmup_steps, steps_per_round, batch_size,
  buffer_capacity, eval_every and eval_episodes; the arguments are train_online's.
  """
  cfg = config
  start = time.perf_counter()
  num_envs = cfg.num_envs
  obs_dim = int(np.prod(env.single_observation_space.shape))
  steps_per_round = int(cfg.steps_per_round)
  round_size = steps_per_round * num_envs  # transitions per round.
  try:
    if cfg.warmup_steps % round_size or cfg.total_steps % round_size:
      raise ValueError(f"warmup_steps={cfg.warmup_steps} and total_steps={cfg.total_steps} must "
                       f"be multiples of steps_per_round * num_envs = {round_size}")
    if cfg.buffer_capacity < round_size:
      raise ValueError("buffer_capacity must hold at least one round of transitions")
  except ValueError:
    env.close()
    raise

  root = jax.random.key(seed)
  init_key, act_root, learn_root, eval_root = jax.random.split(root, 4)
  state = train.init_states(agent, init_key)
  buffer = replay.make_replay_buffer(int(cfg.buffer_capacity), obs_dim, hooks.action_dim)
  learn = jax.jit(make_round(agent, int(cfg.batch_size), hooks.updates_per_round(round_size)),
                  donate_argnums=(0, 1))
  fill = jax.jit(replay.insert, donate_argnums=0)
  rng = np.random.default_rng(seed)

  obs, _ = env.reset(seed=seed)
  obs = np.asarray(obs, np.float32)
  running_return = np.zeros(num_envs)
  train_returns, train_end_steps, evals, episodes = [], [], [], []
  traces = [_new_trace(obs[i]) for i in range(num_envs)] if record_episodes else None
  env_steps, round_index, next_eval = 0, 0, int(cfg.eval_every)
  metrics = None

  try:
    while env_steps < cfg.total_steps:
      rows = {k: [] for k in Transition._fields}
      warm = env_steps < cfg.warmup_steps
      for t in range(steps_per_round):
        if warm:
          action = hooks.random_action(rng, num_envs, env_steps)
        else:
          step_key = jax.random.fold_in(act_root, env_steps)
          action = hooks.policy_action(state, obs, step_key, rng, env_steps)
        next_obs, reward, terminated, truncated, info = env.step(action)
        next_obs = np.asarray(next_obs, np.float32)
        final = true_next_obs(next_obs, info)
        rows["obs"].append(obs)
        rows["action"].append(hooks.stored_action(action))
        rows["reward"].append(np.asarray(reward, np.float32))
        rows["discount"].append(1.0 - np.asarray(terminated, np.float32))
        rows["next_obs"].append(final)
        env_steps += num_envs
        running_return += reward
        done = np.logical_or(terminated, truncated)
        for i in range(num_envs):
          if traces is not None:
            tr = traces[i]
            tr["obs"].append(final[i])
            tr["act"].append(action[i])
            tr["rew"].append(float(reward[i]))
            tr["term"].append(bool(terminated[i]))
            tr["trunc"].append(bool(truncated[i]))
          if done[i]:
            train_returns.append(float(running_return[i]))
            train_end_steps.append(env_steps)
            running_return[i] = 0.0
            if traces is not None:
              episodes.append(_finish_trace(traces[i], env_steps))
              traces[i] = _new_trace(next_obs[i])
        obs = next_obs
      batch = Transition(*(np.concatenate(rows[k]) for k in Transition._fields))
      if warm:
        buffer = fill(buffer, batch)
      else:
        state, buffer, metrics = learn(state, buffer, batch,
                                       jax.random.fold_in(learn_root, round_index))
      round_index += 1

      if env_steps >= next_eval or env_steps >= cfg.total_steps:
        next_eval += int(cfg.eval_every)
        result = evaluation.evaluate(
            lambda o, k: hooks.greedy(state, o, k), env_id,
            num_episodes=int(cfg.eval_episodes), seed=seed + 10_000 + round_index,
            env_kwargs=env_kwargs, key=jax.random.fold_in(eval_root, round_index))
        info = {"step": env_steps, "seconds": time.perf_counter() - start,
                "mean_return": result.mean_return, "returns": result.returns.tolist()}
        evals.append(info)
        if log is not None:
          recent = np.mean(train_returns[-10:]) if train_returns else float("nan")
          extra = "".join(f" {name.split('/')[-1]} {float(np.mean(metrics[name])):.3g}"
                          for name in ("critic/loss", "alpha/value")
                          if metrics is not None and name in metrics)
          log(f"step {env_steps} t {info['seconds']:.0f}s eval {result.mean_return:.1f} "
              f"train(last10) {recent:.1f} sps {env_steps / info['seconds']:.0f}{extra}")
        if on_eval is not None:
          on_eval(env_steps, state, info)
      if max_seconds is not None and time.perf_counter() - start > max_seconds:
        if log is not None:
          log(f"stopping at step {env_steps}: wall-time budget {max_seconds:.0f}s reached")
        break
  finally:
    env.close()
  return OnlineResult(state=state, buffer=buffer, agent=agent,
                      train_returns=np.asarray(train_returns),
                      train_end_steps=np.asarray(train_end_steps, np.int64), evals=evals,
                      episodes=episodes, env_steps=env_steps, seconds=time.perf_counter() - start)


def _new_trace(first_obs: np.ndarray) -> dict:
  return {"obs": [np.asarray(first_obs, np.float32)], "act": [], "rew": [], "term": [],
          "trunc": []}


def _finish_trace(trace: dict, end_step: int) -> Episode:
  return Episode(observations=np.stack(trace["obs"]).astype(np.float32),
                 actions=np.stack(trace["act"]),  # float32 (Box) or int64 (Discrete)
                 rewards=np.asarray(trace["rew"], np.float64),
                 terminations=np.asarray(trace["term"], bool),
                 truncations=np.asarray(trace["trunc"], bool), end_step=end_step)
