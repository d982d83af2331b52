"""Rolling out NumPy behaviour policies and writing Minari datasets.

Environment-agnostic machinery; ``cql_jax.makers.pendulum`` supplies the policies
for Pendulum-v1. A policy is a NumPy function over a batch of observations,

    policy(obs: float32 [B, O], rng: np.random.Generator) -> actions [B, A],

(for an environment with dict observations, obs is a dict of float32 [B, ...] arrays, and the
datasets keep the dicts),

returning actions in the environment's own units (Pendulum: torque in [-2, 2]).
Several environments are stepped in lockstep so that one policy call serves B of
them, which keeps generation cheap on a CPU.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from cql_jax import rollout
from cql_jax.data import paths

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def rollout_episodes(env_id: str, policy: Policy, num_episodes: int, *,
                     rng: np.random.Generator, seeds: Optional[Sequence[int]] = None,
                     batch_size: int = 16, env_kwargs: Optional[dict] = None) -> list:
  """Runs ``num_episodes`` full episodes and returns them as Minari EpisodeBuffers.

  Episodes end on termination or truncation (the env's TimeLimit). Each episode
  is reset with its own seed. The result is a deterministic function of
  ``seeds``, the state of ``rng`` (the policy's noise) and ``batch_size`` (which
  fixes the order in which ``rng`` is consumed), so keep all three fixed for
  bit-identical reruns. The loop is :func:`cql_jax.rollout.run_episodes`, the one
  evaluation uses; the policy sees only the copies still running an episode.

  Args:
    env_id: Gymnasium id, e.g. "Pendulum-v1".
    policy: batched NumPy policy (see module docstring).
    num_episodes: number of episodes E.
    rng: generator for the policy's noise.
    seeds: [E] reset seeds; default draws them from ``rng``.
    batch_size: environments stepped in lockstep.
    env_kwargs: extra keyword arguments for ``gymnasium.make``.

  Returns:
    List of E ``minari.data_collector.EpisodeBuffer`` with ``id`` = episode index,
    observations [T+1, O] float32, actions [T, A], rewards [T] float64,
    terminations/truncations [T] bool.
  """
  import gymnasium as gym
  from minari.data_collector import EpisodeBuffer

  if seeds is None:
    seeds = rng.integers(0, 2**31 - 1, size=num_episodes)
  seeds = [int(s) for s in seeds]
  if len(seeds) != num_episodes:
    raise ValueError(f"got {len(seeds)} seeds for {num_episodes} episodes.")
  num_envs = max(1, min(batch_size, num_episodes))
  env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **(env_kwargs or {}))
  try:
    records = rollout.run_episodes(
        env, lambda obs: policy(obs, rng), seeds, record=True, active_only=True,
        obs_transform=_float32)
  finally:
    env.close()
  return [EpisodeBuffer(id=i, seed=r.seed, observations=r.observations, actions=r.actions,
                        rewards=r.rewards.tolist(), terminations=r.terminations.tolist(),
                        truncations=r.truncations.tolist())
          for i, r in enumerate(records)]


def _float32(obs):
  """float32 observations; a dict observation (goal-conditioned mazes) stays a dict, per key."""
  if isinstance(obs, dict):
    return {k: _float32(v) for k, v in obs.items()}
  return np.asarray(obs, dtype=np.float32)


def degrade(expert: Policy, random: Policy, low: float, high: float, random_prob: float = 0.0,
            noise_std: float = 0.0) -> Policy:
  """`expert` with Gaussian action noise of std `noise_std`, then, per step and environment with
  probability `random_prob`, `random`'s action instead; clipped to [low, high], float32."""
  def policy(obs, rng: np.random.Generator) -> np.ndarray:
    action = expert(obs, None)
    if noise_std > 0.0:
      action = action + noise_std * rng.standard_normal(action.shape)
    if random_prob > 0.0:
      replace = rng.random((action.shape[0], 1)) < random_prob
      action = np.where(replace, random(obs, rng), action)
    return np.clip(action, low, high).astype(np.float32)
  return policy


def episode_returns(episodes: Sequence) -> np.ndarray:
  """Undiscounted return of each EpisodeBuffer, float64 [E]."""
  return np.asarray([float(np.sum(ep.rewards)) for ep in episodes], dtype=np.float64)


def average_return(env_id: str, policy: Policy, num_episodes: int, *, seed: int,
                   batch_size: int = 16, env_kwargs: Optional[dict] = None) -> float:
  """Mean undiscounted return of ``policy`` over ``num_episodes`` seeded episodes."""
  rng = np.random.default_rng(seed)
  episodes = rollout_episodes(env_id, policy, num_episodes, rng=rng, batch_size=batch_size,
                              env_kwargs=env_kwargs)
  return float(np.mean(episode_returns(episodes)))


def renumber(episodes: Sequence) -> list:
  """Gives concatenated episodes the ids 0..E-1 that a Minari dataset expects."""
  import dataclasses
  return [dataclasses.replace(ep, id=i) for i, ep in enumerate(episodes)]


def write_dataset(dataset_id: str, episodes: Sequence, env_id: str, *,
                  ref_min_score: float, ref_max_score: float, algorithm_name: str,
                  description: str, env_kwargs: Optional[dict] = None,
                  author: str = "cql_jax") -> "minari.MinariDataset":  # noqa: F821
  """Writes episodes as a Minari dataset under :func:`paths.datasets_root`.

  Args:
    dataset_id: "namespace/name-vN", e.g. "cql_jax/pendulum/medium-v0".
    episodes: EpisodeBuffers (renumbered here to ids 0..E-1).
    env_id: Gymnasium id recorded as both the collection and evaluation env.
    ref_min_score, ref_max_score: mean returns of the random and expert reference
      policies, stored in the metadata for normalised scores.
    algorithm_name: short name of the behaviour policy.
    description: how the data was made (recorded verbatim).
    env_kwargs: keyword arguments for ``gymnasium.make`` recorded in the env spec.
    author: recorded author.

  Returns:
    The new MinariDataset.

  Raises:
    ValueError: if ``dataset_id`` already exists locally (Minari never overwrites).
  """
  import gymnasium as gym
  import minari
  from minari.dataset.minari_dataset import parse_dataset_id

  parse_dataset_id(dataset_id)  # fail early on a malformed id, before rolling anything out.
  paths.datasets_root()
  env = gym.make(env_id, **(env_kwargs or {}))
  try:
    with warnings.catch_warnings():
      # We deliberately record no code permalink or e-mail; Minari warns about both.
      warnings.filterwarnings("ignore", message=".*is set to None.*", category=UserWarning)
      return minari.create_dataset_from_buffers(
          dataset_id=dataset_id, buffer=renumber(episodes), env=env.spec, eval_env=env.spec,
          algorithm_name=algorithm_name, author=author, ref_min_score=float(ref_min_score),
          ref_max_score=float(ref_max_score), description=description)
  finally:
    env.close()


class Timer:
  """Wall-clock seconds of a ``with`` block, in ``.seconds``."""

  def __enter__(self):
    self._start = time.perf_counter()
    self.seconds = 0.0
    return self

  def __exit__(self, *exc):
    self.seconds = time.perf_counter() - self._start
    return False


__all__: List[str] = ["Policy", "rollout_episodes", "episode_returns", "average_return",
                      "renumber", "write_dataset", "Timer"]


# D4RL's five dataset kinds; a kind's index seeds its own random stream (d4rl_episodes).
D4RL_KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")


def _blocks(total: int, parts: int) -> list:
  """Sizes of `parts` near-equal consecutive blocks summing to `total`."""
  parts = max(1, min(parts, total))
  return [len(b) for b in np.array_split(np.arange(total), parts)]


def d4rl_plan(kind: str, num_episodes: int, *, random: Policy, medium: Policy, expert: Policy,
              replay_policy: Callable[[float], Policy], replay_blocks: int,
              medium_random_prob: float) -> list:
  """Which behaviour policy rolls out how many episodes, for a D4RL-style dataset kind.

  random / medium / expert: one policy each. medium-replay mocks a replay buffer up to the
  medium policy: `replay_blocks` consecutive blocks whose policies are
  replay_policy(p) for p = linspace(1.0, medium_random_prob) (1.0 = random). medium-expert
  is the first half medium, the second half expert. Returns [(policy, episodes), ...].
  """
  if kind == "random":
    return [(random, num_episodes)]
  if kind == "medium":
    return [(medium, num_episodes)]
  if kind == "expert":
    return [(expert, num_episodes)]
  if kind == "medium-replay":
    sizes = _blocks(num_episodes, replay_blocks)
    probs = np.linspace(1.0, medium_random_prob, len(sizes))
    return [(replay_policy(float(p)), n) for p, n in zip(probs, sizes)]
  if kind == "medium-expert":
    half = num_episodes // 2
    return [(medium, half), (expert, num_episodes - half)]
  raise ValueError(f"unknown dataset kind '{kind}'; choose from {D4RL_KINDS}.")


def rollout_plan(env_id: str, plan: Sequence, *, rng: np.random.Generator,
                 seeds: np.ndarray) -> list:
  """Rolls out each (policy, episodes) of `plan` in order, with one reset seed per episode.

  Returns the EpisodeBuffers of all blocks, renumbered 0..E-1.
  """
  episodes, start = [], 0
  for policy, n in plan:
    if n == 0:
      continue
    episodes += rollout_episodes(env_id, policy, n, rng=rng, seeds=seeds[start:start + n])
    start += n
  return renumber(episodes)


def d4rl_episodes(env_id: str, kind: str, num_episodes: int, seed: int, *, random: Policy,
                  medium: Policy, expert: Policy, replay_policy: Callable[[float], Policy],
                  replay_blocks: int, medium_random_prob: float) -> list:
  """Rolls out d4rl_plan(kind, ...) (same policy arguments); deterministic given `seed`.

  Each kind draws from its own stream, default_rng([seed, D4RL_KINDS.index(kind)]), so a kind's
  episodes do not depend on which other kinds were made or in what order. Returns
  `num_episodes` EpisodeBuffers with ids 0..E-1.
  """
  if num_episodes < 1:
    raise ValueError(f"num_episodes must be >= 1, got {num_episodes}.")
  plan = d4rl_plan(kind, num_episodes, random=random, medium=medium, expert=expert,
                   replay_policy=replay_policy, replay_blocks=replay_blocks,
                   medium_random_prob=medium_random_prob)
  rng = np.random.default_rng([seed, D4RL_KINDS.index(kind)])
  seeds = rng.integers(0, 2**31 - 1, size=num_episodes)
  return rollout_plan(env_id, plan, rng=rng, seeds=seeds)


def reference_scores(env_id: str, random_policy: Policy, expert_policy: Policy,
                     num_episodes: int, seed: int) -> tuple:
  """(ref_min, ref_max): mean returns of the random and the expert policy over `num_episodes`
  episodes each (seeds `seed` and `seed + 1`), the D4RL normalisation references."""
  return (average_return(env_id, random_policy, num_episodes, seed=seed),
          average_return(env_id, expert_policy, num_episodes, seed=seed + 1))


def ensure_datasets(env_id: str, ids: Dict[str, str], *, episodes: Callable[[str], int],
                    make_episodes: Callable[[str, int], list],
                    reference_scores: Callable[[], tuple], describe: Callable[[str, int], str],
                    algorithm: str, seed: int, log: logging.Logger) -> Dict[str, dict]:
  """Writes the scripted datasets of `ids` (kind -> dataset id) that are not stored locally yet.

  A stored id is never regenerated (Minari never overwrites). The references are rolled out
  only when something is missing, and once for all kinds, so every kind carries the same ones.

  Args:
    env_id: Gymnasium id the episodes come from.
    ids: kind -> Minari dataset id, in the order to make them.
    episodes: kind -> number of episodes of a new dataset.
    make_episodes: (kind, episodes) -> EpisodeBuffers of the kind's behaviour policy.
    reference_scores: () -> (ref_min, ref_max), the mean returns of the random and the expert
      policy.
    describe: (kind, episodes) -> the dataset's description.
    algorithm: prefix of the recorded algorithm name, `<algorithm>-<kind>`.
    seed: the dataset seed, recorded in the metadata.
    log: where progress goes (the maker's logger).

  Returns:
    {dataset_id: info}; info has "generated" (bool) and, for new datasets, "seconds" (wall time
    of rollout + writing), "mean_return", "normalized_score", "ref_min_score", "ref_max_score",
    "num_episodes", "num_transitions" and "ref_seconds" (wall time of the reference rollouts).
    The wall time, seed and mean return also go into the dataset metadata as
    "generation_seconds", "generation_seed" and "behaviour_mean_return".
  """
  from cql_jax.scores import normalized_score  # pylint: disable=import-outside-toplevel

  todo = [kind for kind, ds_id in ids.items() if not paths.dataset_exists(ds_id)]
  info: Dict[str, dict] = {ds_id: {"generated": False} for ds_id in ids.values()}
  if not todo:
    return info
  with Timer() as ref_timer:
    ref_min, ref_max = reference_scores()
  log.info("%s reference scores: random %.1f, expert %.1f (%.1fs)", env_id, ref_min, ref_max,
           ref_timer.seconds)
  for kind in todo:
    ds_id, n = ids[kind], episodes(kind)
    with Timer() as timer:
      made = make_episodes(kind, n)
      written = write_dataset(ds_id, made, env_id, ref_min_score=ref_min, ref_max_score=ref_max,
                              algorithm_name=f"{algorithm}-{kind}", description=describe(kind, n))
    mean_return = float(np.mean(episode_returns(made)))
    # Keep the provenance numbers with the data, not only in a log that may be lost.
    written.storage.update_metadata({
        "generation_seconds": round(timer.seconds, 3), "generation_seed": int(seed),
        "behaviour_mean_return": mean_return})
    info[ds_id] = {
        "generated": True, "seconds": timer.seconds, "mean_return": mean_return,
        "normalized_score": float(normalized_score(mean_return, ref_min, ref_max)),
        "ref_min_score": ref_min, "ref_max_score": ref_max, "num_episodes": n,
        "num_transitions": int(sum(len(ep.rewards) for ep in made)),
        "ref_seconds": ref_timer.seconds,
    }
    log.info("made %s: %d episodes, mean return %.1f (normalised %.1f) in %.1fs", ds_id, n,
             mean_return, info[ds_id]["normalized_score"], timer.seconds)
  return info
