"""Home-made D4RL-style continuous-control datasets, collected with the project's own online SAC.

D4RL's locomotion data cannot be downloaded here, and Minari's `mujoco/*` datasets are not the
D4RL ones, so the project makes its own, D4RL's way (Fu et al. 2020), for the MuJoCo locomotion
tasks (an hour of SAC each on a 2-core CPU) and for cheap control tasks that SAC learns in
minutes (ENVS; SETTINGS holds each one's SAC budget and dataset size):

  random         uniform random actions.
  medium         the first SAC policy snapshot after the warm-up whose sampled actions' return
                 reached a third of the way from the random policy's return to the expert's.
  expert         the best SAC snapshot, trained to the end of the budget (sampled actions).
  medium-replay  every training episode SAC finished up to the medium snapshot's step, warm-up
                 included: the replay buffer at that point, in collection order.
  medium-expert  the medium episodes followed by the expert episodes.

ref_min_score is the uniform random policy's mean return and ref_max_score the expert policy's
(sampled actions, as in its dataset). Ids are `cql_jax/<env>/<kind>-v0`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from cql_jax.makers import generate

if TYPE_CHECKING:  # only annotations use it; the runner imports this module for ENVS alone.
  from cql_jax.makers import online

ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5",
        # "pendulum-sac": cql_jax/pendulum/ holds the scripted controllers' data (a test fixture).
        "pendulum-sac": "Pendulum-v1", "inverteddoublependulum": "InvertedDoublePendulum-v5",
        "reacher": "Reacher-v5", "invertedpendulum": "InvertedPendulum-v5"}
LOCOMOTION = ("hopper", "halfcheetah", "walker2d")


class Settings(NamedTuple):
  """One environment's SAC run and dataset size (experiments/make_datasets.py's defaults).

  total_steps: SAC environment steps; warmup_steps: uniform random steps before learning;
  eval_every: environment steps between evaluations (= policy snapshots: fine enough to catch
  the medium point); max_minutes: wall-time cap of SAC; num_transitions: transitions of each
  rolled-out dataset (random, medium, expert; D4RL: 1M); target_return: the evaluation return
  the log reports reaching (a learner that never gets there made no expert); hidden: width of
  SAC's two hidden layers (actor and critics).
  """
  total_steps: int
  warmup_steps: int
  eval_every: int
  max_minutes: float
  num_transitions: int
  target_return: float
  hidden: int = 256


# The control tasks' budgets were measured on one shared core of the 2-core CPU (RESULTS.md);
# their SAC is narrower than the locomotion tasks' 256 (a quarter of the update's cost or less).
SETTINGS = {
    "hopper": Settings(1_000_000, 10_000, 10_000, 45.0, 200_000, 2500.0),
    "halfcheetah": Settings(1_000_000, 10_000, 10_000, 45.0, 200_000, 4000.0),
    "walker2d": Settings(1_000_000, 10_000, 10_000, 45.0, 200_000, 2500.0),
    # Pendulum learns to swing up within ~1000 steps: snapshots every episode (200 steps).
    "pendulum-sac": Settings(12_000, 2_000, 200, 10.0, 50_000, -200.0, hidden=64),
    # Its evaluation return jumps from ~1300 to ~9360 (balanced to the time limit) in 2500 steps.
    "inverteddoublependulum": Settings(30_000, 5_000, 500, 15.0, 50_000, 9000.0, hidden=128),
    "reacher": Settings(30_000, 5_000, 2_500, 15.0, 50_000, -7.0, hidden=128),
    # Terminates when the pole falls, 1 per step up to 1000: a return that jumps once SAC
    # balances, so snapshots every 250 steps to catch a medium policy before it does.
    "invertedpendulum": Settings(60_000, 2_000, 250, 10.0, 50_000, 1000.0, hidden=64),
}
KINDS = generate.D4RL_KINDS
VERSION = 0
ROLLOUT_BATCH = 16


def dataset_id(env_name: str, kind: str, version: int = VERSION) -> str:
  """E.g. dataset_id("hopper", "medium") == "cql_jax/hopper/medium-v0"."""
  if env_name not in ENVS or kind not in KINDS:
    raise ValueError(f"unknown env {env_name!r} or kind {kind!r}; choose from {list(ENVS)} and "
                     f"{KINDS}")
  return f"cql_jax/{env_name}/{kind}-v{version}"


def agent_policy(agent, state, actor_params, *, deterministic: bool,
                 batch: int = ROLLOUT_BATCH) -> generate.Policy:
  """A generate.Policy running `agent.act` with `actor_params` in place of the state's.

  Observations are zero-padded to `batch` rows so one compiled act serves every call
  (rollout_episodes passes fewer rows as its environments finish). Policy noise comes from
  the caller's NumPy generator, via a fresh JAX key per call.
  """
  import jax  # local: the dataset names and ids above need no JAX (scripts' --help).
  state = state.replace(actor_params=jax.device_put(actor_params))
  act = jax.jit(agent.act, static_argnums=3)

  def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rows = obs.shape[0]
    padded = np.zeros((batch, obs.shape[1]), np.float32)
    padded[:rows] = obs
    key = jax.random.key(int(rng.integers(0, 2**31 - 1)))
    return np.asarray(act(state, padded, key, deterministic))[:rows]
  return policy


def uniform_policy(low: np.ndarray, high: np.ndarray) -> generate.Policy:
  """Uniform random actions in [low, high], float32 [B, A]."""
  def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(low, high, size=(obs.shape[0], low.shape[0])).astype(np.float32)
  return policy


def rollout_transitions(env_id: str, policy: generate.Policy, num_transitions: int,
                        rng: np.random.Generator) -> list:
  """Whole episodes, ROLLOUT_BATCH at a time, until they hold >= num_transitions steps."""
  episodes, total = [], 0
  while total < num_transitions:
    block = generate.rollout_episodes(env_id, policy, ROLLOUT_BATCH, rng=rng,
                                      batch_size=ROLLOUT_BATCH)
    episodes += block
    total += sum(len(ep.rewards) for ep in block)
  return generate.renumber(episodes)


def training_episodes(episodes: Sequence[online.Episode], up_to_step: int) -> list:
  """SAC's finished training episodes that ended at or before `up_to_step`, as EpisodeBuffers."""
  from minari.data_collector import EpisodeBuffer
  kept = [ep for ep in episodes if ep.end_step <= up_to_step]
  return [EpisodeBuffer(id=i, observations=ep.observations, actions=ep.actions,
                        rewards=list(ep.rewards), terminations=list(ep.terminations),
                        truncations=list(ep.truncations)) for i, ep in enumerate(kept)]


