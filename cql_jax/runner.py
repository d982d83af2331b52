"""Experiment loop: S seeds trained in one vmapped program, evaluated, logged and checkpointed.

Keys: seed s has run key jax.random.key(s), split into an init key and a loop key; chunk i uses
train.chunk_key(loop key, i). Nothing random is carried between chunks, so a run resumed from
the checkpoint after chunk i replays chunks i+1... exactly, and seed s gets the same keys whether
it runs alone or inside a sweep.

Members: the loop trains *members*, each a (hyperparameter setting, seed) pair of a sweep
(cql_jax.sweep); without a sweep the members are the seeds. The path runs one way: cli ->
runner -> sweep; the runner asks sweep for the plan and the compiled program, and sweep never
calls back. They run in one vmapped program,
on one device or split over a Mesh of every device (config.layout, cql_jax.parallel).

Workdir layout: config.json, metrics.jsonl, tb/seed_<s>/ (a sweep: tb/<member name>/) and
tb/mean/ (TensorBoard), wandb/ (only with config.log.wandb), checkpoints/<step>/ (orbax),
results.json (written at the end), and .lock while a process owns the directory
(cql_jax.workdir_lock).

Start-up order: lock the workdir, check a saved run against this one, load the data and build
the agent, and only then write config.json, so a start that fails (a missing dataset, a bad
value) leaves nothing behind that stops the same command from being launched again.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import pathlib
import time
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence

import jax
import ml_collections
import numpy as np

from cql_jax import agents
from cql_jax import checkpoints
from cql_jax import distributed
from cql_jax import evaluation
from cql_jax import finetune
from cql_jax import scores
from cql_jax import statistics as offline_statistics
from cql_jax import sweep
from cql_jax import workdir_lock
from cql_jax import writers
from cql_jax.data import buffer
from cql_jax.data import minari_io
from cql_jax.data import npz
from cql_jax.data import ogbench_io
from cql_jax.data import split
from cql_jax.makers import registry
from cql_jax.types import Agent, OfflineDataset

_log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
# Keys that may change when a run is resumed: training longer is a legitimate continuation, and
# the logging sinks, the divergence warning threshold and the device layout do not touch
# training.
_RESUMABLE_CHANGES = ("num_steps", "online.steps", "online.buffer_capacity",
                      "q_divergence_factor", "log.", "layout", "selection.statistics",
                      "selection.num_transitions")
# The agents' metric for the mean Q-value of the sampled dataset actions (continuous, discrete).
DATA_Q_METRICS = ("critic/q_data", "critic/q_mean")


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


def dataset_ids(config) -> list:
  """The Minari ids config.dataset_id selects ("a+b" appends b's transitions to a's)."""
  return [i.strip() for i in (config.dataset_id or "").split("+") if i.strip()]


def _download_command(config, workdir) -> str:
  config_arg = config.get("config_arg") or "<your config file>:<variant>"
  return f"python -m experiments.train --config={config_arg} --workdir={workdir} --download"


def _concatenate(parts: Sequence[OfflineDataset]) -> OfflineDataset:
  """Appends datasets of one environment (e.g. medium + expert → medium-expert)."""
  first = parts[0]
  for other in parts[1:]:
    if (other.env_id, other.obs_dim, other.action_dim) != (first.env_id, first.obs_dim, first.action_dim):
      raise minari_io.DatasetError(
          f"cannot concatenate {first.dataset_id} and {other.dataset_id}: environments or shapes "
          "differ; the ids joined by '+' in config.dataset_id must come from one environment.")
  cat = lambda *xs: np.concatenate(xs)
  return dataclasses.replace(
      first, dataset_id="+".join(p.dataset_id for p in parts),
      transitions=jax.tree.map(cat, *[p.transitions for p in parts]),
      episode_returns=cat(*[p.episode_returns for p in parts]),
      initial_obs=cat(*[p.initial_obs for p in parts]))


def _env_fallback(config):
  """(env_id, env_kwargs) of the config, for data that records no environment."""
  kwargs = config.get("env_kwargs")
  return config.get("env_id"), ({} if kwargs is None else dict(kwargs))


def load_data(config, download: bool = False, workdir: str = "<workdir>", *,
              check_env: bool = True) -> OfflineDataset:
  """Loads the data `config` selects, with its reward transform, and checks it fits its env.

  config.dataset_path (a .npz file, cql_jax.data.npz) wins over config.dataset_id (Minari ids
  joined by "+"); a variant without data (config.data.unavailable) is refused only here, so an
  override of either can still supply it. Every id is made available first
  (cql_jax.makers.registry.ensure_available: generated, downloaded, or a message saying how).
  With check_env the dataset's evaluation environment is built once and its observation and
  action spaces compared with the data's (cql_jax.evaluation.check_eval_env), before training.

  Raises:
    DatasetError: nothing selected, missing or malformed data, or data that does not fit its
      evaluation environment (or an environment that cannot be built here).
  """
  obs_keys = config.data.obs_keys
  obs_keys = None if obs_keys is None else tuple(obs_keys)
  env_id, env_kwargs = _env_fallback(config)
  if config.get("dataset_path"):
    dataset = npz.load_npz(config.dataset_path, obs_keys=obs_keys,
                           reward_scale=config.data.reward_scale,
                           reward_bias=config.data.reward_bias, env_id=env_id,
                           env_kwargs=env_kwargs)
  else:
    ids = dataset_ids(config)
    if not ids:
      reason = config.data.get("unavailable")
      raise minari_io.DatasetError(
          reason or "config.dataset_id is not set; use a domain config such as "
          "--config=cql_jax/configs/classic.py:medium, or pass --config.dataset_id=<Minari id> "
          "or --config.dataset_path=<file.npz>.")
    parts = []
    for dataset_id in ids:
      registry.ensure_available(dataset_id, download, generation=config.get("generation"),
                                download_command=_download_command(config, workdir))
      load = (ogbench_io.load_dataset if ogbench_io.parse_id(dataset_id)
              else minari_io.load_dataset)  # OGBench single-task ids, else Minari ids.
      parts.append(load(dataset_id, obs_keys=obs_keys, reward_scale=config.data.reward_scale,
                        reward_bias=config.data.reward_bias))
    dataset = parts[0] if len(parts) == 1 else _concatenate(parts)
    if dataset.env_spec is None and dataset.env_id is None and env_id is not None:
      dataset = dataclasses.replace(dataset, env_id=env_id, env_kwargs=env_kwargs)
  if check_env:
    evaluation.check_eval_env(dataset)
  return dataset


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


def q_bound(max_abs_reward: float, gamma: float) -> float:
  """max|r| / (1 − γ): no policy's discounted return, hence no exact Q-value, exceeds it."""
  return float(max_abs_reward) / (1.0 - float(gamma))


