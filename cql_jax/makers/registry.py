"""Where each dataset id comes from, and the one call that makes it available locally.

Four kinds of ids:
  generated  cql_jax/pendulum/<kind>-vN, cql_jax/cartpole/<kind>-vN,
             cql_jax/pointmaze/<kind>-vN: scripted behaviour policies, made here on demand in
             seconds (cql_jax.makers.pendulum / cartpole / pointmaze).
  made       cql_jax/<env>/<kind>-vN for env in mujoco_datasets.ENVS (hopper, halfcheetah,
             walker2d, pendulum-sac, inverteddoublependulum, reacher, invertedpendulum): the
             project's own data from online SAC; and for env in discrete_datasets.ENVS (cartpole-dqn, acrobot-dqn,
             lunarlander-dqn) from online DQN; too slow to make on demand and not downloadable,
             so made once with ``python -m experiments.make_datasets``.
  ogbench    OGBench single-task ids, <env>-<type>-singletask[-task<N>]-v0 (cql_jax.data.ogbench_io):
             OGBench's files, downloaded by ogbench.download_datasets when the caller allows it;
             cql_jax/<same> for the project's own, made with python -m experiments.make_ogbench.
  minari     everything else: a dataset on the Minari server (e.g. D4RL/antmaze/umaze-v1,
             mujoco/hopper/medium-v0), downloadable when the caller allows it.
The runner calls :func:`ensure_available` for every id before reading it with cql_jax.data.
"""
from __future__ import annotations

import difflib
from typing import Mapping, NamedTuple, Optional

from cql_jax.data import ogbench_io
from cql_jax.data import paths
from cql_jax.data.errors import DatasetError
from cql_jax.makers import cartpole
from cql_jax.makers import discrete_datasets
from cql_jax.makers import mujoco_datasets
from cql_jax.makers import pendulum
from cql_jax.makers import pointmaze

LOCAL_NAMESPACE = "cql_jax"
_GENERATED = {pendulum.NAMESPACE: pendulum, cartpole.NAMESPACE: cartpole,
              pointmaze.NAMESPACE: pointmaze}
GENERATED, MADE, MINARI, OGBENCH = "generated", "made", "minari", "ogbench"


class Source(NamedTuple):
  """kind: GENERATED, MADE or MINARI; env_name: the MuJoCo env of a MADE id, else None."""
  kind: str
  env_name: Optional[str] = None


def source_of(dataset_id: str) -> Source:
  """Which of the four kinds (module docstring) `dataset_id` is, from the id alone."""
  if ogbench_io.parse_id(dataset_id) is not None:
    return Source(OGBENCH)
  for namespace in _GENERATED:
    if dataset_id.startswith(namespace + "/"):
      return Source(GENERATED)
  namespace, _, rest = dataset_id.partition("/")
  if namespace == LOCAL_NAMESPACE:
    return Source(MADE, rest.split("/")[0])
  return Source(MINARI)


def makeable_ids() -> list:
  """Every id of the local namespace that some maker in this package can produce."""
  ids = [module.dataset_id(kind) for module in _GENERATED.values() for kind in module.KINDS]
  ids += [mujoco_datasets.dataset_id(env, kind) for env in mujoco_datasets.ENVS
          for kind in mujoco_datasets.KINDS]
  ids += [discrete_datasets.dataset_id(env, kind) for env in discrete_datasets.ENVS
          for kind in discrete_datasets.KINDS]
  return ids


def _local_ids() -> list:
  try:
    import minari  # pylint: disable=import-outside-toplevel
    return sorted(minari.list_local_datasets())
  except Exception:  # pylint: disable=broad-except
    return []  # only for the error message; never mask the real error.


