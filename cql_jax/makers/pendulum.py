"""Home-made D4RL-style Pendulum-v1 datasets.

Public offline datasets cannot be downloaded here, so the project generates its
own, once, with scripted behaviour policies, and stores them as ordinary Minari
datasets (ids ``cql_jax/pendulum/<kind>-v0``) that the normal loader reads.

Pendulum-v1 facts used below: observation [cos θ, sin θ, θ̇] with θ = 0 upright;
action = torque in [-2, 2] N·m; dynamics θ̈ = 15 sin θ + 3u (g = 10, m = l = 1),
dt = 0.05 s; reward −(θ² + 0.1 θ̇² + 0.001 u²) per step; episodes are always
truncated at 200 steps and never terminate. Actions are stored raw, in [-2, 2].

Kinds (policy names as recorded in the metadata):
  random         uniform random torque.
  medium         the expert, but each step with probability 0.7 a uniform random
                 torque instead (normalised score ≈ 40).
  expert         the expert plus N(0, 0.1²) torque noise (≈ 100).
  medium-replay  a mock replay buffer: episodes in 10 equal consecutive blocks whose
                 random-action probability falls linearly from 1.0 to 0.7, i.e.
                 from the random policy up to the medium policy.
  medium-expert  first half medium episodes, second half expert episodes.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence

import numpy as np

from cql_jax.makers import generate

ENV_ID = "Pendulum-v1"
NAMESPACE = "cql_jax/pendulum"
VERSION = 0
KINDS = generate.D4RL_KINDS

MAX_TORQUE = 2.0
# Reference scores use a fixed seed, independent of the dataset seed, so every
# Pendulum dataset carries the same ref_min/ref_max and scores are comparable.
REF_SEED = 20_200_000
MEDIUM_RANDOM_PROB = 0.7
EXPERT_NOISE_STD = 0.1
REPLAY_BLOCKS = 10

_log = logging.getLogger(__name__)

# Energy of the upright pendulum at rest, in the units of E = ½θ̇² + 15 cos θ
# (E is conserved without torque, since θ̈ = 15 sin θ).
_UPRIGHT_ENERGY = 15.0
# Balance gains: θ̈ ≈ 15θ + 3u with u = −(10θ + 2θ̇) gives θ̈ = −15θ − 6θ̇,
# a well-damped (ζ ≈ 0.77) closed loop; the torque limit caps it near upright.
_KP, _KD = 10.0, 2.0
_BALANCE_COS = 0.85  # switch to the stabiliser within ≈ 32° of upright.


def dataset_id(kind: str, version: int = VERSION) -> str:
  """Minari id of a Pendulum dataset kind, e.g. ``cql_jax/pendulum/medium-v0``."""
  if kind not in KINDS:
    raise ValueError(f"unknown Pendulum dataset kind '{kind}'; choose from {KINDS}.")
  return f"{NAMESPACE}/{kind}-v{version}"


def expert_policy(obs: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
  """Scripted swing-up-and-balance controller (deterministic).

  Far from upright it pumps energy with full torque in the direction of motion
  until E = ½θ̇² + 15 cos θ reaches the upright value 15 (dE/dt = 3uθ̇), then
  brakes; within ≈ 32° of upright a PD law u = −(10θ + 2θ̇) balances it. Mean
  return ≈ −147 over random initial states.

  Args:
    obs: float32 [B, 3] Pendulum observations.
    rng: unused (kept for the Policy signature).

  Returns:
    float32 [B, 1] torques in [-2, 2].
  """
  del rng
  cos, sin, vel = obs[:, 0], obs[:, 1], obs[:, 2]
  theta = np.arctan2(sin, cos)
  energy = 0.5 * vel**2 + 15.0 * cos
  direction = np.where(vel >= 0.0, 1.0, -1.0)  # at rest, push either way to start swinging.
  pump = MAX_TORQUE * direction * np.sign(_UPRIGHT_ENERGY - energy)
  balance = -(_KP * theta + _KD * vel)
  torque = np.where(cos > _BALANCE_COS, balance, pump)
  return np.clip(torque, -MAX_TORQUE, MAX_TORQUE)[:, None].astype(np.float32)


def random_policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Uniform random torque, float32 [B, 1] in [-2, 2]."""
  return rng.uniform(-MAX_TORQUE, MAX_TORQUE, size=(obs.shape[0], 1)).astype(np.float32)


def degraded_expert(random_prob: float = 0.0, noise_std: float = 0.0) -> generate.Policy:
  """The expert with Gaussian torque noise and per-step random-action replacement.

  Args:
    random_prob: probability, per step and env, of a uniform random torque instead.
    noise_std: standard deviation of Gaussian noise added to the expert torque (N·m).

  Returns:
    Policy mapping float32 [B, 3] observations to float32 [B, 1] torques in [-2, 2].
  """
  return generate.degrade(expert_policy, random_policy, -MAX_TORQUE, MAX_TORQUE, random_prob,
                          noise_std)


