"""Offline-to-online fine-tuning: after the offline steps, the members keep training in the
dataset's own environment (config.online.steps > 0), as Cal-QL and CQL fine-tuning do.

The runner calls three things here: `check` (refusals, before anything is written),
`training_data` (the device data, with Monte-Carlo returns-to-go for Cal-QL) and `run` (the online
phase, after the offline loop). Everything else about the online phase lives in this module.

The loop, per *round*: every member's own copy of the environment (one vector env with a copy
per member, so seeds and sweeps stay vmapped) takes `steps_per_round` steps with the member's
stochastic policy (one jitted, member-vmapped `act` per step); then one compiled call inserts
the transitions of the episodes that finished into each member's ring buffer on the device and
runs steps_per_round × utd updates in a lax.scan, each batch drawn `offline_fraction` from the
offline data and the rest from the member's online buffer (Cal-QL's and RLPD's 50/50 by
default). Nothing compiles per step: the staging area has a fixed size and the number of rows
written is a traced argument (data.replay.insert_first).

Transitions enter the buffer when their episode ends, because Cal-QL's reference value is their
return-to-go, known only then (the paper's code collects whole trajectories the same way); CQL
and SAC take the same path, so the comparison differs only in the loss. Episode ends follow the
dataset conventions: discount 0 only at a termination; a time limit keeps 1 and ends the sum.

Steps: `online.steps` counts environment steps of each member. Gradient steps continue the
offline count (config.num_steps + updates), so metrics.jsonl rows keep one `step` axis; every
online row also carries "online/env_steps".

Checkpoints: checkpoints_online/<env step>/ hold the states and the online buffers (with every
finished episode flushed into them). `--resume` restores the latest and continues; episodes that
were in flight at the checkpoint are lost and the environments restart from a reset, so a
resumed online phase is not bit-identical to an uninterrupted one (the offline phase is).
"""
from __future__ import annotations

import json
import logging
import pathlib
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import gymnasium as gym
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cql_jax import agents
from cql_jax import checkpoints
from cql_jax import evaluation
from cql_jax import scores
from cql_jax import train
from cql_jax import writers
from cql_jax.data import buffer as buffer_lib
from cql_jax.data import observations
from cql_jax.data import replay
from cql_jax.data import returns
from cql_jax.data.errors import DatasetError
from cql_jax.types import OfflineDataset, ReturnTransition, Transition

_log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints_online"
# fold_in tags that keep the online phase's random streams apart from the offline chunks'.
_ACT, _LEARN, _RANDOM = 0x0A11, 0x0A12, 0x0A13


def default_config() -> ml_collections.ConfigDict:
  """config.online: the online phase's settings (base.get_config holds them)."""
  c = ml_collections.ConfigDict()
  c.steps = 0                  # environment steps per member after the offline steps; 0: none.
  c.offline_fraction = 0.5     # share of each batch drawn from the offline data (rest: online).
  c.utd = 1.0                  # update-to-data ratio: gradient steps per environment step.
  c.steps_per_round = 50       # environment steps per member between compiled calls.
  c.random_steps = 0           # uniform random actions first (SAC from scratch), no updates.
  c.buffer_capacity = ml_collections.config_dict.placeholder(int)  # per member; None: steps.
  c.log_every = 1000           # environment steps between training-metric rows.
  c.eval_every = 5000          # environment steps between evaluations (and at the end).
  c.checkpoint_every = 10_000  # environment steps between checkpoints (and at the end).
  c.env_seed = 2_000_000       # reset seeds of the training environments (apart from eval's).
  return c


def online_steps(config) -> int:
  online = config.get("online")
  return 0 if online is None else int(online.steps)


def calibrated(config) -> bool:
  cql = config.agent.get("cql")
  return bool(cql is not None and cql.get("calibrated", False))


# ---------------------------------------------------------------------------
# What the runner calls before training.
# ---------------------------------------------------------------------------