def q_scale(metrics: Dict[str, np.ndarray], bound: Optional[float], factor: float
            ) -> Dict[str, np.ndarray]:
  """Divergence metrics for one chunk's per-seed means (name -> [S]).

  Returns {"critic/q_bound_ratio": |mean Q on the data| / bound, "warnings/q_divergence": 1.0
  where that ratio exceeds `factor`, else 0.0}, both [S]; empty when the agent reports no data Q
  or the rewards give no bound (all zero).
  """
  name = next((n for n in DATA_Q_METRICS if n in metrics), None)
  if name is None or not bound:
    return {}
  ratio = np.abs(np.asarray(metrics[name], np.float64)) / bound
  return {"critic/q_bound_ratio": ratio, "warnings/q_divergence": (ratio > factor).astype(np.float64)}


def make_evaluator(agent: Agent, dataset: OfflineDataset, num_seeds: int, num_episodes: int,
                   gamma: float, deterministic: bool = True, make_env=None):
  """evaluate(states [M, ...], seed) -> {"eval/return": [M], "eval/normalized_score": [M], ...}.

  num_seeds: M, the members (seeds, or settings x seeds) stacked in `states`.
  sweep.make_member_evaluator (all members' episodes in one vector env) in the dataset's own
  environment (evaluation.make_eval_env: its recorded spec), unless make_env(num_envs) is given.
  """
  make_env = make_env or functools.partial(evaluation.make_eval_env, dataset)
  return sweep.make_member_evaluator(agent, dataset, num_seeds, num_episodes, gamma,
                                     deterministic, make_env)


