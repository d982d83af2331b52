"""Offline-to-online fine-tuning: Cal-QL, CQL and SAC from scratch, through the one runner.

  PYTHONPATH=$PWD python -m experiments.online_finetune --env=pendulum \\
      --kinds=medium-replay,medium-expert --workdir=runs/finetune-pendulum
  PYTHONPATH=$PWD python -m experiments.online_finetune --env=pendulum --summarize_only \\
      --workdir=runs/finetune-pendulum --out=results/finetune-pendulum

Methods (each a config of experiments.train; cql_jax.finetune runs the online phase):
  calql  offline_steps of Cal-QL (cql.calibrated=True), then online_steps environment steps
  cql    the same without the calibration (CQL fine-tuning)
  sac    no offline steps and no offline share in the batches: SAC from scratch with the same
         networks, learning rates, batch, UTD and online budget, after random_steps of uniform
         actions (its runs sit under the first kind; its environment is the same for every kind)
The offline-only baseline (online.steps = 0) of the same budget is each fine-tuned run's
evaluation at environment step 0: the same state, taken before the first online step.

Run (kind, method) is <workdir>/<kind>/<method>/, a runner workdir; a rerun skips finished runs
and resumes stopped ones. The summary measures the paper's two claims per (kind, method) over
seeds: the drop right after fine-tuning starts (score at step 0 minus the lowest score in the
first --dip_window environment steps) and the environment steps until the score first reaches
--target; it writes summary.json, summary.md and curves.png under --out.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import json
import pathlib

from absl import app
from absl import flags
import numpy as np

# JAX-heavy modules (runner, configs) are imported where used, so --help is quick.
from cql_jax import logs
from cql_jax import writers

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The script's flags, defined only when it runs, so the module imports beside others."""
  flags.DEFINE_string("env", "pendulum", "pendulum, pointmaze (sparse reward; data made on "
                      "demand), or a MuJoCo env the project made data for "
                      "(hopper: cql_jax/hopper/<kind>-v0).")
  flags.DEFINE_list("kinds", ["medium-replay", "medium-expert"], "dataset kinds")
  flags.DEFINE_list("methods", ["calql", "cql", "sac"], "calql, cql, sac")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "seeds, vmapped in one program per run")
  flags.DEFINE_integer("hidden", 0, "0: the domain config's own networks; N: the short-budget "
                       "recipe (base.short_budget_agent_config) with two layers of N units, "
                       "what a CPU affords on MuJoCo data")
  flags.DEFINE_integer("offline_steps", 6000, "gradient steps before the online phase")
  flags.DEFINE_integer("online_steps", 6000, "environment steps per seed")
  flags.DEFINE_integer("random_steps", 1000, "uniform random actions first (sac only)")
  flags.DEFINE_integer("eval_every", 500, "environment steps between online evaluations")
  flags.DEFINE_integer("eval_episodes", 10, "episodes per seed in every evaluation")
  flags.DEFINE_integer("dip_window", 2000, "environment steps after the start to look for a drop")
  flags.DEFINE_float("target", 90.0, "normalized score whose first arrival is timed")
  flags.DEFINE_integer("until", None, "summarise every run up to this many environment steps "
                       "(runs of different online budgets compared over the same steps)")
  flags.DEFINE_string("workdir", "runs/finetune-pendulum", "where the runs live")
  flags.DEFINE_string("out", None, "summary directory (default: <workdir>/summary)")
  flags.DEFINE_bool("summarize_only", False, "only summarise the runs that exist")
  flags.DEFINE_string("peer_workdir", None, "also summarise d3rlpy's runs of the same schedule "
                      "(experiments.peer --like=<one of these runs> --workdir=<this>/<kind>)")
  flags.DEFINE_bool("library_logs", False, logs.FLAG_HELP)


LABELS = {"calql": "Cal-QL", "cql": "CQL", "sac": "SAC (scratch)"}
PEER_LABELS = {"cal_ql": "d3rlpy Cal-QL", "cql": "d3rlpy CQL"}  # experiments.peer's algorithms


def domain_config(env: str, kind: str, hidden: int = 0):
  from cql_jax.configs import base, classic, locomotion, pointmaze
  if env == "pendulum":
    c = classic.get_config(kind)
  elif env == "pointmaze":
    c = pointmaze.get_config(kind)
  else:
    c = locomotion.get_config(f"{locomotion.OWN_PREFIX}{env}-{kind}")
  if hidden:
    with c.unlocked():
      c.agent = base.short_budget_agent_config(hidden)
  return c


