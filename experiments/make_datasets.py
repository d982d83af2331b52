"""Trains SAC (or DQN) online once per environment and writes D4RL-style Minari datasets from it.

  python -m experiments.make_datasets --env=hopper --workdir=runs/datasets-hopper \
      --total_steps=1000000 --max_minutes=45 [--num_transitions=200000] [--target_return=2500]
  python -m experiments.make_datasets --env=reacher --workdir=runs/datasets-reacher

For each of --env (a list of cql_jax.makers.mujoco_datasets.ENVS: the MuJoCo locomotion tasks
hopper, halfcheetah, walker2d, and the control tasks pendulum-sac, inverteddoublependulum,
reacher) it trains SAC (cql_jax.makers.online) with that environment's SETTINGS (unset flags),
keeping a policy snapshot at every evaluation and every finished training episode, then writes
cql_jax/<env>/{random,medium,expert,medium-replay,medium-expert}-v0 (cql_jax.makers.mujoco_datasets)
under $MINARI_DATASETS_PATH (default data/minari). It logs the evaluation curve, the step and
wall time at which --target_return was first reached (or that it was not), and writes
<workdir>/<env>/summary.json with the curve, timings and dataset statistics, and
<workdir>/<env>/snapshots.pkl with the actor parameters of every evaluation.

Discrete environments (cartpole-dqn, acrobot-dqn, lunarlander-dqn) train the online DQN
(cql_jax.makers.online_dqn) instead and write cql_jax/<env>/<kind>-v0 through
cql_jax.makers.discrete_datasets; --total_steps, --num_transitions and --target_return default
to that module's per-environment ENVS values, --max_minutes to 30, and the other flags to
online_dqn.default_config's (with ENVS' per-environment overrides), unless given:

  python -m experiments.make_datasets --env=cartpole-dqn,acrobot-dqn,lunarlander-dqn \
      --workdir=runs/datasets-discrete
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import json
import os
import pickle
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
ENV_NAMES = ("hopper", "halfcheetah", "walker2d", "pendulum-sac", "inverteddoublependulum",
             "reacher", "invertedpendulum")  # == mujoco_datasets.ENVS; here, --help needs no JAX.
DISCRETE_ENV_NAMES = ("cartpole-dqn", "acrobot-dqn", "lunarlander-dqn")  # discrete_datasets.ENVS
DISCRETE_MAX_MINUTES = 30.0  # DQN's wall-time cap when --max_minutes is unset.
flags.DEFINE_list("env", ["hopper"], f"Environments: {', '.join(ENV_NAMES)}; discrete: "
                  f"{', '.join(DISCRETE_ENV_NAMES)}.")
flags.DEFINE_string("workdir", None, "Where summaries and policy snapshots go.")
flags.DEFINE_integer("seed", 0, "Seed of SAC, the rollouts and the reference scores.")
# Unset: the environment's mujoco_datasets.SETTINGS.
flags.DEFINE_integer("total_steps", None, "SAC environment steps (upper bound).")
flags.DEFINE_float("max_minutes", None, "Wall-time budget of SAC training per environment.")
flags.DEFINE_integer("warmup_steps", None, "Uniform random steps before learning.")
flags.DEFINE_integer("steps_per_round", 100, "Env steps (and updates) per host round trip.")
flags.DEFINE_integer("eval_every", None, "Env steps between evaluations (and snapshots).")
flags.DEFINE_integer("num_transitions", None, "Transitions per rolled-out dataset (D4RL: 1M).")
flags.DEFINE_integer("ref_episodes", 50, "Episodes per reference policy for ref scores.")
flags.DEFINE_float("target_return", None, "Evaluation return the log reports reaching.")
flags.DEFINE_list("kinds", ["random", "medium", "expert", "medium-replay", "medium-expert"],
                  "Dataset kinds to write.")
flags.DEFINE_bool("plot_only", False, "Train nothing: draw <workdir>/learners.png, each --env's "
                  "evaluation curve from its summary.json, with the medium and expert levels.")
flags.mark_flags_as_required(["workdir"])


def log(message: str) -> None:
  print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def eval_recorder(env_id: str, target_return: float, params_key: str, params_of):
  """(snapshots, reached, on_eval): on_eval, the learner's evaluation hook, appends to
  `snapshots` each evaluation's step, seconds, mean return and `params_of(state)` (under
  `params_key`, on the host), and fills `reached` the first time `target_return` is met."""
  import jax
  snapshots, reached = [], {}

  def on_eval(step, state, info):
    snapshots.append({"step": step, "seconds": info["seconds"], "mean_return": info["mean_return"],
                      params_key: jax.device_get(params_of(state))})
    if not reached and info["mean_return"] >= target_return:
      reached.update(step=step, seconds=info["seconds"], mean_return=info["mean_return"])
      log(f"{env_id}: target {target_return} reached at step {step}, {info['seconds']:.0f}s")

  return snapshots, reached, on_eval


def training_summary(env_id: str, outdir: str, run, config, snapshots, reached,
                     target_return: float, params_key: str) -> dict:
  """Logs how training went, writes <outdir>/snapshots.pkl and returns summary.json's training
  part (the evaluations without their parameters)."""
  best = max(snapshots, key=lambda s: s["mean_return"])
  log(f"{env_id}: trained {run.env_steps} steps in {run.seconds:.0f}s "
      f"({run.env_steps / run.seconds:.0f} steps/s); best eval {best['mean_return']:.1f} at step "
      f"{best['step']}; target {target_return} "
      + (f"reached at step {reached['step']}" if reached else "NOT reached"))
  with open(os.path.join(outdir, "snapshots.pkl"), "wb") as f:
    pickle.dump(snapshots, f)
  return {
      "env_id": env_id, "seed": FLAGS.seed, "config": config.to_dict(),
      "train_steps": run.env_steps, "train_seconds": run.seconds,
      "target_return": target_return, "target_reached": reached or None,
      "evals": [{k: v for k, v in s.items() if k != params_key} for s in snapshots],
      "train_episode_returns": run.train_returns.tolist(),
      "train_episode_end_steps": run.train_end_steps.tolist(),
  }


def write_datasets(env_id: str, outdir: str, run, summary: dict, write) -> dict:
  """summary with the datasets `write()` made (its stats) and their wall time, written to
  <outdir>/summary.json."""
  start = time.perf_counter()
  summary["datasets"] = write()
  summary["dataset_seconds"] = time.perf_counter() - start
  summary["total_seconds"] = run.seconds + summary["dataset_seconds"]
  with open(os.path.join(outdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  log(f"{env_id}: datasets written in {summary['dataset_seconds']:.0f}s; total wall time "
      f"{summary['total_seconds']:.0f}s")
  return summary


def run_env(env_name: str) -> dict:
  from cql_jax.makers import online
  from cql_jax.makers import mujoco_datasets

  env_id = mujoco_datasets.ENVS[env_name]
  settings = mujoco_datasets.SETTINGS[env_name]._asdict()
  for name in settings:
    if name in FLAGS and getattr(FLAGS, name) is not None:
      settings[name] = getattr(FLAGS, name)
  target_return, max_minutes = settings["target_return"], settings["max_minutes"]
  outdir = os.path.join(FLAGS.workdir, env_name)
  os.makedirs(outdir, exist_ok=True)
  config = online.default_config()
  config.total_steps = settings["total_steps"]
  config.warmup_steps = settings["warmup_steps"]
  config.steps_per_round = FLAGS.steps_per_round
  config.eval_every = settings["eval_every"]
  config.actor_hidden_sizes = config.critic_hidden_sizes = (settings["hidden"],) * 2
  snapshots, reached, on_eval = eval_recorder(env_id, target_return, "actor_params",
                                              lambda state: state.actor_params)

  log(f"{env_id}: SAC for up to {config.total_steps} steps / {max_minutes} min\n{config}")
  run = online.train_online(env_id, config, seed=FLAGS.seed, max_seconds=60 * max_minutes,
                            record_episodes=True, on_eval=on_eval,
                            log=lambda m: log(f"{env_id}: {m}"))
  summary = training_summary(env_id, outdir, run, config, snapshots, reached, target_return,
                             "actor_params")
  with open(os.path.join(outdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  train_text = (f"Behaviour policies from one online SAC run (cql_jax.makers.online, seed {FLAGS.seed}, "
                f"{settings['hidden']}x{settings['hidden']} nets, UTD 1, {config.warmup_steps} random warm-up steps) of "
                f"{run.env_steps} env steps ({run.seconds:.0f} s on a shared 2-core CPU).")
  return write_datasets(env_id, outdir, run, summary, lambda: mujoco_datasets.write_all(
      env_name, run, snapshots, num_transitions=settings["num_transitions"],
      ref_episodes=FLAGS.ref_episodes, seed=FLAGS.seed, train_text=train_text,
      kinds=FLAGS.kinds, learning_from=config.warmup_steps, log=log))


def run_discrete_env(env_name: str) -> dict:
  """run_env for a Discrete-action environment: online DQN, Q-network snapshots."""
  from cql_jax.makers import discrete_datasets
  from cql_jax.makers import online_dqn

  spec = discrete_datasets.ENVS[env_name]
  given = lambda name: FLAGS[name].present
  env_id = spec.env_id
  outdir = os.path.join(FLAGS.workdir, env_name)
  os.makedirs(outdir, exist_ok=True)
  config = online_dqn.default_config()
  config.update(dict(spec.dqn))
  config.total_steps = FLAGS.total_steps if given("total_steps") else spec.total_steps
  for name in ("warmup_steps", "steps_per_round", "eval_every"):
    if given(name):
      config[name] = FLAGS[name].value
  target = FLAGS.target_return if given("target_return") else spec.target_return
  num_transitions = FLAGS.num_transitions if given("num_transitions") else spec.num_transitions
  snapshots, reached, on_eval = eval_recorder(env_id, target, "params",
                                              lambda state: state.params)

  max_minutes = FLAGS.max_minutes if given("max_minutes") else DISCRETE_MAX_MINUTES
  log(f"{env_id}: DQN for up to {config.total_steps} steps / {max_minutes} min\n{config}")
  run = online_dqn.train_online(env_id, config, seed=FLAGS.seed,
                                max_seconds=60 * max_minutes, record_episodes=True,
                                on_eval=on_eval, log=lambda m: log(f"{env_id}: {m}"))
  summary = training_summary(env_id, outdir, run, config, snapshots, reached, target, "params")
  dqn = "Double DQN" if config.double_dqn else "DQN"
  train_text = (f"Behaviour policies from one online {dqn} run (cql_jax.makers.online_dqn, seed "
                f"{FLAGS.seed}, {'x'.join(map(str, config.hidden_sizes))} MLP, Huber loss, hard "
                f"target sync every {config.target_update_period} gradient steps, "
                f"{config.num_envs} env copies, one gradient step per {config.update_every} env "
                f"steps, epsilon {config.epsilon_start} to {config.epsilon_end} over the first "
                f"{config.epsilon_fraction:.0%} of steps, {config.warmup_steps} random warm-up "
                f"steps) of {run.env_steps} env steps ({run.seconds:.0f} s on a shared 2-core "
                "CPU).")
  return write_datasets(env_id, outdir, run, summary, lambda: discrete_datasets.write_all(
      env_name, run, snapshots, num_transitions=num_transitions, ref_episodes=FLAGS.ref_episodes,
      seed=FLAGS.seed, train_text=train_text, kinds=FLAGS.kinds, log=log))


def plot_learners(env_names, workdir) -> str:
  """One panel per environment: the learner's evaluation return against environment steps,
  with the datasets' reference (random, expert) and behaviour (medium) returns."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(env_names), figsize=(4.2 * len(env_names), 3.2), squeeze=False)
  for ax, env_name in zip(axes[0], env_names):
    with open(os.path.join(workdir, env_name, "summary.json")) as f:
      summary = json.load(f)
    evals = summary["evals"]
    ax.plot([e["step"] for e in evals], [e["mean_return"] for e in evals], lw=1.5,
            label="evaluation (mean action)")
    datasets = summary.get("datasets", {})
    some = next(iter(datasets.values()), None)
    if some is not None:
      ax.axhline(some["ref_min_score"], color="gray", ls=":", label="random (ref min)")
      ax.axhline(some["ref_max_score"], color="green", ls=":", label="expert, sampled (ref max)")
    for ds_id, d in datasets.items():
      if ds_id.endswith("/medium-v0"):
        ax.axhline(d["mean_return"], color="orange", ls="--", label="medium data")
    ax.axvline(summary["config"]["warmup_steps"], color="k", lw=0.6, alpha=0.5)
    ax.set_title(f"{summary['env_id']} ({summary['train_seconds']:.0f} s SAC)", fontsize=9)
    ax.set_xlabel("environment steps", fontsize=8)
    ax.set_ylabel("return", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, frameon=False)
  fig.tight_layout()
  out = os.path.join(workdir, "learners.png")
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


def main(argv):
  del argv
  if FLAGS.plot_only:
    log(f"wrote {plot_learners(FLAGS.env, FLAGS.workdir)}")
    return
  names = ENV_NAMES + DISCRETE_ENV_NAMES
  unknown = [e for e in FLAGS.env if e not in names]
  if unknown:
    raise app.UsageError(f"--env: unknown {', '.join(unknown)}; choose from {', '.join(names)}.")
  for env_name in FLAGS.env:
    if env_name in DISCRETE_ENV_NAMES:
      run_discrete_env(env_name)
    else:
      run_env(env_name)


if __name__ == "__main__":
  sys.exit(app.run(main))
