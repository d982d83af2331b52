"""Experiment loop: S seeds trained in one vmapped program, evaluated, logged and checkpointed.

Keys: seed s has run key jax.random.key(s), split into an init key and a loop key; chunk i uses
train.chunk_key(loop key, i). Nothing random is carried between chunks, so a run resumed from
the checkpoint after chunk i replays chunks i+1... exactly, and seed s gets the same keys whether
it runs alone or inside a sweep.

Members: the loop trains *members*, each a (hyperparameter setting, seed) pair of a sweep
(cql_jax.sweep); without a sweep the members are the seeds. They run in one vmapped program,
on one device or split over a Mesh of every device (config.layout, cql_jax.parallel).

Workdir layout: config.json, metrics.jsonl, tb/seed_<s>/ (a sweep: tb/<member name>/) and
tb/mean/ (TensorBoard), checkpoints/<step>/ (orbax), results.json (written at the end).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import pathlib
import time
from typing import Any, Dict, NamedTuple, Optional, Sequence

import jax
import ml_collections
import numpy as np

from cql_jax import agents
from cql_jax import checkpoints
from cql_jax import sweep
from cql_jax import train
from cql_jax import writers
from cql_jax.makers import cartpole
from cql_jax.data import minari_io
from cql_jax.makers import mujoco_datasets
from cql_jax.data import paths
from cql_jax.makers import pendulum
from cql_jax.types import Agent, OfflineDataset

_log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
# Keys that may change when a run is resumed: training longer is a legitimate continuation.
_RESUMABLE_CHANGES = ("num_steps", "layout")


class NonFiniteMetricError(FloatingPointError):
  """A training metric became NaN or inf; the message names the metric, step and seed."""


@dataclasses.dataclass
class RunResult:
  """state: final train state stacked on [S]; results: what results.json holds."""
  state: Any
  results: Dict[str, Any]


# ---------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------


def _missing_dataset_error(dataset_id: str, config, workdir) -> minari_io.DatasetError:
  root = paths.datasets_root()
  namespace, _, rest = dataset_id.partition("/")
  env_name = rest.split("/")[0]
  if namespace == "cql_jax" and env_name in mujoco_datasets.ENVS:
    return minari_io.DatasetError(
        f"Dataset '{dataset_id}' is not stored under {root} (MINARI_DATASETS_PATH). It is one of "
        "the project's own MuJoCo datasets, which cannot be downloaded: make it (SAC training, "
        f"about an hour on a 2-core CPU) with\n  MINARI_DATASETS_PATH={root} python -m "
        f"experiments.make_datasets --env={env_name} --workdir=runs/datasets-{env_name}\n"
        "then launch again.")
  config_arg = config.get("config_arg") or "<your config file>:<variant>"
  return minari_io.DatasetError(
      f"Dataset '{dataset_id}' is not stored under {root} (MINARI_DATASETS_PATH). Download it "
      f"with\n  python -m experiments.train --config={config_arg} --workdir={workdir} --download\n"
      f"or\n  MINARI_DATASETS_PATH={root} minari download {dataset_id}\nthen launch again.")


def _ensure_generated(dataset_id: str, config) -> None:
  """Makes the project's own Pendulum or CartPole datasets when absent (not downloadable)."""
  module = pendulum if dataset_id.startswith(pendulum.NAMESPACE + "/") else cartpole
  name, _, version = dataset_id[len(module.NAMESPACE) + 1:].rpartition("-v")
  settings = config.get("generation") or ml_collections.ConfigDict()
  if module is pendulum:
    pendulum.ensure_pendulum_datasets(
        kinds=(name,), num_episodes=settings.get("num_episodes", 100),
        seed=settings.get("seed", 0), ref_episodes=settings.get("ref_episodes", 100),
        version=int(version))
  else:
    cartpole.ensure_cartpole_datasets([name], settings.get("num_episodes"), settings.get("seed", 0))


def _concatenate(parts: Sequence[OfflineDataset]) -> OfflineDataset:
  """Appends datasets of one environment (e.g. medium + expert → medium-expert)."""
  first = parts[0]
  for other in parts[1:]:
    if (other.env_id, other.obs_dim, other.action_dim) != (first.env_id, first.obs_dim, first.action_dim):
      raise minari_io.DatasetError(
          f"cannot concatenate {first.dataset_id} and {other.dataset_id}: environments or shapes "
          "differ; extra_dataset_ids must come from the same environment.")
  cat = lambda *xs: np.concatenate(xs)
  return dataclasses.replace(
      first, dataset_id="+".join(p.dataset_id for p in parts),
      transitions=jax.tree.map(cat, *[p.transitions for p in parts]),
      episode_returns=cat(*[p.episode_returns for p in parts]),
      initial_obs=cat(*[p.initial_obs for p in parts]))


