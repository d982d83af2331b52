"""Home-made D4RL-style datasets for Discrete-action environments, from the project's online DQN.

The discrete counterpart of cql_jax.makers.mujoco_datasets: one online DQN run
(cql_jax.makers.online_dqn) per environment, a Q-network snapshot at every evaluation, then
D4RL's five kinds (Fu et al. 2020):

  random         uniform random actions.
  medium         the first snapshot whose greedy evaluation reached a third of the way from the
                 random policy's return to the best snapshot's: random + (best - random) / 3.
                 (D4RL's "a third of the expert" assumes returns that start at 0; Acrobot's
                 and LunarLander's are negative.)
  expert         the snapshot with the best greedy evaluation.
  medium-replay  every training episode DQN finished up to the medium snapshot's step, warm-up
                 included: the replay buffer at that point, in collection order.
  medium-expert  the medium episodes followed by the expert episodes.

Behaviour: the snapshots act ε-greedily with ε = BEHAVIOUR_EPSILON = 0.05, the final ε of the
learner's own exploration. A greedy Q-network is a deterministic policy: every visit to a state
logs the same action, so the data would say nothing about the other actions and (in CartPole,
with near-deterministic dynamics) repeat nearly the same trajectory. DQN-replay's data, the
discrete benchmark of the CQL paper, was logged by ε-greedy agents for the same reason. 0.05
keeps the behaviour's return close to its greedy snapshot's while every action appears in
every region the policy visits.

ref_min_score is the uniform random policy's mean return and ref_max_score the expert policy's
(ε-greedy, as in its dataset). Ids are `cql_jax/<env>/<kind>-v0`; the names end in "-dqn"
because cql_jax/cartpole holds the scripted CartPole fixture (cql_jax.makers.cartpole).

ENVS and why each: CartPole-v1 (2 actions, +1 per step until the pole falls; short horizon,
DQN is unstable on it, so its checkpoints are genuinely mixed), Acrobot-v1 (3 actions, -1 per
step until the swing-up, 500-step limit: a sparse, goal-reaching reward), LunarLander-v3 (4
actions, shaped reward with a crash/landing bonus, 8-dimensional state: the hardest and the
one most like a control task with several ways to fail).
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Tuple

import numpy as np

from cql_jax.makers import generate
from cql_jax.makers import mujoco_datasets

if TYPE_CHECKING:
  from cql_jax.makers import online


@dataclasses.dataclass(frozen=True)
class EnvSpec:
  """env_id: Gymnasium id; total_steps: DQN's environment steps; num_transitions: per rolled-out
  dataset; target_return: the evaluation return the log reports reaching; dqn: overrides of
  online_dqn.default_config for this environment, as (key, value) pairs."""
  env_id: str
  total_steps: int
  num_transitions: int
  target_return: float
  dqn: Tuple[Tuple[str, Any], ...] = ()


ENVS = {
    # With the default DQN, CartPole peaked at 405 (35k steps) and fell back to 100-270, the
    # known instability of DQN on CartPole, and reached the medium level at the first evaluation
    # (5k steps), so medium-replay was 4k near-random transitions. Double DQN, a 100k buffer,
    # lr 3e-4 and ε over 20% held 500 from 85k to 100k steps, with medium at 75k.
    "cartpole-dqn": EnvSpec("CartPole-v1", 100_000, 100_000, 475.0,
                            dqn=(("double_dqn", True), ("buffer_capacity", 100_000), ("lr", 3e-4),
                                 ("epsilon_fraction", 0.2))),
    "acrobot-dqn": EnvSpec("Acrobot-v1", 100_000, 100_000, -100.0),
    "lunarlander-dqn": EnvSpec("LunarLander-v3", 300_000, 100_000, 200.0),
}
# Recipes are tuned on "dev" only; "test" is run once per candidate recipe, never tuned on.
# LunarLander is held out because it differs most from the two dev tasks (4 actions, a shaped
# reward with terminal bonuses, episodes to 1000 steps): a recipe that only suits short
# +1/-1-per-step tasks should be found out there.
SPLITS = {"dev": ("cartpole-dqn", "acrobot-dqn"), "test": ("lunarlander-dqn",)}
KINDS = mujoco_datasets.KINDS
VERSION = 0
BEHAVIOUR_EPSILON = 0.05
ROLLOUT_BATCH = mujoco_datasets.ROLLOUT_BATCH


def dataset_id(env_name: str, kind: str, version: int = VERSION) -> str:
  """E.g. dataset_id("acrobot-dqn", "medium") == "cql_jax/acrobot-dqn/medium-v0"."""
  if env_name not in ENVS or kind not in KINDS:
    raise ValueError(f"unknown env {env_name!r} or kind {kind!r}; choose from {list(ENVS)} and "
                     f"{KINDS}")
  return f"cql_jax/{env_name}/{kind}-v{version}"


def epsilon_greedy_policy(agent, state, params, epsilon: float, num_actions: int, *,
                          batch: int = ROLLOUT_BATCH) -> generate.Policy:
  """A generate.Policy: the greedy action of Q-network `params`, ε-greedy on the host.

  Observations are zero-padded to `batch` rows so one compiled act serves every call.
  """
  import jax  # local: the ids and splits above need no JAX (scripts' --help).
  from cql_jax.makers import online_dqn
  state = state.replace(params=jax.device_put(params))
  act = jax.jit(agent.act, static_argnums=3)
  calls = itertools.count()  # a greedy act ignores its key, but each call gets its own.

  def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rows = obs.shape[0]
    padded = np.zeros((batch, obs.shape[1]), np.float32)
    padded[:rows] = obs
    key = jax.random.fold_in(jax.random.key(0), next(calls))
    greedy = np.asarray(act(state, padded, key, True))[:rows]
    return online_dqn.epsilon_greedy(greedy, epsilon, num_actions, rng)
  return policy


def uniform_policy(num_actions: int) -> generate.Policy:
  """Uniform random actions, int64 [B]."""
  def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, num_actions, size=obs.shape[0]).astype(np.int64)
  return policy


def pick_snapshots(snapshots: List[dict], random_return: float) -> tuple:
  """(medium, expert) snapshot dicts {"step", "mean_return", "params"}: mujoco_datasets'
  rule (module docstring)."""
  return mujoco_datasets.pick_snapshots(snapshots, random_return)


def write_all(env_name: str, run: online.OnlineResult, snapshots: List[dict], *,
              num_transitions: int, ref_episodes: int, seed: int, train_text: str,
              kinds: Sequence[str] = KINDS, log=print) -> Dict[str, dict]:
  """Rolls out the behaviour policies and writes the datasets of `kinds`; returns their stats.

  snapshots: [{"step", "mean_return", "params"}] from the DQN run's evaluations.
  """
  import gymnasium as gym

  env_id = ENVS[env_name].env_id
  num_actions = int(gym.make(env_id).action_space.n)
  random = uniform_policy(num_actions)
  with generate.Timer() as ref_timer:
    ref_min = generate.average_return(env_id, random, ref_episodes, seed=seed + 1_000)
    medium, expert = pick_snapshots(snapshots, ref_min)
    policies = {"random": random}
    for name, snap in (("medium", medium), ("expert", expert)):
      policies[name] = epsilon_greedy_policy(run.agent, run.state, snap["params"],
                                             BEHAVIOUR_EPSILON, num_actions)
    ref_max = generate.average_return(env_id, policies["expert"], ref_episodes, seed=seed + 2_000)
  log(f"{env_id} references: random {ref_min:.1f}, expert {ref_max:.1f} "
      f"({ref_timer.seconds:.0f}s); medium snapshot step {medium['step']} eval "
      f"{medium['mean_return']:.1f}, expert snapshot step {expert['step']} eval "
      f"{expert['mean_return']:.1f}")
  acting = f"actions epsilon-greedy with epsilon = {BEHAVIOUR_EPSILON}"
  snap_text = {
      "medium": (f"DQN snapshot at env step {medium['step']}, the first greedy evaluation (10 "
                 f"episodes) at or above a third of the way from the random policy's return "
                 f"({ref_min:.1f}) to the best evaluation's ({expert['mean_return']:.1f}): "
                 f"{medium['mean_return']:.1f}; {acting}."),
      "expert": (f"DQN snapshot with the best greedy evaluation ({expert['mean_return']:.1f}, "
                 f"env step {expert['step']}); {acting}."),
  }
  descriptions = mujoco_datasets.kind_descriptions(
      random="Uniform random actions.", **snap_text,
      replay=(f"every training episode online DQN finished by env step {medium['step']} (random "
              "warm-up and the epsilon-greedy exploration schedule included), in collection "
              "order."))
  footer = (f"{train_text} ref_min_score = mean return of uniform random actions, ref_max_score = "
            f"mean return of the expert policy (epsilon-greedy), {ref_episodes} episodes each. "
            "Generated by cql_jax.makers.discrete_datasets (experiments/make_datasets.py).")
  return mujoco_datasets.write_kinds(
      env_id, kinds, ids={k: dataset_id(env_name, k) for k in kinds}, policies=policies,
      run_episodes=run.episodes, medium_step=medium["step"], num_transitions=num_transitions,
      descriptions=descriptions, footer=footer, algorithm="cql_jax-dqn", seed=seed,
      ref_min=ref_min, ref_max=ref_max,
      extra_stats={"snapshot_step": {"medium": medium["step"], "expert": expert["step"]}}, log=log)
