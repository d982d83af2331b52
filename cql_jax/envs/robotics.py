"""Gymnasium-Robotics environments (AntMaze, Adroit, Kitchen): observations, start-up checks,
evaluation environments recovered from Minari datasets, and a tiny dataset recorder.

Observations. AntMaze and Kitchen return dict observations; Adroit returns arrays.
`cql_jax.data.observations.flatten_observations` is the one transform from such an observation
to the float32 vector the agent sees, for one observation, a vector env's batch or a dataset episode alike, so training
and evaluation cannot drift apart. Measured with gymnasium 1.4.0 and gymnasium-robotics 1.4.2:
  AntMaze_UMaze-v4:  observation 27 (qpos[2:] 13 + qvel 14), achieved_goal 2 (the torso x, y =
                     qpos[:2]), desired_goal 2. Minari's D4RL/antmaze/*-v1 datasets were
                     recorded on AntMaze_*-v4 with this layout. D4RL's 29-d observation
                     [qpos, qvel] is [x, y, observation], i.e. the keys
                     ("achieved_goal", "observation"); the goal was not part of it.
  AntMaze_UMaze-v5:  observation 105 (contact forces included) unless made with
                     include_cfrc_ext_in_observation=False, which gives the 27-d layout above.
                     (v5 has no use_contact_forces argument.)
  AdroitHandPen-v1:  45-d array, 24-d action, 200 steps.  AdroitHandDoor-v1: 39-d, 28-d, 200.
  FrankaKitchen-v1:  observation 59, achieved_goal / desired_goal dicts of per-task arrays
                     (17 values each for all seven tasks), 9-d action, 280 steps.

Kitchen and MuJoCo. gymnasium-robotics 1.4.2 reads joints through
`gymnasium_robotics.utils.mujoco_utils.get_joint_qpos`, which asserts
`model.jnt_type[j] in (mjJNT_HINGE, mjJNT_SLIDE)`. `model.jnt_type[j]` is a NumPy int32 and
`x in (a, b)` evaluates `a == x`; from MuJoCo 3.12 (pybind11 3.1 enums) an enum compared with a
NumPy integer from the enum's side is False, so the assertion fails for every hinge joint and
`gym.make("FrankaKitchen-v1")` raises a bare AssertionError. MuJoCo <= 3.11.0 works (checked:
3.3.7, 3.4-3.11 compare equal; 3.12.0, 3.17.0, 4.0.0 do not; FrankaKitchen-v1 builds, resets and
steps on 3.3.7 and 3.11.0). AntMaze and Adroit do not take that path and work on MuJoCo 4.0.0.
`check_environment` turns the failure into an error that says this.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import traceback
import warnings
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np


LAST_GOOD_MUJOCO = "3.11.0"  # newest MuJoCo on which gymnasium-robotics 1.4.2's Kitchen builds


class EnvironmentUnavailable(RuntimeError):
  """An environment cannot be built, reset or stepped with the installed packages."""


# ---------------------------------------------------------------------------------------------
# Building environments.
# ---------------------------------------------------------------------------------------------


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def installed_versions() -> dict:
  """Versions of the packages these environments depend on."""
  return {p: _version(p) for p in ("gymnasium", "gymnasium-robotics", "mujoco", "minari")}


def mujoco_enums_compare_with_numpy() -> bool:
  """Whether `np.int32(k) in (mjtJoint(k),)` holds, as gymnasium-robotics' joint getters need."""
  import mujoco  # pylint: disable=import-outside-toplevel
  hinge = mujoco.mjtJoint.mjJNT_HINGE
  return bool(np.int32(int(hinge)) in (hinge,))


def register_robotics_envs() -> None:
  """Registers gymnasium-robotics' ids with gymnasium; a clear error if it is not installed."""
  try:
    robotics = importlib.import_module("gymnasium_robotics")
  except ImportError as err:
    raise EnvironmentUnavailable(
        "gymnasium-robotics is not installed; AntMaze, Adroit and Kitchen need it: "
        "pip install gymnasium-robotics==1.4.2 (the 'robotics' extra).") from err
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  gym.register_envs(robotics)


