"""Offline model selection: rank a run's checkpoints and a sweep's members without an environment.

Candidates are (member, checkpoint step) pairs of one run directory (a single run's seeds, or a
sweep's settings × seeds). Four estimators score them, each from what the run already made or a
configuration of the existing code path:

  workflow      Kumar et al. 2021 ("A Workflow for Offline Model-Free Robotic RL"): the trend of
                the average dataset Q-value over training (metrics.jsonl "offline" rows) says
                over-fitting when it rises and then falls by more than `drop` of its range (the
                checkpoint nearest the peak is kept), under-fitting when the relative TD error
                at the end exceeds `underfit` (sqrt(TD) in units of |Q| + RMS reward), fine
                otherwise (the last checkpoint). Across members, fine beats over-fitting beats
                under-fitting; ties go to the higher dataset Q. Its per-candidate score is the
                average dataset Q itself.
  critic        the trained critic's own estimate of E[V^π(s0)], Q(s0, π(s0)) averaged over the
                dataset's start states ("offline/v_initial"); free, but CQL's critic is built to
                under-estimate, more so for larger α.
  fqe           Fitted Q Evaluation: a fresh critic of each candidate's (frozen) policy trained on
                the dataset by the policy-evaluation mode with the penalty off, then its
                E[Q(s0, π(s0))]: an estimate of the discounted return E[V^π(s0)].
  conservative  the same with the penalty on (Eq. 2, μ = π, weight α), which the paper shows
                lower-bounds V^π in expectation: a pessimistic ranking.

`select_run` writes <workdir>/selection.json: per estimator every candidate's estimate, the
choice, and for the workflow each member's diagnosis with its reason. No environment is built.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cql_jax import agents
from cql_jax import checkpoints
from cql_jax import runner
from cql_jax import statistics
from cql_jax import sweep
from cql_jax import train
from cql_jax import writers
from cql_jax.configs import base
from cql_jax.data import buffer

ESTIMATORS = ("workflow", "critic", "fqe", "conservative")
SELECTION_FILE = "selection.json"
# No policy's discounted return leaves [min(0, r_min), max(0, r_max)] / (1 − γ) (0: an episode
# that terminates at once). A value estimate outside that range widened by this share of its width
# is a diverged critic (FQE bootstrapping through actions the data never shows): it is recorded
# but never chosen. The slack leaves room for a good estimate's own error near the edges (on the
# tabular test FQE was within 1% of the true value; on CartPole it read 120 for a return <= 100).
VALUE_RANGE_SLACK = 0.1


def value_range(rewards, gamma, slack: float = VALUE_RANGE_SLACK):
  """(low, high) that a valid estimate of E[V^π(s0)] lies in, for these (training) rewards.

  gamma: a float, or [C] discounts (one per candidate) for [C] bounds.
  """
  r = np.asarray(rewards, np.float64)
  low, high = min(0.0, float(r.min())) / (1.0 - gamma), max(0.0, float(r.max())) / (1.0 - gamma)
  width = high - low
  return low - slack * width, high + slack * width


def valid_estimates(values, bounds) -> np.ndarray:
  """[C] bool: finite and inside `bounds` (value_range)."""
  values = np.asarray(values, np.float64)
  return np.isfinite(values) & (values >= bounds[0]) & (values <= bounds[1])


class SelectionError(ValueError):
  """A run directory that cannot be selected from; the message says what is missing."""


# ---------------------------------------------------------------------------
# The workflow's rules, on one member's offline statistics.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Diagnosis:
  """kind: "overfitting", "underfitting" or "fine"; reason: one sentence with the numbers;
  peak_step: where the average dataset Q peaked."""
  kind: str
  reason: str
  peak_step: int


def diagnose(steps: Sequence[int], q_data: Sequence[float], relative_td: Sequence[float], *,
             drop: float = 0.25, underfit: float = 0.5) -> Diagnosis:
  """The workflow's reading of one member's average dataset Q and relative TD error over training.

  steps, q_data, relative_td: [T] per evaluation, in step order (T >= 1).
  Over-fitting: the Q peak lies strictly inside the curve and Q both rose to it and then fell
  from it by at least `drop` of the curve's range. A curve that only falls (a critic starting
  above the data's values, as with negative rewards) is travel, not over-fitting.
  """
  steps, q, td = (np.asarray(x, np.float64) for x in (steps, q_data, relative_td))
  if not len(q):
    raise SelectionError("no offline statistics recorded; train with config.selection.statistics")
  p = int(np.argmax(q))
  span = float(q.max() - q.min())
  rise, fall = float(q[p] - q[0]), float(q[p] - q[-1])
  peak = int(steps[p])
  if 0 < p < len(q) - 1 and span > 0 and rise >= drop * span and fall >= drop * span:
    return Diagnosis("overfitting", f"average dataset Q rose {rise:.3g} to its peak {q[p]:.3g} at "
                     f"step {peak}, then fell {fall:.3g} (>= {drop:g} of its range {span:.3g}) by "
                     f"step {int(steps[-1])}: keep the checkpoint nearest the peak.", peak)
  if td[-1] > underfit:
    return Diagnosis("underfitting", f"relative TD error {td[-1]:.3g} at step {int(steps[-1])} is "
                     f"above {underfit:g} (sqrt(TD) against |Q| + RMS reward): the critic does not "
                     "fit the data; try a larger critic or more steps.", peak)
  return Diagnosis("fine", f"no rise-then-fall of the average dataset Q (peak {q[p]:.3g} at step "
                   f"{peak}, last {q[-1]:.3g}) and relative TD error {td[-1]:.3g} <= {underfit:g}: "
                   "keep the last checkpoint.", peak)


def nearest(candidates: Sequence[int], step: int) -> int:
  """The candidate step closest to `step` (the later one on a tie)."""
  return min(candidates, key=lambda c: (abs(c - step), -c))


# ---------------------------------------------------------------------------
# Policy-evaluation estimates (FQE and the conservative estimate).
# ---------------------------------------------------------------------------


def evaluation_agent_config(agent_config: ml_collections.ConfigDict, penalty: bool,
                            deterministic: bool = True, cql_weight: Optional[float] = None,
                            overrides: Optional[Dict[str, Any]] = None
                            ) -> ml_collections.ConfigDict:
  """The policy-evaluation agent for a run's agent config: FQE (penalty off) or the conservative
  estimate (penalty on, α = cql_weight or the run's own), valuing the policy evaluation runs.

  overrides: agent-config keys for the evaluation critic only, e.g. {"polyak": 0.02} or
  {"target_update_period": 100}: FQE needs about as many Bellman iterations as the horizon
  1/(1 − γ), and a training recipe's slow target may give it too few within its budget.
  """
  if agents.is_discrete_config(agent_config):
    from cql_jax.discrete import variants
    config = variants.policy_evaluation_config(agent_config, penalty=penalty)
  else:
    from cql_jax.continuous import variants
    config = variants.policy_evaluation_config(
        agent_config, penalty=penalty, evaluated_action="mode" if deterministic else "sample")
  if overrides:
    try:
      config = base.override(config, overrides)
    except (KeyError, TypeError) as e:
      raise SelectionError(f"evaluation-critic settings {dict(overrides)}: {e}") from None
  if penalty and cql_weight is not None:
    config.cql.weight = float(cql_weight)
  if penalty and float(config.cql.weight) == 0.0:
    raise SelectionError("the conservative estimate needs a CQL weight > 0 (this run trained "
                         "with 0); pass cql_weight.")
  return config


def policy_values(agent_config, dataset, policies, *, penalty: bool, num_steps: int,
                  batch_size: int = 256, steps_per_chunk: int = 1000, seed: int = 0,
                  deterministic: bool = True, cql_weight: Optional[float] = None,
                  overrides: Optional[Dict[str, Any]] = None,
                  hparams: Optional[Dict[str, Sequence[float]]] = None,
                  measure_on=None) -> Dict[str, np.ndarray]:
  """Trains one policy-evaluation critic per policy, all in one vmapped program, on `dataset`.

  policies: [P]-stacked policy parameters (continuous: actor params; discrete: Q-network params,
    whose greedy policy is valued), of agent_config's architecture.
  hparams: {sweepable agent key: [P] values}, each critic's own, e.g. {"gamma": [P]} so each
    policy is valued under the discount its member trained with; default: the config's.
  measure_on: transitions (environment units) the final statistics are measured on, e.g. held-out
    episodes; default: the training transitions.
  Returns {"v_initial": [P] mean over the start states of Q(s0, π(s0)), "td_error": [P] the final
  squared Bellman error on a fixed sample, "q_data": [P]}.
  """
  if num_steps % steps_per_chunk:
    raise SelectionError(f"num_steps={num_steps} must be a multiple of {steps_per_chunk}.")
  config = evaluation_agent_config(agent_config, penalty, deterministic, cql_weight, overrides)
  agent = agents.make_agent(config, dataset)
  num = int(jax.tree.leaves(policies)[0].shape[0])
  init_keys, loop_keys = train.seed_keys(range(seed, seed + num))
  if hparams is None:
    state = train.init_states(agent, init_keys, num)
  else:
    unknown = sorted(set(hparams) - set(agent.sweepable))
    if unknown:
      raise SelectionError(f"evaluation critics cannot take {unknown} per policy; they take "
                           f"{list(agent.sweepable)}.")
    values = {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in hparams.items()}
    state = jax.tree.map(jnp.copy, jax.vmap(agent.init)(init_keys, values))
  if agents.is_discrete_config(config):
    from cql_jax.discrete import variants
  else:
    from cql_jax.continuous import variants
  try:
    state = jax.vmap(variants.policy_evaluation_state)(state, policies)
  except ValueError as e:
    raise SelectionError(f"the policies do not fit the evaluation agent: {e}") from None
  data = agents.device_data(dataset)
  chunk = train.compile_chunk(agent, batch_size, steps_per_chunk, num)
  for i in range(num_steps // steps_per_chunk):
    state, _ = chunk(state, data, train.chunk_keys(loop_keys, i))
  if measure_on is None:
    sample = statistics.fixed_slice(jax.device_get(data), 4096, seed)
  else:
    sample = statistics.fixed_slice(measure_on, 4096, seed)
    if not dataset.discrete:
      sample = buffer.scale_actions(sample, dataset.action_low, dataset.action_high)
  stats = statistics.make_statistics(agent, sample, dataset.initial_obs,
                                     deterministic=deterministic, seed=seed)(state)
  return {"v_initial": stats["offline/v_initial"], "td_error": stats["offline/td_error"],
          "q_data": stats["offline/q_data"]}


# ---------------------------------------------------------------------------
# A run directory.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
  """What select_run reads of a run directory."""
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  plan: sweep.Plan
  members: List[str]                 # member names, in the state's order.
  records: List[dict]                # metrics.jsonl.
  checkpoint_steps: List[int]


def _config_from_json(saved: dict) -> ml_collections.ConfigDict:
  def tuples(x):
    if isinstance(x, dict):
      return {k: tuples(v) for k, v in x.items()}
    return tuple(x) if isinstance(x, list) else x
  return ml_collections.ConfigDict(tuples(saved))


def load_run(workdir) -> Run:
  """Reads config.json, metrics.jsonl and the checkpoint list of a finished or running run."""
  workdir = pathlib.Path(workdir)
  path = workdir / runner.CONFIG_FILE
  if not path.exists():
    raise SelectionError(f"{workdir} holds no run ({runner.CONFIG_FILE} is missing); pass the "
                         "--workdir of a training run or sweep.")
  saved = json.loads(path.read_text())
  config = _config_from_json(saved["config"])
  grid = None
  if saved.get("sweep"):
    grid = sweep.Grid.from_dict(saved["sweep"].get("grid"), saved["sweep"].get("zip"))
  plan = sweep.plan(config, grid, saved["seeds"])
  names = [m.name for m in plan.members] if grid is not None else [
      f"seed_{s}" for s in saved["seeds"]]
  records = writers.read_jsonl(workdir / writers.METRICS_FILE)
  ckpt = checkpoints.Checkpointer(workdir / "checkpoints", 1_000_000)
  try:
    steps = ckpt.all_steps()
  finally:
    ckpt.close()
  if not steps:
    raise SelectionError(f"{workdir} has no checkpoints to choose from; train with "
                         "config.checkpoint_every = config.eval_every and keep_checkpoints large "
                         "enough to keep every one you want ranked.")
  return Run(workdir, config, plan, names, records, steps)


def offline_series(run: Run) -> Dict[str, np.ndarray]:
  """{"step": [T], name: [T, M]} of the run's "offline" rows (the latest row per step)."""
  rows = {r["step"]: r for r in run.records if r["kind"] == "offline"}
  if not rows:
    raise SelectionError(f"{run.workdir} recorded no offline statistics (metrics.jsonl has no "
                         "'offline' rows): it was trained with config.selection.statistics=False "
                         "or by a version without them.")
  steps = sorted(rows)
  names = sorted({n for r in rows.values() for n in r if n.startswith("offline/")})
  return {"step": np.asarray(steps), **{n: np.asarray([rows[s][n] for s in steps], np.float64)
                                        for n in names}}


def restore_states(run: Run, agent, steps: Sequence[int]) -> list:
  """The run's [M]-stacked member train states at each of `steps` (offline checkpoints), in order.

  agent: the run's agent (agents.make_agent of its config and data), which gives the states'
  structure and shapes.
  """
  state, _ = sweep.init_members(agent, run.plan)
  ckpt = checkpoints.Checkpointer(run.workdir / "checkpoints", 1_000_000)
  try:
    return [ckpt.restore(state, step)[0] for step in steps]
  finally:
    ckpt.close()


def restore_policies(run: Run, agent, steps: Sequence[int]):
  """[len(steps) * M]-stacked policy parameters (checkpoint-major) of the run's members."""
  field = "params" if agents.is_discrete_config(run.config.agent) else "actor_params"
  parts = [getattr(state, field) for state in restore_states(run, agent, steps)]
  return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *parts)