def check_schedule(config) -> None:
  """Refuses online settings that cannot run, from the config alone (ValueError)."""
  if not online_steps(config):
    return
  o = config.online
  k = int(o.steps_per_round)
  if config.get("atari") is not None or agents.is_discrete_config(config.agent):
    raise ValueError("config.online.steps > 0: online fine-tuning is implemented for the "
                     "continuous (CQL-on-SAC) agent only; discrete agents train offline. Set "
                     "--config.online.steps=0.")
  if k <= 0:
    raise ValueError(f"config.online.steps_per_round must be positive, got {k}.")
  for name in ("steps", "log_every", "eval_every", "checkpoint_every", "random_steps"):
    if int(o[name]) < 0 or int(o[name]) % k or (name != "random_steps" and int(o[name]) == 0):
      raise ValueError(f"config.online.{name}={o[name]} must be a positive multiple of "
                       f"config.online.steps_per_round={k} (random_steps may be 0).")
  if not 0.0 <= float(o.offline_fraction) <= 1.0:
    raise ValueError(f"config.online.offline_fraction={o.offline_fraction} must be in [0, 1].")
  updates = float(o.utd) * k
  if o.utd <= 0 or abs(updates - round(updates)) > 1e-9:
    raise ValueError(f"config.online.utd={o.utd} times steps_per_round={k} must be a positive "
                     "whole number of updates per round.")
  if round(config.batch_size * float(o.offline_fraction)) == config.batch_size \
      and float(o.offline_fraction) < 1.0:
    raise ValueError(f"config.online.offline_fraction={o.offline_fraction} leaves no online "
                     f"transition in a batch of {config.batch_size}; use 1.0 or a smaller share.")


def check(config, dataset: Optional[OfflineDataset], layout) -> None:
  """Refuses an online phase this data and these devices cannot run, before anything is written.

  Raises DatasetError for data without an environment or whose spaces differ from it (the
  runner's load has already checked both for evaluation; this names the online phase), and
  ValueError for a device layout over several devices.
  """
  if not online_steps(config):
    return
  if dataset is None or dataset.discrete:
    raise ValueError("config.online.steps > 0 needs a continuous-action dataset.")
  if getattr(dataset, "env_spec", None) is None and dataset.env_id is None:
    raise DatasetError(
        f"config.online.steps={online_steps(config)} but {dataset.dataset_id} records no "
        "environment to fine-tune in: store 'env_id' in the .npz file, pass env_id to "
        "OfflineDataset.from_arrays, or set config.env_id; or train offline (online.steps=0).")
  evaluation.check_eval_env(dataset)  # builds it and compares its spaces with the data's.
  if layout is not None:
    raise ValueError(f"online fine-tuning runs its members on one device; this run's layout "
                     f"{layout} spreads them. Pass --config.layout=single.")


def training_data(config, dataset: OfflineDataset):
  """The dataset on the device for `config`'s agent: Transition, or for Cal-QL (cql.calibrated)
  a ReturnTransition with each transition's return-to-go under the agent's γ (data.returns,
  config.data.sparse_failure_reward for sparse-reward tasks)."""
  if dataset.discrete or not calibrated(config):
    return agents.device_data(dataset)
  scaled = buffer_lib.scale_actions(dataset.transitions, dataset.action_low, dataset.action_high)
  with_returns = returns.with_return_to_go(scaled, float(config.agent.gamma),
                                           config.data.get("sparse_failure_reward"))
  return buffer_lib.to_device(with_returns)


def prepare_resume(workdir) -> Optional[int]:
  """Before a resume: the gradient step of the latest online checkpoint under `workdir`, or None.

  Also drops the metrics.jsonl rows that the interrupted online phase wrote after that
  checkpoint's environment step (all of its rows when it has none, as it then restarts from
  step 0): gradient steps stand still during random steps, so the runner's truncation by
  gradient step alone would keep them.
  """
  directory = pathlib.Path(workdir) / CHECKPOINT_DIR
  meta = None
  if directory.is_dir():
    ckpt = checkpoints.Checkpointer(directory, 1_000_000)
    try:
      meta = ckpt.read_meta()
    finally:
      ckpt.close()
  path = pathlib.Path(workdir) / writers.METRICS_FILE
  last = -1 if meta is None else int(meta["env_steps"])
  rows = writers.read_jsonl(path)
  kept = [r for r in rows if r.get("online/env_steps", -1) <= last]
  if len(kept) != len(rows):
    writers.atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
  return None if meta is None else int(meta["grad_step"])


# ---------------------------------------------------------------------------
# The compiled pieces.
# ---------------------------------------------------------------------------


def make_mixed_sample(batch_size: int, offline_fraction: float) -> Callable:
  """sample((data, buffer), key) -> batch [batch_size]: round(B·fraction) uniform offline
  transitions, the rest from the online buffer; while the buffer is empty its share comes from
  the offline data too (the host never learns from an empty buffer without offline data)."""
  n_off = int(round(batch_size * offline_fraction))
  n_on = batch_size - n_off

  def sample(data_and_buffer, key):
    data, buf = data_and_buffer
    off_key, on_key, fill_key = jax.random.split(key, 3)
    parts = []
    if n_off:
      parts.append(buffer_lib.sample_batch(data, off_key, n_off))
    if n_on:
      online = replay.sample(buf, on_key, n_on)
      if n_off:
        fallback = buffer_lib.sample_batch(data, fill_key, n_on)
        online = jax.tree.map(lambda a, b: jnp.where(buf.size > 0, a, b), online, fallback)
      parts.append(online)
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
  return sample


