"""OGBench manipulation `play` datasets made here with OGBench's own scripted oracles.

OGBench's datasets are downloaded from its server; without a network the project makes them the
way OGBench's data-generation script does (data_gen_scripts/generate_manipspace.py and the
commands in data_gen_scripts/commands.sh, ogbench 1.2.2):
  - the environment `<env>-v0` made with terminate_at_goal=False, mode="data_collection" and
    episodes of 1001 steps (1000 transitions each after loading);
  - `play` data: OGBench's non-Markovian plan oracle (`ogbench.manipspace.oracles.plan`) with
    action noise 0.1 and noise smoothing 0.5; each time the oracle finishes its task a new target
    is set (`set_new_target`, cube-stacking probability 0 for cube-single); actions clipped to
    [-1, 1]; no random actions (p_random_action 0);
  - per step the observation before the step, the action, `terminals` (the episode's last step),
    and the pre-step `qpos` and `qvel` (what single-task rewards are computed from);
  - num_episodes training episodes, and num_episodes // 10 validation episodes in `<name>-val.npz`,
    both written compressed with OGBench's dtypes.
Full size is OGBench's: 1000 episodes for cube-single and cube-double. OGBench's script never
seeds; here `seed` seeds NumPy's global generator (the oracles draw from it) and the first reset
(the environment's own generator after that), so a dataset is reproducible. A key
`cql_jax_maker` (JSON: settings, package versions, seconds) is added; OGBench's loader ignores it.

Made datasets live in the project's OGBench namespace (cql_jax/<name>, see
`cql_jax.data.ogbench_io`), never under OGBench's own names, so results on them cannot be
mistaken for results on the official data.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import time
from typing import Callable, Optional

import numpy as np

from cql_jax.data import ogbench_io

# OGBench's play-data settings (generate_manipspace.py defaults, commands.sh).
NOISE = 0.1
NOISE_SMOOTHING = 0.5
MAX_EPISODE_STEPS = 1001
FULL_SIZE = {"cube-single-v0": 1000, "cube-double-v0": 1000}
# Cube-stacking probability per episode, by number of cubes (generate_manipspace.py).
_P_STACK = {"single": (0.0, 0.0), "double": (0.0, 0.25)}


def _p_stack(env_name: str) -> float:
  kind = env_name.split("-")[1]
  if kind not in _P_STACK:
    raise ValueError(f"{env_name}: this maker covers cube-single and cube-double play data.")
  low, high = _P_STACK[kind]
  return 0.0 if high == 0.0 else float(np.random.uniform(low, high))


def _collect(env, oracle, num_episodes: int, on_episode: Optional[Callable] = None) -> dict:
  """Runs the oracle for num_episodes episodes; returns per-step lists (OGBench's layout)."""
  keys = ("observations", "actions", "terminals", "qpos", "qvel")
  out = {k: [] for k in keys}
  for episode in range(num_episodes):
    ob, info = env.reset()
    p_stack = _p_stack(env.spec.id)
    oracle.reset(ob, info)
    done = False
    while not done:
      action = np.clip(np.asarray(oracle.select_action(ob, info)), -1.0, 1.0)
      next_ob, _, terminated, truncated, info = env.step(action)
      done = bool(terminated or truncated)
      if oracle.done:  # the oracle finished its task: OGBench sets a new target at once.
        target_ob, target_info = env.unwrapped.set_new_target(p_stack=p_stack)
        oracle.reset(target_ob, target_info)
      out["observations"].append(ob)
      out["actions"].append(action)
      out["terminals"].append(done)
      out["qpos"].append(info["prev_qpos"])
      out["qvel"].append(info["prev_qvel"])
      ob = next_ob
    if on_episode is not None:
      on_episode(episode + 1)
  return out


def _save(path: pathlib.Path, data: dict, meta: dict) -> None:
  """Writes OGBench's compressed npz atomically (a stopped maker leaves no partial file)."""
  dtypes = {"terminals": bool}
  arrays = {k: np.asarray(v, dtype=dtypes.get(k, np.float32)) for k, v in data.items()}
  arrays["cql_jax_maker"] = np.asarray(json.dumps(meta))
  tmp = path.with_name(path.name + ".tmp.npz")
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)


def make_play_dataset(env_name: str = "cube-single-v0", num_episodes: Optional[int] = None,
                      seed: int = 0, root: Optional[pathlib.Path] = None,
                      max_episode_steps: int = MAX_EPISODE_STEPS,
                      progress: Optional[Callable[[str], None]] = None) -> dict:
  """Makes `cql_jax/<cube-…>-play-v0.npz` and its `-val.npz` under the OGBench root.

  Args:
    env_name: "cube-single-v0" or "cube-double-v0" (OGBench's goal-conditioned id).
    num_episodes: training episodes (default: OGBench's full size); validation gets // 10.
    seed: see the module docstring.
    root: the OGBench dataset directory (default ogbench_io.datasets_root()).
    max_episode_steps: 1001 as OGBench; smaller only for tests.
    progress: called with a line of text now and then.

  Returns:
    {"path", "val_path", "transitions", "steps", "seconds", "steps_per_second"}.

  Raises:
    ogbench_io.DatasetError: ogbench is not installed.
    FileExistsError: the file exists already (delete it to make it again).
  """
  ogbench_io.require_ogbench()
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle  # pylint: disable=import-outside-toplevel
  num_episodes = FULL_SIZE.get(env_name, 1000) if num_episodes is None else int(num_episodes)
  name = env_name[:-len("-v0")] + "-play-v0"
  path = ogbench_io.file_path(f"{ogbench_io.LOCAL_NAMESPACE}/{name}", root)
  val_path = path.with_name(path.name[:-len(".npz")] + "-val.npz")
  if path.exists():
    raise FileExistsError(f"{path} exists already; delete it (and {val_path.name}) to make it "
                          "again.")
  path.parent.mkdir(parents=True, exist_ok=True)
  say = progress or (lambda _: None)
  np.random.seed(seed)
  env = gym.make(env_name, terminate_at_goal=False, mode="data_collection",
                 max_episode_steps=max_episode_steps)
  try:
    env.reset(seed=seed)
    oracle = CubePlanOracle(env=env, noise=NOISE, noise_smoothing=NOISE_SMOOTHING)
    start = time.perf_counter()
    report = lambda done: say(f"{done} episodes, {time.perf_counter() - start:.0f} s")
    train = _collect(env, oracle, num_episodes, report)
    val = _collect(env, oracle, max(num_episodes // 10, 1))
    seconds = time.perf_counter() - start
  finally:
    env.close()
  steps = len(train["actions"]) + len(val["actions"])
  meta = dict(env_name=env_name, dataset_type="play", num_episodes=num_episodes,
              val_episodes=max(num_episodes // 10, 1), seed=seed, noise=NOISE,
              noise_smoothing=NOISE_SMOOTHING, max_episode_steps=max_episode_steps,
              seconds=round(seconds, 1), steps=steps,
              versions={p: importlib.metadata.version(p) for p in ("ogbench", "mujoco")})
  _save(val_path, val, meta)
  _save(path, train, meta)  # last: its presence means the pair is complete.
  return {"path": str(path), "val_path": str(val_path),
          "transitions": len(train["actions"]) - num_episodes, "steps": steps,
          "seconds": seconds, "steps_per_second": steps / seconds}