def member_gammas(config: ml_collections.ConfigDict, plan: sweep.Plan) -> np.ndarray:
  """[M] discount of each member: its own in a sweep over agent.gamma, else the config's."""
  key = sweep.AGENT_PREFIX + "gamma"
  return np.asarray([float(m.setting.get(key, config.agent.gamma)) for m in plan.members])


# What the critics' estimates depend on; a selection.json made otherwise is not reused.
_CRITIC_SETTINGS = ("fqe_steps", "cql_weight", "seed", "fqe_overrides", "critic_data")
# Recorded with the estimates: the critics train on the run's own training episodes, each with
# its member's γ, and measure their statistics on the held-out ones.
_CRITIC_DATA = "training split, member's gamma"


def _reusable(workdir: pathlib.Path, out: dict) -> Dict[str, Dict[str, np.ndarray]]:
  """{estimator: values} of a previous selection.json trained for the same candidates with the
  same evaluation-critic settings (so thresholds can change without retraining critics)."""
  path = workdir / SELECTION_FILE
  if not path.exists():
    return {}
  old = json.loads(path.read_text())
  same = old.get("candidates") == out["candidates"] and all(
      old.get("settings", {}).get(k) == out["settings"][k] for k in _CRITIC_SETTINGS)
  if not same:
    return {}
  return {name: {"v_initial": np.asarray(old["estimates"][name], np.float64),
                 **{k: np.asarray(v) for k, v in old.get("evidence", {}).get(name, {}).items()}}
          for name in ("fqe", "conservative") if name in old.get("estimates", {})}