def make_round(agent, batch_size: int, offline_fraction: float, num_updates: int) -> Callable:
  """round(state, buffer, rows [K], count, data, key) -> (state, buffer, metrics [num_updates]):
  the first `count` staged rows into the buffer, then `num_updates` scanned updates."""
  updates = train.make_train_chunk(agent.update, make_mixed_sample(batch_size, offline_fraction),
                                   num_updates)

  def round_fn(state, buf, rows, count, data, key):
    buf = replay.insert_first(buf, rows, count)
    state, metrics = updates(state, (data, buf), key)
    return state, buf, metrics
  return round_fn


# ---------------------------------------------------------------------------
# The host side: episodes in flight, finished rows waiting for the buffer.
# ---------------------------------------------------------------------------


class _Episodes:
  """Per-member traces of the episode in flight and rows of finished episodes not yet inserted.

  Rows are lists of per-field arrays; `take(m, k)` pops up to k of member m's oldest rows.
  """

  def __init__(self, num_members: int, gamma: float, sparse_failure_reward, with_returns: bool):
    self.gamma, self.sparse, self.with_returns = gamma, sparse_failure_reward, with_returns
    self.traces = [self._new() for _ in range(num_members)]
    self.pending: List[List[np.ndarray]] = [[] for _ in range(num_members)]  # [T, row fields]

  @staticmethod
  def _new():
    return {"obs": [], "action": [], "reward": [], "terminated": [], "next_obs": []}

  def restart(self) -> None:
    self.traces = [self._new() for _ in self.traces]

  def add(self, m: int, obs, action, reward, terminated, next_obs) -> None:
    t = self.traces[m]
    t["obs"].append(obs), t["action"].append(action), t["reward"].append(float(reward))
    t["terminated"].append(bool(terminated)), t["next_obs"].append(next_obs)

  def finish(self, m: int) -> float:
    """Moves member m's finished episode to its pending rows; returns the episode's return."""
    t, self.traces[m] = self.traces[m], self._new()
    reward = np.asarray(t["reward"], np.float32)
    term = np.asarray(t["terminated"], bool)
    fields = [np.stack(t["obs"]).astype(np.float32), np.stack(t["action"]).astype(np.float32),
              reward, (~term).astype(np.float32), np.stack(t["next_obs"]).astype(np.float32)]
    if self.with_returns:
      fields.append(returns.episode_return_to_go(reward, term, self.gamma,
                                                 self.sparse).astype(np.float32))
    self.pending[m].append(fields)
    return float(np.sum(t["reward"]))

  def pending_count(self, m: int) -> int:
    return sum(len(f[2]) for f in self.pending[m])

  def take(self, m: int, k: int):
    """Up to k oldest pending rows of member m: (list of field arrays [n, ...], n)."""
    out, n = [], 0
    while self.pending[m] and n < k:
      fields = self.pending[m][0]
      size = len(fields[2])
      use = min(size, k - n)
      out.append([f[:use] for f in fields])
      if use == size:
        self.pending[m].pop(0)
      else:
        self.pending[m][0] = [f[use:] for f in fields]
      n += use
    return out, n


def _stage(episodes: _Episodes, template, staging: int):
  """Rows [M, K, ...] (zero-padded) and counts [M] of each member's next pending rows."""
  num = len(episodes.pending)
  rows = jax.tree.map(lambda x: np.zeros((num, staging, *x.shape), x.dtype), template)
  counts = np.zeros((num,), np.int32)
  fields = list(rows)
  for m in range(num):
    parts, n = episodes.take(m, staging)
    counts[m] = n
    at = 0
    for part in parts:
      size = len(part[2])
      for f, values in zip(fields, part):
        f[m, at:at + size] = values
      at += size
  return type(template)(*fields), counts


def _true_next_obs(info: dict, next_obs: np.ndarray, obs_keys) -> np.ndarray:
  """[M, O] next observations with the reset observation of a copy that finished replaced by
  its final one (AutoresetMode.SAME_STEP puts it in info["final_obs"], unflattened for dict
  observations, which the vector env's observation wrapper never sees)."""
  if "final_obs" not in info:
    return next_obs
  out = np.array(next_obs, np.float32, copy=True)
  for i in np.flatnonzero(np.asarray(info["_final_obs"], bool)):
    final = info["final_obs"][i]
    if isinstance(final, dict):
      final = observations.flatten_observations(
          jax.tree.map(lambda x: np.asarray(x)[None], final), obs_keys)[0]
    out[i] = np.asarray(final, np.float32).reshape(-1)
  return out