def run_config(env: str, kind: str, method: str):
  """The runner config of one (kind, method)."""
  from cql_jax.configs import base
  c = domain_config(env, kind, FLAGS.hidden)
  offline = FLAGS.offline_steps
  common = {
      "online.steps": FLAGS.online_steps, "online.eval_every": FLAGS.eval_every,
      "online.log_every": FLAGS.eval_every, "online.checkpoint_every": 2000,
      "eval_episodes": FLAGS.eval_episodes, "log.tensorboard": False, "selection.statistics": False,
  }
  if method in ("calql", "cql"):
    chunk = c.steps_per_chunk  # the runner's schedule is in whole compiled chunks
    third = max(chunk, offline // 3 // chunk * chunk)
    return base.override(c, {**common, "num_steps": offline, "eval_every": third,
                             "checkpoint_every": offline,
                             "agent.cql.calibrated": method == "calql"})
  if method == "sac":
    return base.override(c, {**common, "num_steps": 0, "agent.cql.weight": 0.0,
                             "online.offline_fraction": 0.0,
                             "online.random_steps": FLAGS.random_steps})
  raise ValueError(f"unknown method {method!r}; choose from {sorted(LABELS)}")


def run_dir(workdir, kind: str, method: str) -> pathlib.Path:
  return pathlib.Path(workdir) / kind / method


def train_all(seeds) -> None:
  from cql_jax import runner
  for kind in FLAGS.kinds:
    for method in FLAGS.methods:
      if method == "sac" and kind != FLAGS.kinds[0]:
        continue
      path = run_dir(FLAGS.workdir, kind, method)
      if (path / runner.RESULTS_FILE).exists():
        print(f"{kind}/{method}: finished, skipped")
        continue
      print(f"{kind}/{method}: training", flush=True)
      runner.train_and_evaluate(run_config(FLAGS.env, kind, method), path, seeds,
                                resume=path.exists(), progress=False)


def online_curve(workdir):
  """(env_steps [T], scores [T, S]) of the online evaluations (env step 0 = before any)."""
  rows = [r for r in writers.read_jsonl(pathlib.Path(workdir) / writers.METRICS_FILE)
          if r["kind"] == "eval" and "online/env_steps" in r]
  return (np.array([r["online/env_steps"] for r in rows]),
          np.array([r["eval/normalized_score"] for r in rows], np.float64))


def measure(steps, values, dip_window: int, target: float) -> dict:
  """Per-seed claims: start, drop in the first dip_window steps, final, steps to `target`."""
  start = values[0]
  early = values[(steps > 0) & (steps <= dip_window)]
  dip = start - early.min(axis=0)
  reach = []
  for s in range(values.shape[1]):
    hit = np.flatnonzero(values[:, s] >= target)
    reach.append(int(steps[hit[0]]) if hit.size else None)
  return {"start": start.tolist(), "drop": dip.tolist(), "lowest_early": early.min(0).tolist(),
          "final": values[-1].tolist(), "steps_to_target": reach}


def _pm(values) -> str:
  v = np.asarray(values, np.float64)
  return f"{v.mean():.1f} ± {v.std():.1f}"


def _reach(values) -> str:
  got = [v for v in values if v is not None]
  if not got:
    return f"never ({len(values)} seeds)"
  text = f"{np.median(got):.0f} (median of {len(got)})"
  return text if len(got) == len(values) else f"{text}; {len(values) - len(got)} never"


def summarize(out: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  out.mkdir(parents=True, exist_ok=True)
  summary, lines = {}, [
      f"| dataset | method | score at env step 0 | largest drop in the first {FLAGS.dip_window} "
      f"steps | final (last evaluation) | env steps to reach {FLAGS.target:g} |",
      "|---|---|---|---|---|---|"]
  fig, axes = plt.subplots(1, len(FLAGS.kinds), figsize=(5.5 * len(FLAGS.kinds), 4),
                           squeeze=False)
  for ax, kind in zip(axes[0], FLAGS.kinds):
    runs = [(m, LABELS[m], run_dir(FLAGS.workdir, FLAGS.kinds[0] if m == "sac" else kind, m), "-")
            for m in FLAGS.methods]
    if FLAGS.peer_workdir:
      runs += [(f"d3rlpy_{algo}", label, pathlib.Path(FLAGS.peer_workdir) / kind / algo, "--")
               for algo, label in PEER_LABELS.items()]
    for key, label, path, style in runs:
      if not (path / writers.METRICS_FILE).exists():
        continue
      steps, values = online_curve(path)
      if FLAGS.until is not None:
        steps, values = steps[steps <= FLAGS.until], values[steps <= FLAGS.until]
      if len(steps) < 2:
        continue
      m = measure(steps, values, FLAGS.dip_window, FLAGS.target)
      summary[f"{kind}/{key}"] = {"env_steps": steps.tolist(), "scores": values.tolist(), **m}
      lines.append(f"| {kind} | {label} | {_pm(m['start'])} | {_pm(m['drop'])} | "
                   f"{_pm(m['final'])} | {_reach(m['steps_to_target'])} |")
      mean, std = values.mean(1), values.std(1)
      ax.plot(steps, mean, style, label=label)
      ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.axhline(FLAGS.target, color="grey", lw=0.8, ls=":")
    ax.set_title(f"{FLAGS.env} {kind}")
    ax.set_xlabel("online environment steps (per seed)")
    ax.set_ylabel("normalized score (mean ± std over seeds)")
    ax.legend()
  fig.tight_layout()
  fig.savefig(out / "curves.png", dpi=110)
  (out / "summary.json").write_text(json.dumps(summary, indent=1))
  (out / "summary.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


def main(argv):
  del argv
  logs.quiet(FLAGS.library_logs)
  seeds = [int(s) for s in FLAGS.seeds]
  if not FLAGS.summarize_only:
    train_all(seeds)
  summarize(pathlib.Path(FLAGS.out or pathlib.Path(FLAGS.workdir) / "summary"))


if __name__ == "__main__":
  define_flags()
  app.run(main)