def load_data(config, download: bool = False, workdir: str = "<workdir>") -> OfflineDataset:
  """Loads config.dataset_id (+ extra_dataset_ids) with the configured reward transform."""
  if config.dataset_id is None:
    raise ValueError("config.dataset_id is not set; use a domain config such as "
                     "--config=cql_jax/configs/classic.py:medium.")
  parts = []
  for dataset_id in (config.dataset_id, *config.extra_dataset_ids):
    if dataset_id.startswith((pendulum.NAMESPACE + "/", cartpole.NAMESPACE + "/")):
      _ensure_generated(dataset_id, config)
    elif not download and not paths.dataset_exists(dataset_id):
      raise _missing_dataset_error(dataset_id, config, workdir)
    obs_keys = config.data.obs_keys
    parts.append(minari_io.load_dataset(
        dataset_id, download=download, obs_keys=None if obs_keys is None else tuple(obs_keys),
        reward_scale=config.data.reward_scale, reward_bias=config.data.reward_bias))
  return parts[0] if len(parts) == 1 else _concatenate(parts)


# ---------------------------------------------------------------------------
# Pieces of the loop.
# ---------------------------------------------------------------------------


def check_finite(metrics: Dict[str, np.ndarray], first_step: int, members: Sequence[str],
                 last_checkpoint: Optional[int]) -> None:
  """Raises NonFiniteMetricError naming the earliest NaN/inf metric of a chunk.

  metrics: name -> [M, T] values of one chunk; first_step: steps done before the chunk;
  members: a label per member for the message, e.g. "seed 0" or "cql.weight=5, seed 0".
  Among metrics that break at the same step, a loss is named first.
  """
  bad = []
  for name, values in metrics.items():
    finite = np.isfinite(values)
    if not finite.all():
      t = int(np.flatnonzero(~finite.all(axis=0))[0])
      s = int(np.flatnonzero(~finite[:, t])[0])
      bad.append((t, "loss" not in name, name, s, float(values[s, t])))
  if not bad:
    return
  bad.sort()
  t, _, name, s, value = bad[0]
  others = sorted({b[2] for b in bad} - {name})
  resume = (f"the last good checkpoint is step {last_checkpoint}" if last_checkpoint is not None
            else "no checkpoint was written yet")
  raise NonFiniteMetricError(
      f"Training diverged: metric '{name}' is {value} at step {first_step + t + 1} "
      f"({members[s]}). Also non-finite in this chunk: {others or 'nothing else'}. The broken "
      f"state was not checkpointed ({resume}). Check the reward scale (config.data.reward_scale), "
      "lower the learning rates (config.agent.*_lr) or raise config.agent.cql.weight.")


class Setup(NamedTuple):
  """What the loop trains on: a name for logs, the agent, device data and its sampler."""
  name: str
  agent: Agent
  data: Any
  sample: Any  # sample(data, key) -> batch, or None for uniform transitions.
  evaluate: Any


def _atari_setup(config, num_seeds: int) -> Setup:
  """DQN-replay data (frames stored once, stacked when sampled) and ALE evaluation."""
  from cql_jax.data import dopamine_replay
  from cql_jax.discrete import agent as discrete_agent
  from cql_jax.envs import atari as atari_envs
  a = config.atari
  if a.replay_dir is None:
    raise ValueError(
        "config.atari.replay_dir is not set: copy gs://atari-replay-datasets/dqn/"
        f"{a.game}/{a.run}/replay_logs to a local directory and pass "
        "--config.atari.replay_dir=/path/to/replay_logs.")
  replay = dopamine_replay.load_paper_setting(a.replay_dir, a.setting, window=a.window)
  with atari_envs.make_atari_env(a.game) as env:
    num_actions = int(env.action_space.n)
  agent = discrete_agent.make_discrete_agent(config.agent, (84, 84, 4), num_actions)
  # Episode scores are reported raw: Atari has no D4RL reference scores.
  info = OfflineDataset(None, config.dataset_id, None, {}, None, None, np.zeros(0),
                        np.zeros((0,)), discrete=True, num_actions=num_actions)
  evaluate = sweep.make_member_evaluator(
      agent, info, num_seeds, config.eval_episodes, config.agent.gamma, config.eval_deterministic,
      make_env=lambda n: atari_envs.make_atari_vector_env(
          a.game, n, config.eval_seed, max_episode_steps=a.max_episode_steps))
  return Setup(config.dataset_id, agent, dopamine_replay.to_device(replay),
               dopamine_replay.sample_fn(config.batch_size, a.clip_reward), evaluate)