# ---------------------------------------------------------------------------
# The online phase.
# ---------------------------------------------------------------------------


def run(config, workdir, setup, state, loop_keys, *, seeds: Sequence[int], labels: Sequence[str],
        writer, history: list, resume: bool, check_finite: Callable) -> Any:
  """Fine-tunes the members [M] of `state` for config.online.steps environment steps each.

  setup: the runner's Setup (agent, device data, evaluate, dataset); loop_keys: [M] the
  members' loop keys (the online streams are fold_ins of them); writer/history: the runner's
  metric sink and evaluation list, appended to; check_finite(metrics [M, T], first_step,
  labels, last_checkpoint) raises on NaN/inf. Returns the final states [M].
  """
  o = config.online
  total, k = int(o.steps), int(o.steps_per_round)
  num = len(labels)
  dataset, agent, data = setup.dataset, setup.agent, setup.data
  gamma = float(config.agent.gamma)
  updates_per_round = int(round(float(o.utd) * k))
  staging = 2 * k  # drains finished episodes at twice the rate they arrive on average.
  capacity = int(o.buffer_capacity or total)
  if capacity < staging:
    raise ValueError(f"config.online.buffer_capacity={capacity} must hold at least "
                     f"2 x steps_per_round = {staging} transitions.")
  template = jax.tree.map(lambda x: np.zeros(x.shape[1:], x.dtype), jax.device_get(
      jax.tree.map(lambda x: x[:1], data)))
  with_returns = isinstance(template, ReturnTransition)
  sparse = config.data.get("sparse_failure_reward")
  low = np.asarray(dataset.action_low, np.float32)
  high = np.asarray(dataset.action_high, np.float32)

  buffers = jax.vmap(lambda _: replay.empty_like(template, capacity))(jnp.arange(num))
  round_fn = jax.jit(jax.vmap(make_round(agent, config.batch_size, float(o.offline_fraction),
                                         updates_per_round), in_axes=(0, 0, 0, 0, None, 0)),
                     donate_argnums=(0, 1))
  insert = jax.jit(jax.vmap(replay.insert_first), donate_argnums=0)
  act = jax.jit(jax.vmap(lambda s, obs, key: agent.act(s, obs[None], key, False)[0]))
  fold = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))
  act_keys, learn_keys = fold(loop_keys, _ACT), fold(loop_keys, _LEARN)

  ckpt = checkpoints.Checkpointer(pathlib.Path(workdir) / CHECKPOINT_DIR,
                                  config.keep_checkpoints)
  env_steps, grad_step, episodes_done = 0, int(config.num_steps), 0
  if resume and ckpt.latest_step() is not None:
    saved = int(ckpt.read_meta()["capacity"])
    if saved != capacity:
      raise ValueError(
          f"the online buffers of {workdir} hold {saved} transitions per member but this config "
          f"asks for {capacity} (online.buffer_capacity defaults to online.steps). Resume with "
          f"--config.online.buffer_capacity={saved}.")
    restored, meta = ckpt.restore({"state": state, "buffer": buffers})
    state, buffers = restored["state"], restored["buffer"]
    env_steps, grad_step = int(meta["env_steps"]), int(meta["grad_step"])
    episodes_done = int(meta["episodes"])
    _log.warning("resumed the online phase at environment step %d (gradient step %d); the "
                 "episodes in flight at that checkpoint are lost and every environment restarts "
                 "from a reset.", env_steps, grad_step)
  episodes = _Episodes(num, gamma, sparse, with_returns)
  last_return = np.full(num, np.nan)
  ref = (dataset.ref_min_score, dataset.ref_max_score)

  def save():
    nonlocal buffers
    while any(episodes.pending_count(m) for m in range(num)):
      rows, counts = _stage(episodes, template, staging)
      buffers = insert(buffers, rows, jnp.asarray(counts))
    writer.flush()
    ckpt.save(env_steps, {"state": state, "buffer": buffers},
              {"env_steps": env_steps, "grad_step": grad_step, "episodes": episodes_done,
               "capacity": capacity,
               "seeds": list(seeds)})

  def run_evaluation():
    t0 = time.time()
    result = setup.evaluate(state, config.eval_seed)
    writer.write(grad_step, "eval", {**result, "online/env_steps": env_steps,
                                     "seconds": time.time() - t0})
    history.append({"step": grad_step, "online/env_steps": env_steps,
                    **{n: v.tolist() for n, v in result.items()}})
    key = "eval/normalized_score" if "eval/normalized_score" in result else "eval/return"
    _log.info("online env step %d (gradient step %d): %s %s", env_steps, grad_step, key,
              np.round(result[key], 1).tolist())

  env = evaluation.make_eval_env(dataset, num, vector_kwargs={
      "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
  obs_keys = getattr(dataset, "obs_keys", None)
  try:
    # Step 0 is the offline policy's evaluation; a checkpoint whose evaluation never got written
    # (the save comes first) is evaluated on restore.
    if all(h.get("online/env_steps") != env_steps for h in history):
      run_evaluation()
    reset_seeds = [int(o.env_seed) + 1000 * int(s) + env_steps for s in seeds]
    obs, _ = env.reset(seed=reset_seeds)
    obs = np.asarray(obs, np.float32)
    sums: Dict[str, np.ndarray] = {}
    window_updates, window_t0, window_env = 0, time.time(), env_steps
    act_seconds = learn_seconds = act_cpu = learn_cpu = 0.0
    while env_steps < total:
      t0, c0 = time.time(), time.process_time()
      for _ in range(k):
        if env_steps < int(o.random_steps):
          rng = np.random.default_rng([int(o.env_seed), env_steps])
          action = rng.uniform(low, high, size=(num, low.shape[0])).astype(np.float32)
        else:
          action = np.asarray(act(state, obs, fold(act_keys, env_steps)))
        next_obs, reward, terminated, truncated, info = env.step(action)
        next_obs = np.asarray(next_obs, np.float32)
        final = _true_next_obs(info, next_obs, obs_keys)
        unit = np.clip(2.0 * (action - low) / (high - low) - 1.0, -1.0, 1.0)
        for m in range(num):
          episodes.add(m, obs[m], unit[m], reward[m], terminated[m], final[m])
          if terminated[m] or truncated[m]:
            last_return[m] = episodes.finish(m)
            episodes_done += 1
        obs = next_obs
        env_steps += 1
      act_seconds += time.time() - t0
      act_cpu += time.process_time() - c0
      t0, c0 = time.time(), time.process_time()
      rows, counts = _stage(episodes, template, staging)
      learning = env_steps > int(o.random_steps) and (
          float(o.offline_fraction) > 0.0 or bool(np.all(np.asarray(buffers.size) + counts > 0)))
      if learning:
        key = fold(learn_keys, env_steps)
        state, buffers, metrics = round_fn(state, buffers, rows, jnp.asarray(counts), data, key)
        metrics = jax.device_get(metrics)  # name -> [M, U]
        check_finite(metrics, grad_step, labels, None)
        grad_step += updates_per_round
        window_updates += updates_per_round
        for name, values in metrics.items():
          sums[name] = sums.get(name, 0.0) + values.sum(axis=-1)
      else:
        buffers = insert(buffers, rows, jnp.asarray(counts))
      learn_seconds += time.time() - t0
      learn_cpu += time.process_time() - c0

      if env_steps % int(o.log_every) == 0 or env_steps == total:
        seconds = time.time() - window_t0
        row = {n: v / max(window_updates, 1) for n, v in sums.items()}
        row.update({"online/env_steps": env_steps, "online/episodes": episodes_done,
                    "online/buffer_size": np.asarray(buffers.size).astype(np.float64),
                    "online/env_steps_per_second": (env_steps - window_env) / max(seconds, 1e-9),
                    "online/updates_per_second": window_updates / max(learn_seconds, 1e-9),
                    "online/act_seconds": act_seconds, "online/learn_seconds": learn_seconds,
                    # CPU seconds of this process: on a shared machine, the cost itself.
                    "online/act_cpu_seconds": act_cpu, "online/learn_cpu_seconds": learn_cpu})
        if np.all(np.isfinite(last_return)):
          row["online/episode_return"] = last_return.copy()
          if None not in ref:
            row["online/episode_normalized_score"] = scores.normalized_score(last_return, *ref)
        writer.write(grad_step, "train", row)
        sums, window_updates, window_t0, window_env = {}, 0, time.time(), env_steps
        act_seconds = learn_seconds = act_cpu = learn_cpu = 0.0
      if env_steps % int(o.checkpoint_every) == 0 or env_steps == total:
        save()
      if env_steps % int(o.eval_every) == 0 or env_steps == total:
        run_evaluation()
  finally:
    env.close()
    ckpt.close()
  return state