def medium_policy() -> generate.Policy:
  return degraded_expert(random_prob=MEDIUM_RANDOM_PROB)


def noisy_expert() -> generate.Policy:
  return degraded_expert(noise_std=EXPERT_NOISE_STD)


_DESCRIPTIONS = {
    "random": "Every action is a uniform random torque in [-2, 2].",
    "medium": (f"Medium policy: the scripted expert, but at each step with probability "
               f"{MEDIUM_RANDOM_PROB} the torque is replaced by a uniform random torque in [-2, 2]."),
    "expert": (f"Expert policy: the scripted expert plus N(0, {EXPERT_NOISE_STD}^2) torque noise, "
               "clipped to [-2, 2]."),
    "medium-replay": (
        f"Mock replay buffer up to the medium policy: episodes in {REPLAY_BLOCKS} consecutive "
        "equal blocks; block k uses the scripted expert with per-step random-action probability "
        f"linspace(1.0, {MEDIUM_RANDOM_PROB}, {REPLAY_BLOCKS})[k] (1.0 = uniform random)."),
    "medium-expert": ("First half of the episodes from the medium policy (random-action probability "
                      f"{MEDIUM_RANDOM_PROB}), second half from the expert policy (noise std "
                      f"{EXPERT_NOISE_STD})."),
}
_EXPERT_TEXT = (
    "Scripted expert: energy pumping (full torque along the angular velocity until "
    "E = 0.5*thdot^2 + 15*cos(th) reaches 15, the upright energy) and, when cos(th) > 0.85, "
    "the PD stabiliser u = -(10*th + 2*thdot); torque clipped to [-2, 2].")


def make_episodes(kind: str, num_episodes: int, seed: int) -> list:
  """Rolls out the behaviour policy of ``kind``; deterministic given ``seed``.

  Returns:
    List of ``num_episodes`` EpisodeBuffers (ids 0..E-1), actions float32 [200, 1]
    raw torques in [-2, 2].
  """
  return generate.d4rl_episodes(
      ENV_ID, kind, num_episodes, seed, random=random_policy, medium=medium_policy(),
      expert=noisy_expert(), replay_policy=lambda p: degraded_expert(random_prob=p),
      replay_blocks=REPLAY_BLOCKS, medium_random_prob=MEDIUM_RANDOM_PROB)


def reference_scores(num_episodes: int = 100) -> tuple:
  """(ref_min, ref_max): mean returns of the uniform random policy and of the
  noiseless scripted expert over ``num_episodes`` episodes each, seeded by REF_SEED."""
  return generate.reference_scores(ENV_ID, random_policy, expert_policy, num_episodes, REF_SEED)


def ensure_pendulum_datasets(kinds: Sequence[str] = KINDS, num_episodes: int = 100,
                             seed: int = 0, ref_episodes: int = 100,
                             version: int = VERSION) -> Dict[str, dict]:
  """Generates the Pendulum datasets that are not stored locally yet.

  Existing ids are left untouched (Minari never overwrites; delete the directory
  under :func:`cql_jax.data.paths.datasets_root` to regenerate).

  Args:
    kinds: subset of KINDS.
    num_episodes: episodes per dataset (200 transitions each).
    seed: dataset seed (policy noise and reset seeds).
    ref_episodes: episodes per reference policy for ref_min/ref_max (≥ 100 for
      the real datasets; tests may use fewer).
    version: dataset version suffix.

  Returns:
    {dataset_id: info}: generate.ensure_datasets' (whether it was made, its wall time, returns,
    references and size; the wall time, seed and mean return are also stored in the dataset
    metadata).
  """
  ids = {kind: dataset_id(kind, version) for kind in kinds}

  def describe(kind: str, n: int) -> str:
    return (f"{_DESCRIPTIONS[kind]} {_EXPERT_TEXT} Environment {ENV_ID} (200-step time limit, "
            f"episodes only truncate). {n} episodes, seed {seed}; reset seeds and "
            "policy noise come from numpy default_rng([seed, kind index]). Actions are the raw "
            f"env torques in [-2, 2]. ref_min_score = mean return of a uniform random policy and "
            f"ref_max_score = mean return of the noiseless scripted expert, {ref_episodes} "
            f"episodes each (seed {REF_SEED}). Generated by cql_jax.makers.pendulum.")

  return generate.ensure_datasets(
      ENV_ID, ids, episodes=lambda kind: num_episodes,
      make_episodes=lambda kind, n: make_episodes(kind, n, seed),
      reference_scores=lambda: reference_scores(ref_episodes), describe=describe,
      algorithm="scripted-pendulum", seed=seed, log=_log)


if __name__ == "__main__":
  import argparse
  import json

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kinds", nargs="*", default=list(KINDS))
  parser.add_argument("--num-episodes", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  logging.basicConfig(level=logging.INFO)
  print(json.dumps(ensure_pendulum_datasets(args.kinds, args.num_episodes, args.seed), indent=1))
