"""Discrete recipes against BC on the project's DQN-made datasets, one split at a time.

  PYTHONPATH=$PWD python -m experiments.discrete_recipes --split=dev \\
      --recipes=cql,cql_d3rlpy,bc --num_seeds=4 --workdir=runs/discrete-recipes

Datasets: cql_jax/<env>/<kind>-v0 of cql_jax.makers.discrete_datasets (made by
`python -m experiments.make_datasets --env=<env>`); --split picks the environments of
discrete_datasets.SPLITS. Recipes are chosen on "dev" only; "test" is run once per candidate
recipe and never tuned on. Each (env, kind, recipe) is one runner run in
<workdir>/<split>/<env>/<kind>/<recipe>/ with the seeds vmapped, so `experiments.plot` draws
its curves, and a rerun skips finished runs and resumes stopped ones (experiments.budget).

Every recipe starts from cql_jax/configs/cartpole.py (the discrete default) and changes only
what RECIPES lists; the budget (steps, evaluation, seeds) is the same for all.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import json
import pathlib
from typing import Dict, Sequence

import ml_collections
import numpy as np

# JAX-heavy modules (configs, variants) are imported where used, so --help is quick.
from cql_jax.makers import discrete_datasets
from experiments import budget as budget_lib
from experiments import compare
from experiments import recipe_table

# The discrete default before this comparison: a hard target update every 2000 gradient steps.
# Pinned in the recipes compared against it so their runs keep one config as the default moves.
FORMER = {"target_update_period": 2000}
# name -> (variant, {agent key: value}, {run key: value}) on top of the CartPole config.
RECIPES = {
    # The discrete default of cql_jax/configs/cartpole.py as it stands (P = 250).
    "cql": ("cql_dqn", {}, {}),
    # The former default, P = 2000 (15 Bellman iterations in 30k steps).
    "cql_p2000": ("cql_dqn", FORMER, {}),
    # d3rlpy 2.8.1 DiscreteCQLConfig's defaults on our code: lr 6.25e-5, batch 32, Adam eps
    # 1e-8, target update every 8000 steps, Double DQN, 256-256 encoder, α = 1.
    "cql_d3rlpy": ("cql_dqn", {"lr": 6.25e-5, "adam_eps": 1e-8, "target_update_period": 8000,
                               "double_dqn": True, "hidden_sizes": (256, 256)},
                   {"batch_size": 32}),
    # The "same code, d3rlpy's settings": lr, batch and Adam eps changed from the former
    # default.
    "cql_slow": ("cql_dqn", {**FORMER, "lr": 6.25e-5, "adam_eps": 1e-8}, {"batch_size": 32}),
    # One factor of cql_slow at a time: Adam's eps alone (batch_rl's 3.125e-4 damps every step
    # whose gradient RMS is below it, as a small MLP's are).
    "cql_eps": ("cql_dqn", {**FORMER, "adam_eps": 1e-8}, {}),
    # Behaviour cloning with the default's network, lr and batch (the period does nothing here).
    "bc": ("bc", FORMER, {}),
}
KINDS = ("medium-replay", "medium-expert", "expert")


def run_config(env: str, kind: str, recipe: str, budget: budget_lib.Budget
               ) -> ml_collections.ConfigDict:
  from cql_jax.configs import cartpole
  from cql_jax.discrete import variants
  variant, agent_overrides, run_overrides = RECIPES[recipe]
  base = cartpole.get_config("medium-replay")
  agent = variants.variant_config(variant, base.agent)
  agent.update(agent_overrides)
  with base.unlocked():
    base.dataset_id = discrete_datasets.dataset_id(env, kind)
    base.config_arg = None
  config = budget_lib.run_config(base, agent, budget)
  with config.unlocked():
    config.update(run_overrides)
  config.lock()
  return config


def run(split: str, envs: Sequence[str], kinds: Sequence[str], recipes: Sequence[str],
        budget: budget_lib.Budget, workdir, log=print, report_only: bool = False) -> Dict:
  """Trains every (env, kind, recipe) not yet done; returns {(env, kind): {recipe: record}} and
  the behaviour scores {(env, kind): score}. report_only: read every run's results.json as it
  is (made by an earlier version of the code, whose config may hold fewer keys) and train none."""
  records, behaviour = {}, {}
  for env in envs:
    for kind in kinds:
      for recipe in recipes:
        config = run_config(env, kind, recipe, budget)
        path = pathlib.Path(workdir) / split / env / kind / recipe
        if report_only:
          results = json.loads((path / "results.json").read_text())
        else:
          results = budget_lib.run_results(config, path, budget.seeds)
        r = compare.record(results, config)
        records.setdefault((env, kind), {})[recipe] = r
        s = np.asarray(r["scores"])
        log(f"{split} {env:16s} {kind:14s} {recipe:12s} {s.mean():6.1f} ± {s.std():5.1f}  "
            f"({r['seconds']:.0f} s) {np.round(s, 1).tolist()}")
      behaviour[(env, kind)] = compare.behaviour_score(config)
  return records, behaviour


def table(records, behaviour, recipes) -> str:
  """run's records and behaviour scores as recipe_table.markdown's table."""
  return recipe_table.markdown(
      {key: {"behaviour": behaviour[key], **{r: rec["scores"] for r, rec in by_recipe.items()}}
       for key, by_recipe in records.items()}, recipes)


def main(argv):
  del argv
  from absl import flags
  FLAGS = flags.FLAGS
  budget = budget_lib.from_flags(FLAGS)
  envs = list(FLAGS.envs or discrete_datasets.SPLITS[FLAGS.split])
  wrong = [e for e in envs if e not in discrete_datasets.SPLITS[FLAGS.split]]
  if wrong:
    raise SystemExit(f"--envs {wrong} are not in the {FLAGS.split} split "
                     f"{discrete_datasets.SPLITS[FLAGS.split]}.")
  unknown = [r for r in FLAGS.recipes if r not in RECIPES]
  if unknown:
    raise SystemExit(f"unknown --recipes {unknown}; choose from {list(RECIPES)}.")
  records, behaviour = run(FLAGS.split, envs, FLAGS.kinds, FLAGS.recipes, budget, FLAGS.workdir,
                           report_only=FLAGS.report_only)
  recipe_table.publish(
      table(records, behaviour, FLAGS.recipes), FLAGS.workdir, FLAGS.split, "records.json",
      {f"{e}/{k}": {r: {"scores": v["scores"], "returns": v["returns"]} for r, v in d.items()}
       for (e, k), d in records.items()})


def define_flags() -> None:
  from absl import flags
  flags.DEFINE_enum("split", "dev", tuple(discrete_datasets.SPLITS), "Which environments.")
  flags.DEFINE_list("envs", None, "A subset of the split's environments (default: all).")
  flags.DEFINE_list("kinds", list(KINDS), "Dataset kinds.")
  flags.DEFINE_list("recipes", ["cql", "cql_p2000", "cql_slow", "bc"], f"Of {list(RECIPES)}.")
  flags.DEFINE_string("workdir", "runs/discrete-recipes", "Root of the runs.")
  flags.DEFINE_bool("report_only", False, "Tabulate the runs' results.json; train nothing.")
  # The CartPole config's own budget: 30k steps, batch 64 (recipes may change the batch).
  budget_lib.define_flags(num_steps=30_000, num_seeds=4, eval_every=5_000)


if __name__ == "__main__":
  from absl import app
  define_flags()
  app.run(main)
