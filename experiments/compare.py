"""CQL(H) against behaviour cloning, offline SAC and other variants on the project's datasets.

  --env=pendulum                      cql_jax/pendulum/<kind>-v0 (made on first use)
  --env=hopper|halfcheetah|walker2d   cql_jax/<env>/<kind>-v0, made by experiments/make_datasets.py
                                      with the project's online SAC
  --env=pendulum-sac|reacher|inverteddoublependulum   the same for the control tasks
                                      (cql_jax/configs/control.py; its DEV and TEST split)

Every method is a configuration of the one CQL agent (cql_jax.continuous.variants) on
base.short_budget_agent_config, trained through cql_jax.runner with the seeds vmapped in one
program. Run (kind, method) lives in <workdir>/<kind>/<method>/ like any `experiments.train` run
(config.json, metrics.jsonl, TensorBoard events, checkpoints, results.json), so
`experiments.plot` draws its curves. Scores are the final evaluation's D4RL-normalised scores
(0 = the dataset's ref_min_score, 100 = its ref_max_score).

A rerun skips finished runs, resumes a stopped one from its last checkpoint, trains finished runs
on when --num_steps grows, and refuses runs made with other settings (choose another --workdir).
The RESULTS.md section's setup sentences are generated from the runs' own config.json.

  PYTHONPATH=$PWD python -m experiments.compare --env=pendulum --num_steps=8000 --num_seeds=2 \\
      --write_results
  PYTHONPATH=$PWD python -m experiments.compare --env=halfcheetah --num_steps=10000 \\
      --num_seeds=3 --workdir=runs/compare-halfcheetah --write_results
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import json
import pathlib
from typing import Callable, Dict, Sequence

import numpy as np

# JAX-heavy modules (runner, configs, variants) are imported where used, so --help is quick.
from cql_jax import scores as scoring
from cql_jax.makers import mujoco_datasets
from cql_jax.makers import pendulum
from experiments import budget as budget_lib
from experiments import results_md

ENVS = ("pendulum", *mujoco_datasets.ENVS)
DEFAULT_METHODS = {"pendulum": ("cql_h", "cql_rho", "bc", "sac")}
LABELS = {"cql_h": "CQL(H)", "cql_rho": "CQL(ρ)", "cql_nonis": "CQL non-IS", "cql_eq1": "CQL (Eq. 1)",
          "bc": "BC", "sac": "offline SAC"}


def label(method: str) -> str:
  if method.startswith("ensemble_"):
    return f"Ensemble({method.split('_')[1]})"
  return LABELS.get(method, method)


def heading(env: str) -> str:
  from cql_jax.configs import control
  if env == "pendulum":
    return "## Variant comparison on Pendulum"
  if env in control.ENVS:
    split = "dev" if env in control.DEV else "test"
    return f"## The continuous family, {split} split: {mujoco_datasets.ENVS[env]}"
  return f"## CQL(H), BC and offline SAC on the project's {mujoco_datasets.ENVS[env]} datasets"


def kinds_of(env: str) -> tuple:
  return pendulum.KINDS if env == "pendulum" else mujoco_datasets.KINDS


def domain_config(env: str, kind: str):
  """The runner config of the dataset (before the method and budget are applied)."""
  from cql_jax.configs import classic, control, locomotion
  if env == "pendulum":
    return classic.get_config(kind)
  if env in control.ENVS:
    return control.get_config(f"{env}-{kind}")
  return locomotion.get_config(f"{locomotion.OWN_PREFIX}{env}-{kind}")


def run_config(env: str, kind: str, method: str, budget: budget_lib.Budget):
  from cql_jax.continuous import variants
  agent = variants.variant_config(method, budget_lib.agent_config(budget))
  return budget_lib.run_config(domain_config(env, kind), agent, budget)


def run_dir(workdir, kind: str, method: str) -> pathlib.Path:
  return pathlib.Path(workdir) / kind / method


def run_one(config, workdir, seeds) -> dict:
  """Trains (or resumes) one run through the runner; returns its results.json contents."""
  return budget_lib.train(config, workdir, seeds).results


def record(results: dict, config) -> dict:
  """What the table needs from one run's results.json, and the run's own config."""
  final = results["final"]
  return {"scores": final.get("eval/normalized_score", []), "returns": final["eval/return"],
          "seconds": results.get("train_seconds", 0.0) + results.get("eval_seconds", 0.0),
          "config": json.loads(config.to_json_best_effort())}


def behaviour_score(config) -> float:
  """Mean normalized return of the dataset's own episodes."""
  from cql_jax import runner
  dataset = runner.load_data(config)
  return float(np.mean(scoring.normalized_score(dataset.episode_returns, dataset.ref_min_score,
                                                dataset.ref_max_score)))


