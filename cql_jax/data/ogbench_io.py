"""OGBench single-task datasets (Park et al., ICLR 2025) as offline RL transitions.

Ids are OGBench's: `<env>-<dataset type>-singletask[-task<N>]-v0`, e.g.
`cube-single-play-singletask-v0` (the environment's default task; task2 for cube-single) or
`cube-single-play-singletask-task4-v0`. `cql_jax/<same>` names the project's own data made with
OGBench's oracles (cql_jax.makers.ogbench_play) in OGBench's file layout. Files live under
OGBENCH_DATASETS_PATH (default `<repo>/data/ogbench`): `<env>-<type>-v0.npz` for OGBench's own
(`ogbench.download_datasets` fetches them there), `cql_jax/<env>-<type>-v0.npz` for the
project's.

Conventions, read from ogbench 1.2.2 (utils.load_dataset, relabel_utils.relabel_dataset, the
singletask registrations in ogbench.manipspace):
  - a file holds, per trajectory, T+1 rows of `observations`, `actions`, `qpos`, `qvel` and
    `terminals` (1 on a trajectory's last row, whose action is never taken); OGBench's loader
    (used here) turns them into T transitions (s_t, a_t, s_{t+1});
  - a trajectory's end is not a termination: the play data run on after success;
  - single-task rewards and masks come from OGBench's relabelling with the task's environment:
    reward_t = (objects at their targets in s_t) − (number of objects), so −1 per step for one
    cube and 0 once it is placed; mask_t = 0 where every object is at its target in s_t, else 1.
    Both are functions of s_t, matching the environments' success_timing="pre": at step t the
    environment returns the reward of the state before the action and terminates when that state
    is a success. The mask is this package's discount: the value of a success state is its
    reward, never bootstrapped;
  - evaluation is the single-task environment itself (200 steps for cube-single, terminating at
    success); an episode succeeds when it ends by termination (info["success"] on its last
    step), and OGBench reports the success rate (cql_jax.evaluation.success_rate_metric).
"""
from __future__ import annotations

import os
import pathlib
import re
from typing import NamedTuple, Optional, Sequence

import numpy as np

from cql_jax.data import arrays
from cql_jax.data.errors import DatasetError
from cql_jax.types import OfflineDataset, Transition

ENV_VAR = "OGBENCH_DATASETS_PATH"
LOCAL_NAMESPACE = "cql_jax"
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
_ID = re.compile(r"^(?:(?P<ns>[A-Za-z0-9_]+)/)?(?P<name>[a-z0-9]+(?:-[a-z0-9]+)*)$")


class OGBenchId(NamedTuple):
  """A parsed single-task id.

  local: True for the project's own data (cql_jax/ namespace).
  dataset_name: the file's name without .npz, e.g. "cube-single-play-v0".
  env_name: the single-task environment, e.g. "cube-single-singletask-task4-v0".
  task: N of "-taskN-", or None for the default task.
  """
  local: bool
  dataset_name: str
  env_name: str
  task: Optional[int]


def parse_id(dataset_id: str) -> Optional[OGBenchId]:
  """OGBench's naming rule (utils.make_env_and_datasets) for single-task ids; None otherwise."""
  match = _ID.match(dataset_id or "")
  if match is None or match.group("ns") not in (None, LOCAL_NAMESPACE):
    return None
  parts = match.group("name").split("-")
  if "singletask" not in parts or not parts[-1].startswith("v"):
    return None
  pos = parts.index("singletask")
  if pos < 2:
    return None
  task = None
  if len(parts) == pos + 3:
    if not re.fullmatch(r"task\d+", parts[pos + 1]):
      return None
    task = int(parts[pos + 1][4:])
  elif len(parts) != pos + 2:
    return None
  return OGBenchId(local=match.group("ns") is not None,
                   dataset_name="-".join(parts[:pos] + parts[-1:]),
                   env_name="-".join(parts[:pos - 1] + parts[pos:]), task=task)


def datasets_root() -> pathlib.Path:
  """OGBENCH_DATASETS_PATH, else `<repo>/data/ogbench` (not created here)."""
  value = os.environ.get(ENV_VAR)
  return pathlib.Path(value).expanduser().resolve() if value else _REPO_ROOT / "data" / "ogbench"