def pick_snapshots(snapshots: List[dict], random_return: float,
                   sampled_return: Optional[Callable[[dict], float]] = None,
                   learning_from: int = 0) -> tuple:
  """(medium, expert) snapshot dicts {"step", "mean_return", "actor_params", ...}.

  expert: the best evaluation (deterministic) return. medium: the first snapshot taken after
  `learning_from` (the warm-up's end) whose `sampled_return` (the mean return of its sampled
  actions, the way its dataset is rolled out) reached a third of the way from `random_return`
  to the expert's sampled return, measured the same way (the D4RL recipe: a policy trained to
  about a third of the expert). So the expert itself always qualifies once it beats random.

  Measured from the random return, not from 0, because returns may be negative (Pendulum:
  random ≈ −1290, expert ≈ −150). Sampled, not deterministic, returns, because the two can
  disagree wildly: on Reacher the untrained actor's mean action (zero torque) scores −11, a
  third of the way past random (−42), while its sampled actions score −55, below random. Only
  snapshots up to the medium one are rolled out. Each one rolled out gets "sampled_return".

  sampled_return=None scores every snapshot by its evaluation return "mean_return" instead (the
  discrete makers' policies act as they are evaluated).

  Raises:
    ValueError: the expert's sampled actions do not beat the random policy, or it was taken
      during the warm-up (the learner learned nothing; train longer or check the reward).
  """
  if sampled_return is None:
    sampled_return = lambda snap: snap["mean_return"]
  expert = max(snapshots, key=lambda s: s["mean_return"])
  expert["sampled_return"] = float(sampled_return(expert))
  if expert["sampled_return"] <= random_return or expert["step"] <= learning_from:
    raise ValueError(f"the best SAC snapshot (step {expert['step']}, sampled return "
                     f"{expert['sampled_return']:.1f}) does not beat the random policy "
                     f"({random_return:.1f}) after the warm-up (step {learning_from}); no medium "
                     "or expert policy can be made from this run: train longer (--total_steps) or "
                     "check the environment's reward.")
  level = random_return + (expert["sampled_return"] - random_return) / 3.0
  for snap in snapshots:
    if snap["step"] <= learning_from:
      continue
    if "sampled_return" not in snap:
      snap["sampled_return"] = float(sampled_return(snap))
    if snap["sampled_return"] >= level:
      return snap, expert
  raise AssertionError("unreachable: the expert reaches its own level")