def run(env: str, kinds: Sequence[str], methods: Sequence[str], budget: budget_lib.Budget,
        workdir, log: Callable = print):
  """Trains every (kind, method) not yet done; returns ({(kind, method): record}, {kind: score})."""
  records, behaviour = {}, {}
  for kind in kinds:
    for method in methods:
      config = run_config(env, kind, method, budget)
      path = run_dir(workdir, kind, method)
      results = budget_lib.finished_results(path, config, budget.seeds)
      if results is None:
        results = run_one(config, path, budget.seeds)
      records[(kind, method)] = r = record(results, config)
      s = np.asarray(r["scores"])
      log(f"{kind:14s} {label(method):12s} {s.mean():6.1f} ± {s.std():5.1f}  "
          f"({r['seconds']:.0f} s)")
    behaviour[kind] = behaviour_score(config)
  return records, behaviour


def table(kinds, methods, records, behaviour) -> str:
  rows = ["| dataset | behaviour | " + " | ".join(label(m) for m in methods) + " |",
          "|---|---:|" + "---:|" * len(methods)]
  for kind in kinds:
    cells = []
    for m in methods:
      s = np.asarray(records[(kind, m)]["scores"])
      cells.append(f"{s.mean():.1f} ± {s.std():.1f}")
    rows.append(f"| {kind} | {behaviour[kind]:.1f} | " + " | ".join(cells) + " |")
  return "\n".join(rows)


def command(env: str, kinds, methods, budget: budget_lib.Budget, workdir) -> str:
  flags = [f"--env={env}", f"--datasets={','.join(kinds)}", f"--methods={','.join(methods)}",
           f"--num_steps={budget.num_steps}", f"--num_seeds={budget.num_seeds}",
           f"--seed={budget.seed}", f"--hidden={budget.hidden}",
           f"--eval_episodes={budget.eval_episodes}", f"--workdir={workdir}"]
  if budget.eval_every:
    flags.append(f"--eval_every={budget.eval_every}")
  for name, default in (("steps_per_chunk", 1000), ("batch_size", 256), ("cql_weight", 5.0),
                        ("actor_lr", 3e-4)):
    if getattr(budget, name) != default:
      flags.append(f"--{name}={getattr(budget, name)}")
  flags.append("--write_results")
  lines = [" ".join(flags[i:i + 4]) for i in range(0, len(flags), 4)]
  return ("    PYTHONPATH=$PWD MINARI_DATASETS_PATH=$PWD/data/minari python -m experiments.compare \\\n"
          + " \\\n".join(f"      {line}" for line in lines))


def results_body(env: str, kinds, methods, records, behaviour, budget: budget_lib.Budget,
                 workdir) -> str:
  seconds = sum(records[(k, m)]["seconds"] for k in kinds for m in methods)
  # One config per method (the datasets share everything but the data).
  runs = {label(m): records[(kinds[0], m)]["config"] for m in methods}
  plot_runs = " ".join(f"--runs='{label(m)}={workdir}/*/{m}'" for m in methods)
  return f"""Command ({seconds / 60:.0f} min of training and evaluation):

{command(env, kinds, methods, budget, workdir)}

{results_md.describe_setup(runs, budget.seeds)}

Entries: D4RL-normalised score (0 = the dataset's ref_min_score, 100 = its ref_max_score) of the
final policy, mean ± std over seeds; "behaviour" is the dataset's own mean score. Curves:
`python -m experiments.plot {plot_runs} --out=<dir>`.

{table(kinds, methods, records, behaviour)}
"""


def main(argv):
  del argv
  from absl import flags
  from cql_jax import logs
  FLAGS = flags.FLAGS
  logs.quiet(FLAGS.library_logs)
  budget = budget_lib.from_flags(FLAGS)
  kinds = list(FLAGS.datasets or kinds_of(FLAGS.env))
  methods = list(FLAGS.methods or DEFAULT_METHODS.get(FLAGS.env, ("cql_h", "bc", "sac")))
  workdir = FLAGS.workdir or f"runs/compare-{FLAGS.env}"
  records, behaviour = run(FLAGS.env, kinds, methods, budget, workdir)
  print(table(kinds, methods, records, behaviour))
  if FLAGS.write_results:
    results_md.write_section(FLAGS.results, heading(FLAGS.env), results_body(
        FLAGS.env, kinds, methods, records, behaviour, budget, workdir))


def define_flags() -> None:
  from absl import flags
  flags.DEFINE_enum("env", "pendulum", ENVS, "Which of the project's dataset families.")
  flags.DEFINE_list("datasets", None, "Dataset kinds (default: all five of the family).")
  flags.DEFINE_list("methods", None, "variants.variant_config names (default: cql_h, bc, sac; "
                    "pendulum adds cql_rho).")
  flags.DEFINE_string("workdir", None, "Root of the runs, one per <kind>/<method> "
                      "(default runs/compare-<env>).")
  budget_lib.define_flags(num_steps=5000, num_seeds=2, eval_every=1000)


if __name__ == "__main__":
  from absl import app
  define_flags()
  app.run(main)