def _choice(estimates: np.ndarray, candidates: List[dict], valid: np.ndarray) -> dict:
  if not valid.any():
    raise SelectionError("every estimate left the range the rewards allow (all critics "
                         "diverged); lower the evaluation critic's learning rate or its target "
                         "speed (fqe_overrides) and select again.")
  best = int(np.argmax(np.where(valid, estimates, -np.inf)))
  return {**candidates[best], "estimate": float(estimates[best])}


def select_run(workdir, estimators: Sequence[str] = ESTIMATORS, *, fqe_steps: int = 10_000,
               drop: float = 0.25, underfit: float = 0.5, cql_weight: Optional[float] = None,
               fqe_overrides: Optional[Dict[str, Any]] = None, seed: int = 0,
               reuse: bool = False, write: bool = True, log=print) -> Dict[str, Any]:
  """Ranks every (member, checkpoint) of `workdir` with each estimator; writes selection.json.

  estimators: a subset of ESTIMATORS. fqe_steps: gradient steps of each FQE / conservative
  critic. drop, underfit: the workflow's thresholds (see `diagnose`). cql_weight: α of the
  conservative estimate (default: the run's own). fqe_overrides: agent-config keys of the
  evaluation critics (see evaluation_agent_config). reuse: take the FQE / conservative estimates
  of an existing selection.json made for the same candidates and critic settings (to change the
  thresholds without retraining critics). Returns what selection.json holds:
  {"candidates": [{"member", "step"}...], "estimates": {estimator: [C]}, "valid": {estimator:
  [C] bool, False for an FQE estimate outside value_range, or a conservative one above it},
  "choice":
  {estimator: {"member", "step", "estimate"}}, "diagnosis": {member: {...}}, "settings": {...}}.
  """
  unknown = sorted(set(estimators) - set(ESTIMATORS))
  if unknown:
    raise SelectionError(f"unknown estimator(s) {unknown}; choose from {ESTIMATORS}.")
  run = load_run(workdir)
  series = offline_series(run) if {"workflow", "critic"} & set(estimators) else None
  steps = run.checkpoint_steps
  members = run.members
  candidates = [{"member": m, "step": s} for s in steps for m in members]
  out: Dict[str, Any] = {"workdir": str(run.workdir), "candidates": candidates, "estimates": {},
                         "choice": {}, "evidence": {},
                         "settings": {"fqe_steps": fqe_steps, "drop": drop, "underfit": underfit,
                                      "cql_weight": cql_weight, "seed": seed,
                                      "fqe_overrides": dict(fqe_overrides or {}),
                                      "critic_data": _CRITIC_DATA}}

  def at_checkpoints(name):
    """[C] values of an offline statistic at each candidate's step (nearest recorded step)."""
    rec = series["step"].tolist()
    return np.asarray([series[name][rec.index(nearest(rec, s)), i]
                       for s in steps for i in range(len(members))])

  if series is not None:
    rec_steps = series["step"]
    missing = [s for s in steps if s not in set(rec_steps.tolist())]
    if missing:
      log(f"checkpoints {missing} have no offline statistics at their own step; the nearest "
          "recorded step stands in (set checkpoint_every = eval_every to avoid this).")
  if "critic" in estimators:
    if "offline/v_initial" not in series:
      raise SelectionError("the run recorded no critic value at the start states (a BC run has "
                           "no critic); use the fqe estimator.")
    out["estimates"]["critic"] = at_checkpoints("offline/v_initial").tolist()
  if "workflow" in estimators:
    if "offline/q_data" not in series:
      raise SelectionError("the run recorded no dataset Q (a BC run has no critic); use fqe.")
    diagnoses, chosen = {}, []
    for i, member in enumerate(members):
      d = diagnose(series["step"], series["offline/q_data"][:, i],
                   series["offline/relative_td"][:, i], drop=drop, underfit=underfit)
      step = nearest(steps, d.peak_step) if d.kind == "overfitting" else steps[-1]
      diagnoses[member] = {**dataclasses.asdict(d), "checkpoint": step}
      chosen.append((("fine", "overfitting", "underfitting").index(d.kind), member, step))
    q = at_checkpoints("offline/q_data")
    out["estimates"]["workflow"] = q.tolist()
    q_of = {(c["member"], c["step"]): v for c, v in zip(candidates, q)}
    rank, member, step = min(chosen, key=lambda c: (c[0], -q_of[(c[1], c[2])]))
    out["choice"]["workflow"] = {"member": member, "step": step, "estimate": q_of[(member, step)],
                                 "diagnosis": diagnoses[member]["kind"]}
    out["diagnosis"] = diagnoses
    for m, d in diagnoses.items():
      log(f"{m}: {d['kind']} - {d['reason']}")
  dataset = None
  if {"critic", "fqe", "conservative"} & set(estimators):
    # The run's own split: the critics learn from the episodes the run trained on, and measure
    # their statistics on the held-out ones (as the run's "offline" rows were).
    dataset, held_out = runner.training_split(run.config,
                                              runner.load_data(run.config, check_env=False))
    gammas = np.tile(member_gammas(run.config, run.plan), len(steps))   # [C], checkpoint-major
    bounds = value_range(dataset.transitions.reward, gammas)
    out["value_range"] = [float(np.min(bounds[0])), float(np.max(bounds[1]))]
  # A conservative estimate (CQL's own critic, Eq. 2) may lie far below every return by design;
  # only one above the highest possible value is broken. FQE must lie inside on both sides.
  valid = lambda values, lower=True: valid_estimates(
      values, bounds if lower else (-np.inf, bounds[1]))
  if "critic" in estimators:
    values = np.asarray(out["estimates"]["critic"])
    out["valid"] = {"critic": valid(values, lower=False).tolist()}
    out["choice"]["critic"] = _choice(values, candidates, valid(values, lower=False))
  wanted = [e for e in ("fqe", "conservative") if e in estimators]
  previous = _reusable(run.workdir, out) if reuse else {}
  todo = [e for e in wanted if e not in previous]
  if todo:
    agent = agents.make_agent(run.plan.program_config(run.config).agent, dataset)
    policies = restore_policies(run, agent, steps)
  for name in wanted:
    if name in previous:
      log(f"{name}: reusing the estimates of {SELECTION_FILE} (same candidates and settings)")
      values = previous[name]
    else:
      log(f"{name}: {len(candidates)} policy-evaluation critics x {fqe_steps} steps")
      values = policy_values(run.config.agent, dataset, policies, penalty=name == "conservative",
                             num_steps=fqe_steps, batch_size=int(run.config.batch_size),
                             steps_per_chunk=min(1000, fqe_steps), seed=seed,
                             deterministic=bool(run.config.eval_deterministic),
                             cql_weight=cql_weight, overrides=fqe_overrides,
                             hparams={"gamma": gammas} if len(set(gammas)) > 1 else None,
                             measure_on=held_out if len(held_out.reward) else None)
    out["estimates"][name] = values["v_initial"].tolist()
    out["evidence"][name] = {"td_error": values["td_error"].tolist(),
                             "q_data": values["q_data"].tolist()}
    ok = valid(values["v_initial"], lower=name == "fqe")
    out.setdefault("valid", {})[name] = ok.tolist()
    if not ok.all():
      low, high = out["value_range"]
      log(f"{name}: {int((~ok).sum())} of {len(ok)} estimates outside "
          f"[{low if name == 'fqe' else -np.inf:.4g}, {high:.4g}], the values the "
          "rewards allow (diverged critics); never chosen")
    out["choice"][name] = _choice(values["v_initial"], candidates, ok)
  for name, choice in out["choice"].items():
    log(f"{name}: choose {choice['member']} at step {choice['step']} "
        f"(estimate {choice['estimate']:.4g})")
  if write:
    writers.atomic_write_json(run.workdir / SELECTION_FILE, out)
  return out