def diagnose_build_failure(what: str, err: BaseException) -> EnvironmentUnavailable:
  """The error to raise when `what` failed to build with `err`: names a known cause and its fix."""
  versions = installed_versions()
  trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
  if (isinstance(err, AssertionError) and "mujoco_utils" in trace
      and versions["mujoco"] != "not installed" and not mujoco_enums_compare_with_numpy()):
    return EnvironmentUnavailable(
        f"{what} cannot be built with mujoco {versions['mujoco']} and gymnasium-robotics "
        f"{versions['gymnasium-robotics']}: gymnasium_robotics.utils.mujoco_utils asserts "
        "`model.jnt_type[j] in (mjJNT_HINGE, mjJNT_SLIDE)`, which is False on MuJoCo >= 3.12 "
        "because its enums no longer compare equal to NumPy integers from the enum's side. "
        f"Use mujoco<={LAST_GOOD_MUJOCO} (tested: mujoco {LAST_GOOD_MUJOCO} with "
        "gymnasium-robotics 1.4.2 and gymnasium 1.4.0), e.g. in a separate virtualenv: "
        f"pip install mujoco=={LAST_GOOD_MUJOCO} gymnasium-robotics==1.4.2.")
  detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
  return EnvironmentUnavailable(f"{what} cannot be built, reset and stepped here ({detail}). "
                                f"Installed: {versions}.")


class EnvCheck(NamedTuple):
  """A built environment's description. spec: its full EnvSpec (gym.make(spec) rebuilds it)."""
  spec: Any
  observation_space: Any
  action_space: Any


def _probe(make, what: str) -> EnvCheck:
  try:
    env = make()
  except EnvironmentUnavailable:
    raise
  except Exception as err:  # pylint: disable=broad-except
    raise diagnose_build_failure(what, err) from err
  try:
    env.reset(seed=0)
    env.step(env.action_space.sample())
    return EnvCheck(env.spec, env.observation_space, env.action_space)
  except Exception as err:  # pylint: disable=broad-except
    raise diagnose_build_failure(what, err) from err
  finally:
    env.close()


def check_environment(env_id: str, kwargs: Optional[dict] = None) -> EnvCheck:
  """Builds, resets and steps `env_id` once; any failure becomes an EnvironmentUnavailable.

  Meant for start-up, before data is loaded: the error names the environment, the cause and
  the package versions that work (see the module docstring for Kitchen on MuJoCo >= 3.12).
  """
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  kwargs = dict(kwargs or {})
  if env_id not in gym.registry:
    try:
      register_robotics_envs()
    except EnvironmentUnavailable as err:
      raise EnvironmentUnavailable(
          f"{env_id} is not a registered Gymnasium id. If it is a Gymnasium-Robotics "
          "environment, pip install gymnasium-robotics==1.4.2.") from err
  return _probe(lambda: gym.make(env_id, **kwargs), f"{env_id} (kwargs {kwargs})")


def recover_eval_env_spec(minari_dataset, fallback_id: Optional[str] = None,
                          fallback_kwargs: Optional[dict] = None) -> EnvCheck:
  """The dataset's own evaluation environment, built and stepped once; its spec rebuilds it.

  Uses Minari's `recover_environment(eval_env=True)` (the eval spec stored with the dataset,
  else its collection spec). Only when the dataset stores no spec at all are `fallback_id` and
  `fallback_kwargs` (a domain config's) used. For N copies: gym.make(check.spec) N times, or
  gymnasium.make_vec(check.spec, N, vectorization_mode="sync").

  Raises:
    EnvironmentUnavailable: the environment cannot be built here (names cause and versions), or
      the dataset has no spec and no fallback is given.
  """
  register_robotics_envs()
  dataset_id = minari_dataset.id
  if minari_dataset.env_spec is None:
    if fallback_id is None:
      raise EnvironmentUnavailable(
          f"dataset {dataset_id} stores no environment spec and no fallback environment id "
          "was given; set the domain config's environment id.")
    return check_environment(fallback_id, fallback_kwargs)
  spec_id = minari_dataset.env_spec.id
  return _probe(lambda: minari_dataset.recover_environment(eval_env=True),
                f"the evaluation environment of dataset {dataset_id} ({spec_id})")