def write_all(env_name: str, run: online.OnlineResult, snapshots: List[dict], *,
              num_transitions: int, ref_episodes: int, seed: int, train_text: str,
              kinds: Sequence[str] = KINDS, learning_from: int = 0,
              medium_episodes: int = 10, log=print) -> Dict[str, dict]:
  """Rolls out the behaviour policies and writes the datasets of `kinds`; returns their stats.

  learning_from: SAC's warm-up steps (no snapshot before learning starts can be the medium
  policy); medium_episodes: episodes of sampled actions that score each medium candidate.
  """
  import gymnasium as gym

  env_id = ENVS[env_name]
  space = gym.make(env_id).action_space
  low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
  with generate.Timer() as ref_timer:
    random = uniform_policy(low, high)
    ref_min = generate.average_return(env_id, random, ref_episodes, seed=seed + 1_000)
    sampled = lambda snap: agent_policy(run.agent, run.state, snap["actor_params"],
                                        deterministic=False)
    best = max(snapshots, key=lambda s: s["mean_return"])
    ref_max = generate.average_return(env_id, sampled(best), ref_episodes, seed=seed + 1_001)
    medium, expert = pick_snapshots(
        snapshots, ref_min, learning_from=learning_from,
        sampled_return=lambda snap: generate.average_return(env_id, sampled(snap),
                                                            medium_episodes, seed=seed + 1_002))
    policies = {"random": random, "medium": sampled(medium), "expert": sampled(expert)}
  log(f"{env_id} references: random {ref_min:.1f}, expert {ref_max:.1f} "
      f"({ref_timer.seconds:.0f}s); medium snapshot step {medium['step']} eval "
      f"{medium['mean_return']:.1f} (sampled {medium['sampled_return']:.1f}), expert snapshot step {expert['step']} eval "
      f"{expert['mean_return']:.1f}")
  snap_text = {
      "medium": (f"SAC snapshot at env step {medium['step']}, the first after the warm-up whose "
                 f"sampled actions scored ({medium['sampled_return']:.1f}, {medium_episodes} "
                 f"episodes) at least a third of the way from the random policy's return "
                 f"({ref_min:.1f}) to the expert's ({ref_max:.1f}); actions sampled from it."),
      "expert": (f"SAC snapshot with the best evaluation return ({expert['mean_return']:.1f}, "
                 f"env step {expert['step']}); actions sampled from the policy."),
  }
  descriptions = kind_descriptions(
      random="Uniform random actions in the action box.", **snap_text,
      replay=(f"every training episode online SAC finished by env step {medium['step']} (random "
              "warm-up included), in collection order."))
  footer = (f"{train_text} ref_min_score = mean return of uniform random actions, ref_max_score = "
            f"mean return of the expert policy (sampled actions), {ref_episodes} episodes each. "
            "Generated by cql_jax.makers.mujoco_datasets (experiments/make_datasets.py).")
  return write_kinds(env_id, kinds, ids={k: dataset_id(env_name, k) for k in kinds},
                     policies=policies, run_episodes=run.episodes, medium_step=medium["step"],
                     num_transitions=num_transitions, descriptions=descriptions, footer=footer,
                     algorithm="cql_jax-sac", seed=seed, ref_min=ref_min, ref_max=ref_max, log=log)