def prepare(config, num_seeds: int, download: bool = False, workdir: str = "<workdir>") -> Setup:
  """Loads the data `config` names and builds the agent and evaluator for it."""
  if config.get("atari") is not None:
    return _atari_setup(config, num_seeds)
  dataset = load_data(config, download, workdir)
  agent = agents.make_agent(config.agent, dataset)
  evaluate = sweep.make_member_evaluator(agent, dataset, num_seeds, config.eval_episodes,
                                         config.agent.gamma, config.eval_deterministic)
  return Setup(dataset.dataset_id, agent, agents.device_data(dataset), None, evaluate)


def _config_json(config) -> dict:
  return json.loads(config.to_json_best_effort())


def _diff(saved: dict, new: dict, prefix: str = "") -> list:
  keys = sorted(set(saved) | set(new))
  out = []
  for k in keys:
    a, b = saved.get(k), new.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _diff(a, b, f"{prefix}{k}.")
    elif a != b:
      out.append(f"{prefix}{k}: {a!r} -> {b!r}")
  return out


def _prepare_workdir(workdir: pathlib.Path, config, seeds, resume: bool,
                     sweep_json: Optional[dict] = None) -> None:
  """Writes config.json, or on resume checks that the run's config, seeds and sweep still match."""
  saved_path = workdir / CONFIG_FILE
  new = {"config": _config_json(config), "seeds": list(seeds), "sweep": sweep_json}
  if saved_path.exists():
    if not resume:
      raise FileExistsError(
          f"{workdir} already holds a run ({CONFIG_FILE} exists). Pass --resume to continue it, "
          "or choose a new --workdir.")
    saved = json.loads(saved_path.read_text())
    if saved["seeds"] != new["seeds"]:
      raise ValueError(f"--seeds={','.join(map(str, seeds))} differs from the run's seeds "
                       f"{saved['seeds']} in {workdir}; resume with the same seeds.")
    difference = sweep.resume_difference(saved.get("sweep"), sweep_json)
    if difference:
      raise sweep.SweepError(f"cannot resume {workdir} with a different sweep: {difference}. "
                             "Resume with the same --sweep/--sweep_zip flags, or choose a new "
                             "--workdir.")
    changes = [d for d in _diff(saved["config"], new["config"])
               if d.split(":")[0] not in _RESUMABLE_CHANGES]
    if changes:
      raise ValueError(f"cannot resume {workdir} with a different config; changed: {changes}. "
                       f"Only {_RESUMABLE_CHANGES} may change on resume.")
  workdir.mkdir(parents=True, exist_ok=True)
  writers.atomic_write_json(saved_path, new)


def _check_schedule(config) -> None:
  k = config.steps_per_chunk
  for name in ("num_steps", "eval_every", "checkpoint_every"):
    if config[name] <= 0 or config[name] % k:
      raise ValueError(f"config.{name}={config[name]} must be a positive multiple of "
                       f"config.steps_per_chunk={k}.")