class Setup(NamedTuple):
  """What the loop trains on: a name for logs, the agent, device data and its sampler."""
  name: str
  agent: Agent
  data: Any
  sample: Any  # sample(data, key) -> batch, or None for uniform transitions.
  evaluate: Any
  # max |reward| the agent trains on (after any transform or clipping), for the Q-scale check;
  # None when unknown.
  max_abs_reward: Optional[float] = None
  # scores.dataset_score of the training data ({} when it records no episodes).
  data_score: Optional[Dict[str, float]] = None
  # statistics(states) -> {"offline/...": [M]} (cql_jax.statistics), or None.
  statistics: Any = None
  # The training data's OfflineDataset (None for Atari's replay): the online phase acts in its env.
  dataset: Optional[OfflineDataset] = None


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
  max_abs_reward = float(np.max(np.abs(replay.rewards))) if len(replay.rewards) else None
  if max_abs_reward is not None and a.clip_reward is not None:
    max_abs_reward = min(max_abs_reward, float(a.clip_reward))
  return Setup(config.dataset_id, agent, dopamine_replay.to_device(replay),
               dopamine_replay.sample_fn(config.batch_size, a.clip_reward), evaluate,
               max_abs_reward)


def prepare(config, num_seeds: int, download: bool = False, workdir: str = "<workdir>") -> Setup:
  """Loads the data `config` names and builds the agent and evaluator for it."""
  if config.get("atari") is not None:
    return _atari_setup(config, num_seeds)
  dataset = load_data(config, download, workdir)
  dataset, held_out = training_split(config, dataset)
  agent = agents.make_agent(config.agent, dataset)
  evaluate = make_evaluator(agent, dataset, num_seeds, config.eval_episodes, config.agent.gamma,
                            config.eval_deterministic)
  return Setup(dataset.dataset_id, agent, finetune.training_data(config, dataset), None, evaluate,
               float(np.max(np.abs(dataset.transitions.reward))), scores.dataset_score(dataset),
               make_statistics(config, agent, dataset, held_out), dataset)


def _selection(config):
  return config.get("selection") or ml_collections.ConfigDict(
      {"statistics": False, "holdout_fraction": 0.0, "num_transitions": 4096, "seed": 0})


def training_split(config, dataset: OfflineDataset):
  """(training dataset, held-out transitions): config.selection.holdout_fraction of whole
  episodes kept out of training (cql_jax.data.split), or the dataset and an empty slice."""
  sel = _selection(config)
  return split.holdout_split(dataset, float(sel.holdout_fraction), int(sel.seed))


def make_statistics(config, agent: Agent, dataset: OfflineDataset, held_out):
  """The offline statistics function of `agent` on the held-out slice (or, with none held out, a
  fixed sample of the training transitions), or None when switched off or not available."""
  sel = _selection(config)
  if not sel.statistics:
    return None
  source = held_out if len(held_out.reward) else dataset.transitions
  data = offline_statistics.fixed_slice(source, int(sel.num_transitions), int(sel.seed))
  if not dataset.discrete:
    data = buffer.scale_actions(data, dataset.action_low, dataset.action_high)
  return offline_statistics.make_statistics(
      agent, data, dataset.initial_obs, deterministic=bool(config.eval_deterministic),
      seed=int(sel.seed))


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


def _resumable(change: str) -> bool:
  key = change.split(":")[0]
  return any(key in (r, r.rstrip(".")) or (r.endswith(".") and key.startswith(r))
             for r in _RESUMABLE_CHANGES)


def _check_saved_run(workdir: pathlib.Path, config, seeds, resume: bool,
                     sweep_json: Optional[dict] = None) -> None:
  """Refuses to overwrite a run, or to resume one with other seeds, sweep or config."""
  saved_path = workdir / CONFIG_FILE
  if not saved_path.exists():
    return
  if not resume:
    raise FileExistsError(
        f"{workdir} already holds a run ({CONFIG_FILE} exists). Pass --resume to continue it, "
        "or choose a new --workdir.")
  saved = json.loads(saved_path.read_text())
  if saved["seeds"] != list(seeds):
    raise ValueError(f"--seeds={','.join(map(str, seeds))} differs from the run's seeds "
                     f"{saved['seeds']} in {workdir}; resume with the same seeds.")
  difference = sweep.resume_difference(saved.get("sweep"), sweep_json)
  if difference:
    raise sweep.SweepError(f"cannot resume {workdir} with a different sweep: {difference}. "
                           "Resume with the same --sweep/--sweep_zip flags, or choose a new "
                           "--workdir.")
  changes = [d for d in _diff(saved["config"], _config_json(config)) if not _resumable(d)]
  if changes:
    raise ValueError(f"cannot resume {workdir} with a different config; changed: {changes}. "
                     f"Only {_RESUMABLE_CHANGES} may change on resume.")


