"""Continuous recipes against BC and d3rlpy on the project's SAC-made datasets, one split at a time.

  PYTHONPATH=$PWD python -m experiments.continuous_recipes --split=dev \\
      --recipes=cql,bc --peers=cql,bc --num_steps=5000 --num_seeds=4 \\
      --workdir=runs/continuous-recipes

Datasets: cql_jax/<env>/<kind>-v0 (cql_jax/configs/control.py; made by
`python -m experiments.make_datasets --env=<env>`); --split picks control.DEV or control.TEST,
and --envs a subset of it (e.g. --split=dev --envs=invertedpendulum).
Recipes are chosen on "dev" only; "test" is run once per candidate recipe and never tuned on.

Each (env, kind, recipe) is one runner run in <workdir>/<split>/<env>/<kind>/<recipe>/ with the
seeds vmapped (experiments.budget: a rerun skips finished runs and resumes stopped ones). Each
--peers algorithm is d3rlpy 2.8.1 through experiments.peer in
<workdir>/<split>/<env>/<kind>/d3rlpy/<algo>/, with the first recipe's run as its --like: the
same transitions, steps, evaluation schedule, episodes, seeds and hidden sizes. The table
(mean ± std over seeds of the final D4RL-normalised score) goes to stdout and
<workdir>/<split>/table.md; with --write_results into RESULTS.md.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import functools
import json
import pathlib
from typing import Dict

import ml_collections
import numpy as np

# JAX-heavy modules (configs, variants) are imported where used, so --help is quick.
from experiments import budget as budget_lib
from experiments import compare
from experiments import recipe_table
from experiments import results_md

# name -> (variant of cql_jax.continuous.variants, {agent key: value}) on control_agent_config.
RECIPES = {
    # The continuous default of cql_jax/configs/control.py as it stands.
    "cql": ("cql_h", {}),
    # The official code's BC warm-start (policy_eval_start): the actor is trained by BC for the
    # first fifth of the budget, while the critic learns; set from the budget below.
    "cql_bcwarm": ("cql_h", {"bc_steps": None}),
    # Behaviour cloning with the default's network, lr and batch.
    "bc": ("bc", {}),
}
KINDS = ("medium-replay", "medium-expert", "expert")
PEER_LABELS = {"cql": "d3rlpy CQL", "bc": "d3rlpy BC"}


def run_config(env: str, kind: str, recipe: str, budget: budget_lib.Budget
               ) -> ml_collections.ConfigDict:
  from cql_jax.configs import control
  from cql_jax.continuous import variants
  variant, overrides = RECIPES[recipe]
  agent = variants.variant_config(variant, control.control_agent_config(budget.hidden))
  for key, value in overrides.items():
    agent[key] = budget.num_steps // 5 if (key == "bc_steps" and value is None) else value
  return budget_lib.run_config(control.get_config(f"{env}-{kind}"), agent, budget)


def split_envs(split: str, envs=None):
  """The split's environments (control.DEV or control.TEST), or the subset `envs` of them."""
  from cql_jax.configs import control
  members = control.DEV if split == "dev" else control.TEST
  if not envs:
    return members
  outside = [e for e in envs if e not in members]
  if outside:
    raise ValueError(f"--envs: {', '.join(outside)} not in the {split} split; choose from "
                     f"{', '.join(members)} (recipes are tuned on dev only, so a test "
                     "environment cannot run as dev, nor the reverse).")
  return tuple(e for e in members if e in envs)


def datasets(split: str, kinds, workdir, envs=None):
  """(env, kind, the dataset's folder of runs) for every dataset of the split (or of its subset
  `envs`), in table order."""
  root = pathlib.Path(workdir) / split
  for env in split_envs(split, envs):
    for kind in kinds:
      yield env, kind, root / env / kind


