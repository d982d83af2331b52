"""Home-made D4RL-style CartPole-v1 datasets (discrete actions).

Like ``cql_jax.makers.pendulum``: scripted behaviour policies, rolled out once and stored as
ordinary Minari datasets (ids ``cql_jax/cartpole/<kind>-v0``) that the normal loader reads.

CartPole-v1 facts used below: observation [x, ẋ, θ, θ̇] (cart position in m, velocity in m/s,
pole angle in rad with 0 upright, angular velocity in rad/s); actions 0 = push left, 1 = push
right; reward +1 per step; the episode *terminates* when |θ| > 12° or |x| > 2.4 and is
*truncated* at 500 steps. The loader stores discount = 1 - termination, so a pole that falls
ends the backup and a 500-step time limit still bootstraps.

Kinds (policy names as recorded in the metadata):
  random         uniform random actions (mean return ≈ 22).
  medium         the expert, but each step with probability 0.5 a uniform random action.
  expert         the expert with probability 0.05 of a random action (≈ 500).
  medium-replay  a mock replay buffer: episodes in 10 equal consecutive blocks whose
                 random-action probability falls linearly from 1.0 to 0.5, i.e. from the
                 random policy up to the medium policy.
  medium-expert  first half medium episodes, second half expert episodes.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence

import numpy as np

from cql_jax.makers import generate

ENV_ID = "CartPole-v1"
NAMESPACE = "cql_jax/cartpole"
VERSION = 0
KINDS = generate.D4RL_KINDS
NUM_ACTIONS = 2

# Fixed seed for the reference rollouts, so every CartPole dataset carries the same refs.
REF_SEED = 20_200_100
MEDIUM_RANDOM_PROB = 0.5
EXPERT_RANDOM_PROB = 0.05
REPLAY_BLOCKS = 10
# Default episode counts per kind. medium-replay is kept small on purpose: its many short
# near-random episodes and few long medium ones leave the good actions thinly covered, which is
# where offline Q-learning without a penalty goes wrong.
DEFAULT_EPISODES = {"random": 200, "medium": 100, "expert": 50, "medium-replay": 200,
                    "medium-expert": 100}

_log = logging.getLogger(__name__)

# Linear state feedback: push right when w·[x, ẋ, θ, θ̇] > 0. The θ and θ̇ terms balance the pole
# (a PD law on the angle); the small x and ẋ terms stop the cart drifting off the 2.4 m track,
# which an angle-only controller does within 500 steps on some starts. Returns 500 on every
# seeded start we tried.
_EXPERT_GAINS = np.array([0.5, 1.0, 10.0, 2.0], np.float32)


def dataset_id(kind: str, version: int = VERSION) -> str:
  """Minari id of a CartPole dataset kind, e.g. ``cql_jax/cartpole/medium-v0``."""
  if kind not in KINDS:
    raise ValueError(f"unknown CartPole dataset kind '{kind}'; choose from {KINDS}.")
  return f"{NAMESPACE}/{kind}-v{version}"


def expert_policy(obs: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
  """Deterministic linear controller; obs float32 [B, 4] -> int64 [B] actions in {0, 1}."""
  del rng
  return (np.asarray(obs) @ _EXPERT_GAINS > 0.0).astype(np.int64)


def random_policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Uniform random actions, int64 [B]."""
  return rng.integers(0, NUM_ACTIONS, size=obs.shape[0]).astype(np.int64)


def epsilon_expert(random_prob: float) -> generate.Policy:
  """The expert, but each step and env with probability `random_prob` a uniform random action."""

  def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    replace = rng.random(obs.shape[0]) < random_prob
    return np.where(replace, random_policy(obs, rng), expert_policy(obs)).astype(np.int64)

  return policy


_EXPERT_TEXT = ("Scripted expert: push right (action 1) iff 0.5*x + 1.0*x_dot + 10*theta + "
                "2*theta_dot > 0, else left (action 0).")