def kind_descriptions(*, random: str, medium: str, expert: str, replay: str) -> Dict[str, str]:
  """Each D4RL kind's description: `random`, `medium` and `expert` describe the three behaviour
  policies and `replay` which training episodes medium-replay keeps. The two mixed kinds repeat
  the policy texts, so every dataset's description stands on its own."""
  return {
      "random": random,
      "medium": "Medium policy: " + medium,
      "expert": "Expert policy: " + expert,
      "medium-replay": f"Replay buffer up to the medium policy: {replay} {medium}",
      "medium-expert": f"The medium dataset's episodes followed by the expert dataset's. {medium} "
                       f"{expert}",
  }


def write_kinds(env_id: str, kinds: Sequence[str], *, ids: Dict[str, str],
                policies: Dict[str, generate.Policy], run_episodes: Sequence,
                medium_step: int, num_transitions: int, descriptions: Dict[str, str],
                footer: str, algorithm: str, seed: int, ref_min: float, ref_max: float,
                extra_stats: Optional[dict] = None, log=print) -> Dict[str, dict]:
  """Rolls out (or replays) each D4RL kind and writes it as a Minari dataset; per-id stats.

  ids: kind -> dataset id. policies: "random", "medium", "expert" behaviour policies.
  run_episodes: the online learner's training episodes; medium-replay keeps those finished by
  `medium_step`. medium-expert reuses the medium and expert rollouts made for their own kinds
  (or rolls them out once). descriptions[kind] + the environment + `footer` become each
  dataset's description; algorithm + "-" + kind its algorithm name. extra_stats join each
  id's stats.
  """
  from cql_jax.scores import normalized_score  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng([seed, 7])
  made: Dict[str, list] = {}
  stats: Dict[str, dict] = {}
  for kind in kinds:
    with generate.Timer() as timer:
      if kind in ("random", "medium", "expert"):
        episodes = rollout_transitions(env_id, policies[kind], num_transitions, rng)
      elif kind == "medium-replay":
        episodes = training_episodes(run_episodes, medium_step)
      else:
        for part in ("medium", "expert"):
          if part not in made:
            made[part] = rollout_transitions(env_id, policies[part], num_transitions, rng)
        episodes = generate.renumber(made["medium"] + made["expert"])
      made[kind] = episodes
      ds_id = ids[kind]
      description = f"{descriptions[kind]} Environment {env_id}. {footer}"
      written = generate.write_dataset(ds_id, episodes, env_id, ref_min_score=ref_min,
                                       ref_max_score=ref_max, algorithm_name=f"{algorithm}-{kind}",
                                       description=description)
    returns = generate.episode_returns(episodes)
    written.storage.update_metadata({"generation_seconds": round(timer.seconds, 3),
                                     "generation_seed": int(seed),
                                     "behaviour_mean_return": float(returns.mean())})
    stats[ds_id] = {
        "episodes": len(episodes), "transitions": int(sum(len(ep.rewards) for ep in episodes)),
        "mean_return": float(returns.mean()),
        "normalized_score": float(normalized_score(returns.mean(), ref_min, ref_max)),
        "seconds": timer.seconds, "ref_min_score": ref_min, "ref_max_score": ref_max,
        **(extra_stats or {})}
    log(f"wrote {ds_id}: {stats[ds_id]}")
  return stats