# ---------------------------------------------------------------------------------------------
# Recording a tiny Minari dataset from a real environment.
# ---------------------------------------------------------------------------------------------


def record_minari_dataset(dataset_id: str, env_id: str, *, num_episodes: int = 2,
                          max_episode_steps: int = 20, seed: int = 0,
                          env_kwargs: Optional[dict] = None,
                          ref_min_score: Optional[float] = None,
                          ref_max_score: Optional[float] = None):
  """Records `num_episodes` random-policy episodes of `env_id` with Minari's DataCollector.

  Episodes are capped at `max_episode_steps` (the cap is part of the stored spec, so the
  recovered evaluation environment has it too). The collection environment is also stored as
  the evaluation spec. Minari writes under MINARI_DATASETS_PATH (see `cql_jax.data.paths`).

  Args:
    dataset_id: a new Minari id, e.g. "cql_jax/antmaze-umaze/tiny-v0".
    env_id: e.g. "AntMaze_UMaze-v4", "AdroitHandPen-v1".
    num_episodes: episodes to record.
    max_episode_steps: truncation cap per episode.
    seed: seeds the first reset and the action sampling.
    env_kwargs: extra `gymnasium.make` arguments, stored in the spec.
    ref_min_score, ref_max_score: stored reference scores (both or neither; Minari would
      otherwise estimate the random score by rolling out 100 episodes).

  Returns:
    The new minari.MinariDataset.

  Raises:
    EnvironmentUnavailable: the environment cannot be built (see `check_environment`).
    ValueError: the dataset id exists already, or only one reference score is given.
  """
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  import minari  # pylint: disable=import-outside-toplevel
  from minari.dataset.minari_dataset import parse_dataset_id  # pylint: disable=import-outside-toplevel

  from cql_jax.data import paths  # pylint: disable=import-outside-toplevel

  if (ref_min_score is None) != (ref_max_score is None):
    raise ValueError("give both ref_min_score and ref_max_score, or neither.")
  parse_dataset_id(dataset_id)
  paths.datasets_root()  # makes Minari write where the project reads
  if dataset_id in minari.list_local_datasets():
    raise ValueError(f"Minari dataset {dataset_id!r} exists already; choose a new id or delete "
                     f"it with minari.delete_dataset({dataset_id!r}).")
  kwargs = dict(env_kwargs or {}, max_episode_steps=max_episode_steps)
  check_environment(env_id, kwargs)
  base = gym.make(env_id, **kwargs)
  env = minari.DataCollector(base, record_infos=False)
  try:
    env.action_space.seed(seed)
    for episode in range(num_episodes):
      env.reset(seed=seed + episode)
      done = False
      while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
    scores = {} if ref_min_score is None else dict(ref_min_score=float(ref_min_score),
                                                   ref_max_score=float(ref_max_score))
    with warnings.catch_warnings():
      # We deliberately record no code permalink or e-mail; Minari warns about both.
      warnings.filterwarnings("ignore", message=".*is set to None.*", category=UserWarning)
      return env.create_dataset(
          dataset_id=dataset_id, eval_env=base.spec, algorithm_name="random", author="cql_jax",
          description=(f"{num_episodes} uniform-random episodes of {env_id} capped at "
                       f"{max_episode_steps} steps, for tests."), **scores)
  finally:
    env.close()