def _make_workdir(workdir: pathlib.Path) -> bool:
  """Creates `workdir` if needed; returns whether this call created it."""
  if workdir.exists() and not workdir.is_dir():
    raise NotADirectoryError(f"--workdir={workdir} is a file, not a directory; pass a directory "
                             "(it is created if missing).")
  if workdir.is_dir():
    return False
  try:
    workdir.mkdir(parents=True)
  except (FileExistsError, NotADirectoryError):
    # The processes of a group start together on one shared filesystem: another one may have
    # made the directory between the check above and this mkdir. That one created it.
    if workdir.is_dir():
      return False
    raise NotADirectoryError(f"--workdir={workdir} cannot be created: a part of its path is a "
                             "file, not a directory.") from None
  return True


def _check_schedule(config) -> None:
  k = config.steps_per_chunk
  finetune.check_schedule(config)
  for name in ("num_steps", "eval_every", "checkpoint_every"):
    if name == "num_steps" and config[name] == 0 and finetune.online_steps(config):
      continue  # online from scratch (SAC): no offline steps.
    if config[name] <= 0 or config[name] % k:
      raise ValueError(f"config.{name}={config[name]} must be a positive multiple of "
                       f"config.steps_per_chunk={k}.")


def _make_writers(config, workdir, seeds, purge_step, run_names=None):
  log = config.get("log") or ml_collections.ConfigDict()
  return writers.make_writers(
      workdir, seeds, purge_step=purge_step, tensorboard=log.get("tensorboard", True),
      wandb=log.get("wandb", False), wandb_project=log.get("wandb_project", "cql_jax"),
      wandb_mode=log.get("wandb_mode", "offline"), config=_config_json(config),
      run_names=run_names)


def _summary_from_log(records, steps_per_chunk: int, q_factor: float) -> Dict[str, Any]:
  """Training time, evaluation time and the first step each seed's (a sweep: each member's) Q
  left its bound, from the whole metrics.jsonl (so a resumed run's summary covers every
  session)."""
  train_s = sum(steps_per_chunk / r["steps_per_second"] for r in records
                if r["kind"] == "train" and r.get("steps_per_second"))
  eval_s = sum(r.get("seconds", 0.0) for r in records if r["kind"] == "eval")
  diverged = {}
  for r in records:
    if r["kind"] == "train" and "warnings/q_divergence" in r:
      # A sweep's members share seeds: key them by member name.
      names = r.get("members") or [str(s) for s in r["seeds"]]
      for name, flag in zip(names, r["warnings/q_divergence"]):
        if flag and name not in diverged:
          diverged[name] = r["step"]
  return {"train_seconds": train_s, "eval_seconds": eval_s, "q_divergence_first_step": diverged,
          "q_divergence_factor": q_factor}


# ---------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir, seeds: Sequence[int] = (0,),
                       resume: bool = False, *, download: bool = False,
                       progress: bool = True,
                       grid: Optional[sweep.Grid | Mapping[str, Sequence]] = None,
                       memory_limit_bytes: Optional[int] = None) -> RunResult:
  """Trains every member (seed, or sweep setting × seed) of `config` together under `workdir`.

  Args:
    config: a domain config (cql_jax/configs/<domain>.py).
    workdir: run directory (created). One process at a time: a second one, while the first is
      alive, gets workdir_lock.WorkdirLockedError naming the first one's PID.
    seeds: integer seeds; all train in one vmapped program.
    resume: continue from the latest checkpoint in `workdir` (or start if there is none).
    download: let Minari download missing datasets.
    progress: show a tqdm bar with steps/s and the latest mean evaluation score.
    grid: a sweep, as a cql_jax.sweep.Grid or {dotted key: values} for a plain product (e.g.
      {"agent.cql.weight": [1.0, 5.0], "agent.critic_lr": [3e-4, 1e-3]}); its settings × seeds
      are the members, and results["sweep"] holds the table per setting. None: the seeds.
    memory_limit_bytes: device memory the sweep must fit in (default: the device's own).

  Returns:
    RunResult with the final state (stacked on [M] members) and the results.json contents.
  """
  seeds = [int(s) for s in seeds]
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"seeds must be distinct and non-empty, got {seeds}.")
  _check_schedule(config)
  workdir = pathlib.Path(workdir)
  created = _make_workdir(workdir)
  # One process per workdir: on a multi-process launch process 0 owns the directory (and writes
  # every file); the others train their shards and must not contend for its lock. A lock refused
  # to process 0 stops the whole group (distributed.together).
  try:
    with contextlib.ExitStack() as lock:
      with distributed.together("start-up (locking the workdir)"):
        if distributed.is_primary():
          lock.enter_context(workdir_lock.hold(workdir))
      return _run(config, workdir, seeds, resume, download, progress, grid, memory_limit_bytes)
  finally:
    if created and workdir.is_dir() and not any(workdir.iterdir()):
      workdir.rmdir()  # a start that failed before writing anything leaves no trace.