def run_split(split: str, recipes, peers, kinds, budget: budget_lib.Budget, workdir,
              envs=None, log=print) -> Dict:
  """Trains what is missing; returns {(env, kind): {"behaviour": x, label: [scores per seed]}}."""
  from experiments import peer
  table = {}
  for env, kind, folder in datasets(split, kinds, workdir, envs):
    row = {}
    first_dir = None
    for recipe in recipes:
      config = run_config(env, kind, recipe, budget)
      path = folder / recipe
      results = budget_lib.run_results(config, path, budget.seeds)
      row[recipe] = results["final"]["eval/normalized_score"]
      first_dir = first_dir or path
      log(f"{env} {kind} {recipe}: {np.mean(row[recipe]):.1f} ± {np.std(row[recipe]):.1f}")
      if "behaviour" not in row:
        row["behaviour"] = compare.behaviour_score(config)
    if peers:
      found = peer.run(folder / "d3rlpy", peers, like=str(first_dir), log=log)
      for algo, results in found.items():
        row[PEER_LABELS[algo]] = results["final"]["eval/normalized_score"]
    table[(env, kind)] = row
  return table


def collect(split: str, recipes, peers, kinds, workdir, envs=None) -> Dict:
  """run_split's table from the runs that have finished, training nothing (missing: absent)."""
  table = {}
  for env, kind, folder in datasets(split, kinds, workdir, envs):
    row = {}
    for recipe in recipes:
      path = folder / recipe / "results.json"
      if path.exists():
        row[recipe] = json.loads(path.read_text())["final"]["eval/normalized_score"]
        if "behaviour" not in row:
          config = ml_collections.ConfigDict(json.loads(
              (path.parent / "config.json").read_text())["config"])
          row["behaviour"] = compare.behaviour_score(config)
    for algo in peers:
      path = folder / "d3rlpy" / algo / "results.json"
      if path.exists():
        row[PEER_LABELS[algo]] = json.loads(path.read_text())["final"]["eval/normalized_score"]
    if row:
      table[(env, kind)] = row
  return table


def main(argv):
  del argv
  from absl import flags
  FLAGS = flags.FLAGS
  budget = budget_lib.from_flags(FLAGS)
  unknown = [r for r in FLAGS.recipes if r not in RECIPES]
  if unknown:
    raise SystemExit(f"--recipes: unknown {unknown}; choose from {', '.join(RECIPES)}.")
  try:
    split_envs(FLAGS.split, FLAGS.envs)
  except ValueError as err:
    raise SystemExit(str(err)) from None
  run = collect if FLAGS.collect_only else functools.partial(run_split, budget=budget)
  table = run(FLAGS.split, FLAGS.recipes, FLAGS.peers, FLAGS.datasets, workdir=FLAGS.workdir,
              envs=FLAGS.envs)
  columns = list(FLAGS.recipes) + [PEER_LABELS[a] for a in FLAGS.peers]
  recipe_table.publish(recipe_table.markdown(table, columns), FLAGS.workdir, FLAGS.split,
                       "table.json", {f"{e} {k}": row for (e, k), row in table.items()})


def define_flags() -> None:
  from absl import flags
  flags.DEFINE_enum("split", "dev", ("dev", "test"), "control.DEV or control.TEST.")
  flags.DEFINE_list("recipes", ["cql", "bc"], f"Recipes: {', '.join(RECIPES)}.")
  flags.DEFINE_list("peers", ["cql", "bc"], "d3rlpy algorithms (cql, bc); empty: none.")
  flags.DEFINE_list("datasets", list(KINDS), "Dataset kinds.")
  flags.DEFINE_list("envs", [], "Environments of the split to run (default: all of them).")
  flags.DEFINE_string("workdir", "runs/continuous-recipes", "Root of the runs.")
  flags.DEFINE_bool("collect_only", False, "Train nothing: the table of the finished runs.")
  budget_lib.define_flags(num_steps=5000, num_seeds=4, eval_every=1000)


if __name__ == "__main__":
  from absl import app
  define_flags()
  app.run(main)