# ---------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir, seeds: Sequence[int] = (0,),
                       resume: bool = False, *, download: bool = False,
                       progress: bool = True, grid: Optional[sweep.Grid] = None,
                       memory_limit_bytes: Optional[int] = None) -> RunResult:
  """Trains every member (seed, or sweep setting × seed) of `config` together under `workdir`.

  Args:
    config: a domain config (cql_jax/configs/<domain>.py).
    workdir: run directory (created).
    seeds: integer seeds; all train in one vmapped program.
    resume: continue from the latest checkpoint in `workdir` (or start if there is none).
    download: let Minari download missing datasets.
    progress: show a tqdm bar with steps/s and the latest mean evaluation score.
    grid: a sweep (cql_jax.sweep.Grid); its settings × seeds are the members. None: the seeds.
    memory_limit_bytes: device memory the sweep must fit in (default: the device's own).

  Returns:
    RunResult with the final state (stacked on [M] members) and the results.json contents.
  """
  seeds = [int(s) for s in seeds]
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"seeds must be distinct and non-empty, got {seeds}.")
  _check_schedule(config)
  workdir = pathlib.Path(workdir)
  # [members] A sweep's settings × seeds (or the seeds), checked with their device layout and
  # memory before the workdir is written or anything compiles.
  plan = sweep.plan(config, grid, seeds)
  members, k = plan.members, config.steps_per_chunk
  setup = prepare(plan.program_config(config), plan.num_members, download, str(workdir))
  layout = sweep.check_program(config, plan, setup.agent, setup.data, setup.sample,
                               memory_limit_bytes)
  primary = jax.process_index() == 0  # one process writes files; orbax coordinates its own.
  if primary:
    _prepare_workdir(workdir, config, seeds, resume, plan.to_json())
  program = sweep.build_program(config, plan, setup.agent, setup.data, setup.sample, layout)
  state, loop_keys, data, chunk, chunk_keys = program
  agent, evaluate = setup.agent, setup.evaluate
  names = [m.name for m in members] if plan.grid is not None else None
  labels = [m.label for m in members]
  num_chunks = config.num_steps // k
  # [end members]

  ckpt = checkpoints.Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
  start_chunk = 0
  if resume and ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state)
    start_chunk = int(meta["next_chunk"])
    _log.info("resumed %s at step %d", workdir, start_chunk * k)
  last_checkpoint = start_chunk * k if start_chunk else None
  if primary:
    writers.truncate_jsonl(workdir / writers.METRICS_FILE, start_chunk * k)
  writer = (writers.MetricWriter(workdir, [m.seed for m in members], run_names=names,
                                 purge_step=start_chunk * k + 1 if resume else None)
            if primary else writers.NullWriter())
  history = [{"step": r["step"], **{n: v for n, v in r.items() if n.startswith("eval/")}}
             for r in writers.read_jsonl(workdir / writers.METRICS_FILE) if r["kind"] == "eval"]

  from tqdm import tqdm  # local: only the runner draws a bar.
  bar = tqdm(total=config.num_steps, initial=start_chunk * k, unit="step", disable=not progress,
             desc=setup.name, dynamic_ncols=True)
  started = time.time()
  try:
    for index in range(start_chunk, num_chunks):
      t0 = time.time()
      keys = chunk_keys(loop_keys, index)
      state, metrics = chunk(state, data, keys)
      metrics = jax.device_get(metrics)  # name -> [M, k]
      check_finite(metrics, index * k, labels, last_checkpoint)
      step = (index + 1) * k
      seconds = time.time() - t0
      writer.write(step, "train", {n: v.mean(axis=-1) for n, v in metrics.items()},
                   steps_per_second=k / seconds)
      bar.update(k)
      if step % config.eval_every == 0 or step == config.num_steps:
        scores = evaluate(state, config.eval_seed)
        writer.write(step, "eval", scores)
        history.append({"step": step, **{n: v.tolist() for n, v in scores.items()}})
        key = "eval/normalized_score" if "eval/normalized_score" in scores else "eval/return"
        bar.set_postfix({key.split("/")[1]: f"{scores[key].mean():.1f}"})
      if step % config.checkpoint_every == 0 or step == config.num_steps:
        writer.flush()
        ckpt.save(step, state, {"next_chunk": index + 1, "step": step, "seeds": seeds,
                                "members": names})
        last_checkpoint = step
  finally:
    bar.close()
    writer.close()
    ckpt.close()

  final = history[-1] if history else {}
  results = {
      "dataset_id": setup.name, "config_arg": config.get("config_arg"), "seeds": seeds,
      "num_steps": config.num_steps, "final": final,
      "final_mean": {n: float(np.mean(v)) for n, v in final.items() if n.startswith("eval/")},
      "evals": history, "wall_seconds_this_session": time.time() - started,
  }
  if plan.grid is not None:
    results["members"] = [{"name": m.name, "seed": m.seed, "setting": dict(m.setting)}
                          for m in members]
    results["sweep"] = sweep.summary(plan, final) if final else []
  if primary:
    writers.atomic_write_json(workdir / RESULTS_FILE, results)
  return RunResult(state=state, results=results)