_DESCRIPTIONS = {
    "random": "Every action is uniform random over {0, 1}.",
    "medium": (f"Medium policy: the scripted expert, but at each step with probability "
               f"{MEDIUM_RANDOM_PROB} a uniform random action instead."),
    "expert": (f"Expert policy: the scripted expert, but at each step with probability "
               f"{EXPERT_RANDOM_PROB} a uniform random action instead."),
    "medium-replay": (
        f"Mock replay buffer up to the medium policy: episodes in {REPLAY_BLOCKS} consecutive "
        "equal blocks; block k uses the scripted expert with per-step random-action probability "
        f"linspace(1.0, {MEDIUM_RANDOM_PROB}, {REPLAY_BLOCKS})[k] (1.0 = uniform random)."),
    "medium-expert": (f"First half of the episodes from the medium policy (random-action "
                      f"probability {MEDIUM_RANDOM_PROB}), second half from the expert policy "
                      f"(random-action probability {EXPERT_RANDOM_PROB})."),
}


def make_episodes(kind: str, num_episodes: int, seed: int) -> list:
  """Rolls out the behaviour policy of `kind`; deterministic given `seed`.

  Returns:
    List of `num_episodes` EpisodeBuffers (ids 0..E-1): observations [T+1, 4] float32,
    actions [T] int64, T <= 500.
  """
  return generate.d4rl_episodes(
      ENV_ID, kind, num_episodes, seed, random=random_policy,
      medium=epsilon_expert(MEDIUM_RANDOM_PROB), expert=epsilon_expert(EXPERT_RANDOM_PROB),
      replay_policy=epsilon_expert, replay_blocks=REPLAY_BLOCKS,
      medium_random_prob=MEDIUM_RANDOM_PROB)


def reference_scores(num_episodes: int = 100) -> tuple:
  """(ref_min, ref_max): mean returns of the uniform random policy and of the noiseless expert
  over `num_episodes` episodes each, seeded by REF_SEED."""
  return generate.reference_scores(ENV_ID, random_policy, expert_policy, num_episodes, REF_SEED)


def ensure_cartpole_datasets(kinds: Sequence[str] = KINDS,
                             num_episodes: Optional[int] = None, seed: int = 0,
                             ref_episodes: int = 100, version: int = VERSION) -> Dict[str, dict]:
  """Generates the CartPole datasets that are not stored locally yet (existing ids are kept).

  Args:
    kinds: subset of KINDS.
    num_episodes: episodes per dataset; None uses DEFAULT_EPISODES[kind]. Only applies to
      datasets made by this call (a stored dataset is never regenerated).
    seed: dataset seed (random actions and reset seeds).
    ref_episodes: episodes per reference policy for ref_min/ref_max.
    version: dataset version suffix.

  Returns:
    {dataset_id: info}: generate.ensure_datasets' (whether it was made, its wall time, returns,
    references and size).
  """
  ids = {kind: dataset_id(kind, version) for kind in kinds}

  def describe(kind: str, n: int) -> str:
    return (f"{_DESCRIPTIONS[kind]} {_EXPERT_TEXT} Environment {ENV_ID}: episodes terminate when "
            "the pole falls past 12 degrees or the cart leaves +-2.4 m, and are truncated at 500 "
            f"steps. {n} episodes, seed {seed}; reset seeds and random actions come from numpy "
            "default_rng([seed, kind index]). ref_min_score = mean return of the uniform random "
            f"policy and ref_max_score = mean return of the noiseless expert, {ref_episodes} "
            f"episodes each (seed {REF_SEED}). Generated by cql_jax.makers.cartpole.")

  return generate.ensure_datasets(
      ENV_ID, ids,
      episodes=lambda kind: DEFAULT_EPISODES[kind] if num_episodes is None else num_episodes,
      make_episodes=lambda kind, n: make_episodes(kind, n, seed),
      reference_scores=lambda: reference_scores(ref_episodes), describe=describe,
      algorithm="scripted-cartpole", seed=seed, log=_log)


if __name__ == "__main__":
  import argparse
  import json

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kinds", nargs="*", default=list(KINDS))
  parser.add_argument("--num-episodes", type=int, default=None)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  logging.basicConfig(level=logging.INFO)
  print(json.dumps(ensure_cartpole_datasets(args.kinds, args.num_episodes, args.seed), indent=1))
