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

Kitchen and MuJoCo. gymnasium-robotics 1.4.2 (the newest) reads joints through
`gymnasium_robotics.utils.mujoco_utils.get_joint_qpos` / `get_joint_qvel` (and sets them through
`set_joint_qpos` / `set_joint_qvel`), which assert `model.jnt_type[j] in (mjJNT_HINGE,
mjJNT_SLIDE)`. `model.jnt_type[j]` is a NumPy int32 and `x in (a, b)` evaluates `a == x`; from
MuJoCo 3.12 (pybind11 3.1 enums) an enum compared with a NumPy integer from the enum's side is
False, so the assertion fails for every hinge and slide joint and FrankaKitchen-v1 (whose
observation reads the robot's joints this way) raises a bare AssertionError. MuJoCo <= 3.11.0
compares equal (checked: 3.3.7, 3.4-3.11; 3.12.0, 3.17.0, 4.0.0 do not). AntMaze and Adroit do not
take that path.

`patch_joint_getters` is the compatibility fix: before any of these environments is built (every
builder in this package and in `cql_jax.evaluation` calls it) it calls the library's own
`get_joint_qpos` on a one-hinge model; only if that raises does it put, in place of the four
functions, versions that handle hinge and slide joints (one value at `jnt_qposadr` /
`jnt_dofadr`) by integer comparison and hand every other joint to the library's original. So it
stops applying itself as soon as gymnasium-robotics (or MuJoCo) no longer fails the probe.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import traceback
import warnings
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np


LAST_GOOD_MUJOCO = "3.11.0"  # newest MuJoCo on which gymnasium-robotics 1.4.2's Kitchen builds unpatched


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


_ONE_VALUE_JOINTS = ("mjJNT_HINGE", "mjJNT_SLIDE")
_JOINT_FUNCTIONS = ("get_joint_qpos", "get_joint_qvel", "set_joint_qpos", "set_joint_qvel")
_PROBE_XML = """<mujoco><worldbody><body><joint name="probe" type="hinge"/>
<geom size="0.1"/></body></worldbody></mujoco>"""


def joint_getters_fail() -> bool:
  """Whether gymnasium-robotics' own `get_joint_qpos` fails on a hinge joint here.

  Probes the library's function as it is installed (not a version number), so the answer
  changes by itself when a fixed gymnasium-robotics or MuJoCo is installed. False when
  gymnasium-robotics or MuJoCo is not installed.
  """
  try:
    import mujoco  # pylint: disable=import-outside-toplevel
    from gymnasium_robotics.utils import mujoco_utils  # pylint: disable=import-outside-toplevel
  except ImportError:
    return False
  original = getattr(mujoco_utils.get_joint_qpos, "cql_jax_original", mujoco_utils.get_joint_qpos)
  model = mujoco.MjModel.from_xml_string(_PROBE_XML)
  try:
    original(model, mujoco.MjData(model), "probe")
  except AssertionError:
    return True
  return False


def _one_value_joint(function, address_field: str, is_setter: bool):
  """`function` (a gymnasium-robotics joint accessor) with hinge and slide joints handled here."""
  import mujoco  # pylint: disable=import-outside-toplevel
  one_value = {int(getattr(mujoco.mjtJoint, name)) for name in _ONE_VALUE_JOINTS}

  def accessor(model, data, name, *value):
    joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    if joint == -1 or int(model.jnt_type[joint]) not in one_value:
      return function(model, data, name, *value)  # free and ball joints, unknown names.
    address = int(getattr(model, address_field)[joint])
    array = data.qpos if address_field == "jnt_qposadr" else data.qvel
    if is_setter:
      array[address:address + 1] = np.asarray(value[0]).reshape(-1)
      return None
    return array[address:address + 1].copy()

  accessor.cql_jax_original = function
  accessor.__name__ = function.__name__
  accessor.__doc__ = (f"{function.__doc__} (cql_jax: hinge and slide joints compared as "
                      "integers; see cql_jax.envs.robotics.)")
  return accessor


def patch_joint_getters() -> bool:
  """Makes gymnasium-robotics' joint accessors work where MuJoCo's enums break them.

  Idempotent and cheap after the first call. Applied only when `joint_getters_fail()`; see the
  module docstring. Returns whether the patched accessors are in place.
  """
  if joint_getters_patched():
    return True
  if not joint_getters_fail():
    return False
  from gymnasium_robotics.utils import mujoco_utils  # pylint: disable=import-outside-toplevel
  for name in _JOINT_FUNCTIONS:
    function = getattr(mujoco_utils, name)
    if hasattr(function, "cql_jax_original"):
      continue
    address = "jnt_qposadr" if name.endswith("qpos") else "jnt_dofadr"
    setattr(mujoco_utils, name, _one_value_joint(function, address, name.startswith("set_")))
  return True


def joint_getters_patched() -> bool:
  """Whether `patch_joint_getters` has replaced gymnasium-robotics' joint accessors."""
  try:
    from gymnasium_robotics.utils import mujoco_utils  # pylint: disable=import-outside-toplevel
  except ImportError:
    return False
  return hasattr(mujoco_utils.get_joint_qpos, "cql_jax_original")


def prepare_to_build(env) -> None:
  """Patches the joint accessors (`patch_joint_getters`) before `env` is built, if it is a
  Gymnasium-Robotics environment. env: a Gymnasium id or EnvSpec; anything else is left alone."""
  import sys  # pylint: disable=import-outside-toplevel
  entry_point = getattr(env, "entry_point", None)
  if entry_point is None and isinstance(env, str):
    import gymnasium as gym  # pylint: disable=import-outside-toplevel
    entry_point = getattr(gym.registry.get(env), "entry_point", None)
  robotics_env = isinstance(entry_point, str) and entry_point.startswith("gymnasium_robotics")
  if robotics_env or "gymnasium_robotics" in sys.modules:
    patch_joint_getters()


def register_robotics_envs() -> None:
  """Registers gymnasium-robotics' ids with gymnasium (and patches its joint accessors where
  this MuJoCo needs it); a clear error if it is not installed."""
  try:
    robotics = importlib.import_module("gymnasium_robotics")
  except ImportError as err:
    raise EnvironmentUnavailable(
        "gymnasium-robotics is not installed; AntMaze, Adroit and Kitchen need it: "
        "pip install gymnasium-robotics==1.4.2 (the 'robotics' extra).") from err
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  gym.register_envs(robotics)
  patch_joint_getters()


def diagnose_build_failure(what: str, err: BaseException) -> EnvironmentUnavailable:
  """The error to raise when `what` failed to build with `err`: names a known cause and its fix."""
  versions = installed_versions()
  trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
  if (isinstance(err, AssertionError) and "mujoco_utils" in trace
      and versions["mujoco"] != "not installed" and not mujoco_enums_compare_with_numpy()):
    # Only reachable when the environment was built before patch_joint_getters ran.
    return EnvironmentUnavailable(
        f"{what} cannot be built with mujoco {versions['mujoco']} and gymnasium-robotics "
        f"{versions['gymnasium-robotics']}: gymnasium_robotics.utils.mujoco_utils asserts "
        "`model.jnt_type[j] in (mjJNT_HINGE, mjJNT_SLIDE)`, which is False on MuJoCo >= 3.12 "
        "because its enums no longer compare equal to NumPy integers from the enum's side. "
        "Call cql_jax.envs.robotics.patch_joint_getters() before building it (the project's "
        f"builders do), or use mujoco<={LAST_GOOD_MUJOCO} with gymnasium-robotics 1.4.2.")
  detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
  return EnvironmentUnavailable(f"{what} cannot be built, reset and stepped here ({detail}). "
                                f"Installed: {versions}.")


class EnvCheck(NamedTuple):
  """A built environment's description. spec: its full EnvSpec (gym.make(spec) rebuilds it)."""
  spec: Any
  observation_space: Any
  action_space: Any


def _probe(make, what: str) -> EnvCheck:
  patch_joint_getters()
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
  the package versions installed.
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
                          ref_max_score: Optional[float] = None,
                          eval_env_kwargs: Optional[dict] = None):
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
    eval_env_kwargs: kwargs that the stored evaluation spec has on top of the collection
      spec's (e.g. another maze_map, as Minari's AntMaze datasets store).

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
    eval_spec = base.spec
    if eval_env_kwargs:
      eval_spec = dataclasses.replace(base.spec, kwargs=dict(base.spec.kwargs, **eval_env_kwargs))
    scores = {} if ref_min_score is None else dict(ref_min_score=float(ref_min_score),
                                                   ref_max_score=float(ref_max_score))
    with warnings.catch_warnings():
      # We deliberately record no code permalink or e-mail; Minari warns about both.
      warnings.filterwarnings("ignore", message=".*is set to None.*", category=UserWarning)
      return env.create_dataset(
          dataset_id=dataset_id, eval_env=eval_spec, algorithm_name="random", author="cql_jax",
          description=(f"{num_episodes} uniform-random episodes of {env_id} capped at "
                       f"{max_episode_steps} steps, for tests."), **scores)
  finally:
    env.close()