def close_ids_text(dataset_id: str) -> str:
  """' Close local ids: a, b.' (or what is stored) for a missing-dataset message."""
  local = _local_ids()
  close = difflib.get_close_matches(dataset_id, local, n=5, cutoff=0.6)
  makeable = [i for i in difflib.get_close_matches(dataset_id, makeable_ids(), n=5, cutoff=0.6)
              if i not in close]
  text = (f" Close local ids: {', '.join(close)}." if close else
          f" Stored locally: {', '.join(local) if local else 'nothing'}.")
  if makeable:
    text += f" Close ids this project makes: {', '.join(makeable)}."
  return text


def _generate(dataset_id: str, generation: Mapping) -> None:
  module = next(m for ns, m in _GENERATED.items() if dataset_id.startswith(ns + "/"))
  name, _, version = dataset_id[len(module.NAMESPACE) + 1:].rpartition("-v")
  if name not in module.KINDS or not version.isdigit():
    raise DatasetError(
        f"Dataset '{dataset_id}' is in the project's local namespace {module.NAMESPACE}/, which "
        f"holds {module.NAMESPACE}/<kind>-v<N> with kind in {', '.join(module.KINDS)}; nothing "
        f"makes this id.{close_ids_text(dataset_id)}")
  # An unset (None) setting means the maker's default: a CartPole config's generation group
  # leaves num_episodes unset, and may meet a Pendulum id through --config.dataset_id.
  def get(key, default):
    value = None if generation is None else generation.get(key)
    return default if value is None else value
  if module is pendulum:
    pendulum.ensure_pendulum_datasets(
        kinds=(name,), num_episodes=get("num_episodes", 100), seed=get("seed", 0),
        ref_episodes=get("ref_episodes", 100), version=int(version))
  elif module is pointmaze:
    pointmaze.ensure_pointmaze_datasets((name,), get("num_episodes", None), get("seed", 0),
                                        ref_episodes=get("ref_episodes", 100),
                                        version=int(version))
  else:
    cartpole.ensure_cartpole_datasets([name], get("num_episodes", None), get("seed", 0),
                                      ref_episodes=get("ref_episodes", 100), version=int(version))


def _ensure_ogbench(dataset_id: str, download: bool, download_command: Optional[str]) -> None:
  """An OGBench single-task id's file, downloaded with OGBench's own function when allowed."""
  parsed = ogbench_io.parse_id(dataset_id)
  path = ogbench_io.file_path(dataset_id)
  root = ogbench_io.datasets_root()
  if path.is_file():
    return
  if parsed.local:
    env = parsed.dataset_name.rsplit("-", 2)[0] + "-v0"
    raise DatasetError(
        f"Dataset '{dataset_id}' is the project's own OGBench data, made here with OGBench's "
        f"oracles, and {path} does not exist. Make it (OGBench's full size; "
        "--num_episodes=N for fewer) with\n"
        f"  {ogbench_io.ENV_VAR}={root} python -m experiments.make_ogbench --env={env}\n"
        "then launch again.")
  if download:
    try:
      ogbench = ogbench_io.require_ogbench()
      ogbench.download_datasets([parsed.dataset_name], str(root))
    except DatasetError:
      raise
    except Exception as err:  # pylint: disable=broad-except
      raise DatasetError(
          f"Downloading OGBench dataset {parsed.dataset_name} failed ({type(err).__name__}: "
          f"{err}). Copy {parsed.dataset_name}.npz (and its -val.npz) into {root}, or make the "
          f"project's own version: python -m experiments.make_ogbench --env="
          f"{parsed.dataset_name.rsplit('-', 2)[0]}-v0 and train on cql_jax/{dataset_id}.") from err
    return
  how = f"\n  {download_command}\nor" if download_command else ""
  raise DatasetError(
      f"Dataset '{dataset_id}' needs OGBench's file {path}, which is not there. Fetch it with"
      f"{how}\n  python -c \"import ogbench; ogbench.download_datasets(['{parsed.dataset_name}'], "
      f"'{root}')\"\nthen launch again (or pass download=True / --download). Without a network, "
      f"the project makes the same kind of data with OGBench's oracles: cql_jax/{dataset_id}.")