def file_path(dataset_id: str, root: Optional[pathlib.Path] = None) -> pathlib.Path:
  """Where the training file of `dataset_id` lives (a single-task id, or `[cql_jax/]<name>`)."""
  root = datasets_root() if root is None else pathlib.Path(root)
  parsed = parse_id(dataset_id)
  if parsed is not None:
    sub = (LOCAL_NAMESPACE + "/" if parsed.local else "") + parsed.dataset_name
  else:
    sub = dataset_id
  return root / f"{sub}.npz"


def require_ogbench():
  """Imports ogbench (registering its environments) or says how to install it."""
  try:
    import ogbench  # pylint: disable=import-outside-toplevel
  except ImportError as err:
    raise DatasetError(
        "OGBench datasets need the ogbench package: pip install ogbench==1.2.2 (the 'ogbench' "
        "extra, pip install -e .[ogbench]).") from err
  return ogbench


def load_dataset(dataset_id: str, *, reward_scale: float = 1.0, reward_bias: float = 0.0,
                 obs_keys: Optional[Sequence[str]] = None,
                 root: Optional[pathlib.Path] = None) -> OfflineDataset:
  """Reads an OGBench single-task dataset with OGBench's loader and relabelling.

  Returns an OfflineDataset of T transitions: obs/next_obs float32 [T, O], action float32
  [T, A] in [-1, 1], reward float32 [T] (OGBench's, then ·reward_scale + reward_bias), discount
  float32 [T] = OGBench's masks; episodes are OGBench's trajectories; env_spec is the single-task
  environment's registered spec.

  Raises:
    DatasetError: not a single-task id, ogbench missing, the file missing or malformed.
  """
  parsed = parse_id(dataset_id)
  if parsed is None:
    raise DatasetError(f"'{dataset_id}' is not an OGBench single-task id "
                       "(<env>-<type>-singletask[-task<N>]-v0, optionally cql_jax/...).")
  if obs_keys is not None:
    raise DatasetError(f"{dataset_id}: OGBench state observations are arrays; set "
                       "config.data.obs_keys to None.")
  ogbench = require_ogbench()
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  from ogbench import relabel_utils  # pylint: disable=import-outside-toplevel
  path = file_path(dataset_id, root)
  if not path.is_file():
    raise DatasetError(f"{dataset_id}: {path} does not exist (see "
                       "cql_jax.makers.registry.ensure_available for how to get it).")
  try:
    data = ogbench.load_dataset(str(path), add_info=True)
  except (KeyError, ValueError, OSError) as err:
    raise DatasetError(f"{dataset_id}: {path} is not an OGBench dataset file ({type(err).__name__}:"
                       f" {err}); it needs observations, actions, terminals and qpos.") from err
  if "qpos" not in data:
    raise DatasetError(f"{dataset_id}: {path} has no 'qpos', which single-task rewards are "
                       "computed from; regenerate it with OGBench's script or this project's maker.")
  if parsed.env_name not in gym.registry:
    raise DatasetError(f"{dataset_id}: ogbench registers no environment {parsed.env_name}.")
  env = gym.make(parsed.env_name)
  try:
    relabel_utils.relabel_dataset(parsed.env_name, env, data)
    spec, space = env.spec, env.action_space
  finally:
    env.close()
  ends = np.asarray(data["terminals"], bool)
  starts = np.concatenate([[0], np.flatnonzero(ends[:-1]) + 1]).astype(np.int64)
  raw = Transition(obs=np.asarray(data["observations"], np.float32),
                   action=np.asarray(data["actions"], np.float32),
                   reward=np.asarray(data["rewards"], np.float32),
                   discount=np.asarray(data["masks"], np.float32),
                   next_obs=np.asarray(data["next_observations"], np.float32))
  return arrays.assemble(
      raw, starts, dataset_id=dataset_id, discrete=False, num_actions=None,
      action_low=space.low, action_high=space.high, reward_scale=reward_scale,
      reward_bias=reward_bias, env_id=spec.id,
      env_kwargs={"max_episode_steps": spec.max_episode_steps}, env_spec=spec,
      data_env_spec=spec)