def _run(config, workdir: pathlib.Path, seeds, resume: bool, download: bool, progress: bool,
         grid, memory_limit_bytes) -> RunResult:
  # [members] A sweep's settings × seeds (or the seeds), checked with their device layout and
  # memory before config.json is written or anything compiles.
  primary = distributed.is_primary()  # one process writes files; orbax coordinates its own.
  # Every process loads its own data; an error on any stops all (distributed.together), and they
  # must agree on what they are about to train.
  with distributed.together("start-up"):
    plan = sweep.plan(config, grid, seeds)
    if primary:
      _check_saved_run(workdir, config, seeds, resume, plan.to_json())
    setup = prepare(plan.program_config(config), plan.num_members, download, str(workdir))
    layout = sweep.check_program(config, plan, setup.agent, setup.data, setup.sample,
                                 memory_limit_bytes)
    finetune.check(config, setup.dataset, layout)
  distributed.check_agreement({"config": _config_json(config), "seeds": seeds,
                               "sweep": plan.to_json(), "resume": resume,
                               "data": lambda: distributed.fingerprint(setup.data)})
  members, k = plan.members, config.steps_per_chunk
  if primary:
    writers.atomic_write_json(workdir / CONFIG_FILE, {"config": _config_json(config),
                                                      "seeds": seeds, "sweep": plan.to_json()})
  program = sweep.build_program(config, plan, setup.agent, setup.data, setup.sample, layout)
  state, loop_keys, data, chunk, chunk_keys = program
  evaluate = setup.evaluate
  names = [m.name for m in members] if plan.grid is not None else None
  labels = [m.label for m in members]
  num_chunks = config.num_steps // k
  # [end members]
  bound = None if setup.max_abs_reward is None else q_bound(setup.max_abs_reward, config.agent.gamma)
  q_factor = float(config.get("q_divergence_factor", 10.0))

  distributed.meet("checkpoints")  # orbax's first step is a collective of every process.
  ckpt = checkpoints.Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
  start_chunk = 0
  if resume and ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state)
    start_chunk = int(meta["next_chunk"])
    _log.info("resumed %s at step %d", workdir, start_chunk * k)
  last_checkpoint = start_chunk * k if start_chunk else None
  # An online phase's checkpoint is later than every offline one (cql_jax.finetune).
  resume_step = max(start_chunk * k, (resume and finetune.prepare_resume(workdir)) or 0)
  if primary:
    writers.truncate_jsonl(workdir / writers.METRICS_FILE, resume_step)
  writer = (_make_writers(config, workdir, [m.seed for m in members],
                          resume_step + 1 if resume else None, names)
            if primary else writers.MultiWriter([]))
  history = [{"step": r["step"], **{n: v for n, v in r.items()
                                    if n.startswith(("eval/", "online/"))}}
             for r in writers.read_jsonl(workdir / writers.METRICS_FILE) if r["kind"] == "eval"
             ] if primary else None
  history = distributed.allgather_json(history)[0]  # what process 0 read, on every process.
  eval_due = lambda step: step % config.eval_every == 0 or step == config.num_steps
  ckpt_due = lambda step: step % config.checkpoint_every == 0 or step == config.num_steps

  from tqdm import tqdm  # local: only the runner draws a bar.
  bar = tqdm(total=config.num_steps, initial=start_chunk * k, unit="step", disable=not (progress and primary),
             desc=setup.name, dynamic_ncols=True)

  def run_evaluation(step):
    t0 = time.time()
    eval_scores = evaluate(state, config.eval_seed)
    writer.write(step, "eval", {**eval_scores, "seconds": time.time() - t0})
    history.append({"step": step, **{n: v.tolist() for n, v in eval_scores.items()}})
    key = sweep.headline_metric(eval_scores)
    bar.set_postfix({key.split("/")[1]: f"{eval_scores[key].mean():.1f}"})
    if setup.statistics is not None:
      writer.write(step, "offline", setup.statistics(state))

  started = time.time()
  warned = set()
  try:
    # A checkpoint whose step was due an evaluation that never got written (the evaluation
    # failed after the save): evaluate the restored state first.
    if start_chunk and eval_due(start_chunk * k) and all(h["step"] != start_chunk * k
                                                          for h in history):
      run_evaluation(start_chunk * k)
    if start_chunk < num_chunks:
      chunk = distributed.compile_then_meet("training", chunk, state, data,
                                            chunk_keys(loop_keys, start_chunk))
    for index in range(start_chunk, num_chunks):
      t0 = time.time()
      keys = chunk_keys(loop_keys, index)
      state, metrics = chunk(state, data, keys)
      metrics = jax.device_get(metrics)  # name -> [M, k]
      check_finite(metrics, index * k, labels, last_checkpoint)
      step = (index + 1) * k
      seconds = time.time() - t0
      means = {n: v.mean(axis=-1) for n, v in metrics.items()}
      scale = q_scale(means, bound, q_factor)
      for m, flag in enumerate(scale.get("warnings/q_divergence", ())):
        if flag and m not in warned:
          warned.add(m)
          q_name = next(n for n in DATA_Q_METRICS if n in means)
          _log.warning(
              "Q is diverging (%s, step %d): mean Q on the data is %.4g, %.1f times the "
              "bound max|r|/(1-gamma) = %.4g that the rewards allow (threshold "
              "config.q_divergence_factor=%g). Lower the learning rates (config.agent.*lr), "
              "raise the CQL weight or check the reward scale.", labels[m], step,
              float(means[q_name][m]), float(scale["critic/q_bound_ratio"][m]), bound, q_factor)
      writer.write(step, "train", {**means, **scale, "steps_per_second": k / seconds})
      bar.update(k)
      # The checkpoint comes first, so an evaluation that fails loses no training.
      if ckpt_due(step):
        writer.flush()
        ckpt.save(step, state, {"next_chunk": index + 1, "step": step, "seeds": seeds,
                                "members": names})
        last_checkpoint = step
      if eval_due(step):
        run_evaluation(step)
    if finetune.online_steps(config):
      state = finetune.run(config, workdir, setup, state, loop_keys, seeds=seeds, labels=labels,
                           writer=writer, history=history, resume=resume,
                           check_finite=check_finite)
  finally:
    bar.close()
    writer.close()
    ckpt.close()

  final = history[-1] if history else {}
  results = {
      "dataset_id": setup.name, "config_arg": config.get("config_arg"), "seeds": seeds,
      "num_steps": config.num_steps, "online_steps": finetune.online_steps(config),
      "mesh": {"processes": jax.process_count(), "devices": jax.device_count(),
               "layout": "single" if layout is None else f"{layout[0]}x{layout[1]}"},
      "final": final,
      "final_mean": {n: float(np.mean(v)) for n, v in final.items() if n.startswith("eval/")},
      "dataset_score": setup.data_score or {},
      "evals": history, "wall_seconds_this_session": time.time() - started, "q_bound": bound,
      **_summary_from_log(writers.read_jsonl(workdir / writers.METRICS_FILE) if primary else [],
                          k, q_factor),
  }
  if plan.grid is not None:
    results["members"] = [{"name": m.name, "seed": m.seed, "setting": dict(m.setting)}
                          for m in members]
    results["sweep"] = sweep.summary(plan, final) if final else []
  if primary:
    writers.atomic_write_json(workdir / RESULTS_FILE, results)
  return RunResult(state=state, results=results)