def ensure_available(dataset_id: str, download: bool = False, *,
                     generation: Optional[Mapping] = None,
                     download_command: Optional[str] = None) -> None:
  """Makes sure `dataset_id` is stored under paths.datasets_root(), or says exactly why not.

  Generated ids are made when absent (with `generation`: num_episodes, seed, ref_episodes;
  defaults otherwise). Minari ids are downloaded when absent and `download` is set. Made ids
  are never downloaded: the message names the command that makes them.

  Args:
    dataset_id: a Minari id.
    download: allow downloading a Minari id from the Minari server (needs network access).
    generation: settings for generated ids (a domain config's `generation` group).
    download_command: the exact relaunch command with downloading on, for the message.

  Raises:
    DatasetError: the id is missing and cannot be made or downloaded here; the message tells
      a downloadable Minari id from a local one and lists close local ids.
  """
  source = source_of(dataset_id)
  if source.kind == OGBENCH:
    _ensure_ogbench(dataset_id, download, download_command)
    return
  root = paths.datasets_root()
  if source.kind == GENERATED:
    _generate(dataset_id, generation)
    return
  if paths.dataset_exists(dataset_id):
    return
  if source.kind == MADE:
    if source.env_name in mujoco_datasets.ENVS:
      raise DatasetError(
          f"Dataset '{dataset_id}' is not stored under {root} (MINARI_DATASETS_PATH). It is one "
          "of the project's own datasets from online SAC (local namespace cql_jax/), which cannot "
          "be downloaded: make it (SAC training: minutes for the control tasks, about an hour "
          "for the MuJoCo locomotion tasks, on a 2-core CPU) with\n"
          f"  MINARI_DATASETS_PATH={root} python -m experiments.make_datasets "
          f"--env={source.env_name} --workdir=runs/datasets-{source.env_name}\n"
          f"then launch again.{close_ids_text(dataset_id)}")
    if source.env_name in discrete_datasets.ENVS:
      raise DatasetError(
          f"Dataset '{dataset_id}' is not stored under {root} (MINARI_DATASETS_PATH). It is one "
          "of the project's own discrete datasets (local namespace cql_jax/), which cannot be "
          "downloaded: make it (online DQN, minutes on a 2-core CPU) with\n"
          f"  MINARI_DATASETS_PATH={root} python -m experiments.make_datasets "
          f"--env={source.env_name} --workdir=runs/datasets-{source.env_name}\n"
          f"then launch again.{close_ids_text(dataset_id)}")
    made = (*mujoco_datasets.ENVS, *discrete_datasets.ENVS)
    raise DatasetError(
        f"Dataset '{dataset_id}' is in the project's local namespace cql_jax/, which nothing "
        f"downloads, and no maker here produces it (the namespace holds cql_jax/pendulum, "
        f"cql_jax/cartpole and cql_jax/<{'|'.join(made)}>).{close_ids_text(dataset_id)}")
  if download:
    try:
      import minari  # pylint: disable=import-outside-toplevel
      minari.download_dataset(dataset_id)
    except Exception as err:  # pylint: disable=broad-except
      raise DatasetError(
          f"Downloading Minari dataset '{dataset_id}' failed ({type(err).__name__}: {err}). "
          "Check the id with `minari list remote` and the network connection, or copy the "
          f"dataset into {root}.{close_ids_text(dataset_id)}") from err
    return
  how = f"\n  {download_command}\nor" if download_command else ""
  raise DatasetError(
      f"Dataset '{dataset_id}' is not stored under {root} (MINARI_DATASETS_PATH). It is a Minari "
      f"remote dataset (namespace {dataset_id.split('/')[0]}/), downloadable: fetch it with{how}\n"
      f"  MINARI_DATASETS_PATH={root} minari download {dataset_id}\nthen launch again (or pass "
      f"download=True / --download).{close_ids_text(dataset_id)}")
