"""CQL(H) against behaviour cloning, offline SAC and other variants on the project's datasets.

  --env=pendulum                      cql_jax/pendulum/<kind>-v0 (issue 5's variant comparison)
  --env=hopper|halfcheetah|walker2d   cql_jax/<env>/<kind>-v0, made by experiments/make_datasets.py
                                      with the project's online SAC (issue 8)

Every method is a configuration of the one CQL agent (cql_jax.continuous.variants) on
base.short_budget_agent_config. Seeds are vmapped in one compiled program (train.fit(...,
num_seeds=S)); each seed's final policy is evaluated deterministically (tanh of the mean) and
scored on the D4RL 0–100 scale of the dataset's ref_min_score / ref_max_score.

Each (dataset, method) result is appended to --scores (one JSON line) as soon as it is done, and
a rerun with the same settings skips what is already there, so a sweep that is stopped loses at
most the run in progress; the table is built from that file.

  PYTHONPATH=$PWD MINARI_DATASETS_PATH=$PWD/data/minari python -m experiments.compare \\
      --env=pendulum --num_steps=8000 --num_seeds=2 --write_results
  PYTHONPATH=$PWD MINARI_DATASETS_PATH=$PWD/data/minari python -m experiments.compare \\
      --env=halfcheetah --num_steps=10000 --num_seeds=3 --scores=runs/compare-halfcheetah.jsonl --write_results
"""
from __future__ import annotations

import json
import os
import time

from absl import app, flags
import jax
import numpy as np

from cql_jax import train
from cql_jax.agents import device_data, make_agent
from cql_jax.continuous import variants
from cql_jax.data import minari_io
from cql_jax.makers import mujoco_datasets
from cql_jax.makers import pendulum
from cql_jax.evaluation import evaluate_agent, seed_state
from experiments import results_md
from experiments import sweep_flags

ENVS = ("pendulum", *mujoco_datasets.ENVS)
DEFAULT_METHODS = {"pendulum": ["cql_h", "cql_rho", "bc", "sac"]}

FLAGS = flags.FLAGS


def define_flags() -> None:
  once = sweep_flags.define_once
  once(flags.DEFINE_enum, "env", "pendulum", ENVS, "Which of the project's dataset families.")
  once(flags.DEFINE_list, "datasets", None, "Dataset kinds (default: all five of the family).")
  once(flags.DEFINE_list, "methods", None, "variants.variant_config names (default: cql_h, bc, "
       "sac; pendulum adds cql_rho).")
  once(flags.DEFINE_integer, "eval_episodes", 10, "Evaluation episodes per seed.")
  once(flags.DEFINE_string, "scores", None,
       "JSONL of finished runs (default runs/compare-<env>.jsonl).")
  sweep_flags.define(num_steps=5000, num_seeds=2)


LABELS = {"cql_h": "CQL(H)", "cql_rho": "CQL(ρ)", "cql_nonis": "CQL non-IS", "cql_eq1": "CQL (Eq. 1)",
          "bc": "BC", "sac": "offline SAC"}


def heading(env: str) -> str:
  if env == "pendulum":
    return "## Variant comparison on Pendulum (issue 5)"
  return f"## CQL(H), BC and offline SAC on the project's {mujoco_datasets.ENVS[env]} datasets (issue 8)"


def dataset_id(env: str, kind: str) -> str:
  return pendulum.dataset_id(kind) if env == "pendulum" else mujoco_datasets.dataset_id(env, kind)


def settings() -> dict:
  """What a stored result must match to be reused."""
  return {"env": FLAGS.env, "num_steps": FLAGS.num_steps, "num_seeds": FLAGS.num_seeds,
          "seed": FLAGS.seed, "hidden": FLAGS.hidden, "batch_size": FLAGS.batch_size,
          "cql_weight": FLAGS.cql_weight, "actor_lr": FLAGS.actor_lr,
          "eval_episodes": FLAGS.eval_episodes}


def read_scores(path: str) -> dict:
  """(kind, method) -> record, for records of `path` made with the current settings()."""
  done = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        record = json.loads(line)
        if record["settings"] == settings():
          done[(record["dataset"], record["method"])] = record
  return done


def append_score(path: str, record: dict) -> None:
  """One line, flushed and fsynced, so a crash never leaves a torn record behind."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())


def run_one(dataset, name: str) -> dict:
  """Trains FLAGS.num_seeds seeds of `name` on `dataset`; returns the record to store."""
  agent = make_agent(variants.variant_config(name, sweep_flags.agent_config()), dataset)
  start = time.time()
  states = train.fit(agent, device_data(dataset), seed=FLAGS.seed, num_steps=FLAGS.num_steps,
                     steps_per_chunk=FLAGS.steps_per_chunk, batch_size=FLAGS.batch_size,
                     num_seeds=FLAGS.num_seeds)
  jax.block_until_ready(states)
  train_seconds = time.time() - start
  results = [evaluate_agent(agent, seed_state(states, s), dataset, num_episodes=FLAGS.eval_episodes,
                            seed=1000 + s) for s in range(FLAGS.num_seeds)]
  return {"scores": [float(r.mean_normalized) for r in results],
          "returns": [float(np.mean(r.returns)) for r in results],
          "train_seconds": train_seconds, "eval_seconds": time.time() - start - train_seconds}


def behaviour_score(dataset) -> float:
  """Mean normalized return of the dataset's own episodes."""
  return float(np.mean(100 * (dataset.episode_returns - dataset.ref_min_score)
                       / (dataset.ref_max_score - dataset.ref_min_score)))


def table(kinds, methods, records, behaviour) -> str:
  rows = ["| dataset | behaviour | " + " | ".join(LABELS.get(m, m) for m in methods) + " |",
          "|---|---:|" + "---:|" * len(methods)]
  for kind in kinds:
    cells = []
    for m in methods:
      s = np.asarray(records[(kind, m)]["scores"])
      cells.append(f"{s.mean():.1f} ± {s.std():.1f}")
    rows.append(f"| {kind} | {behaviour[kind]:.1f} | " + " | ".join(cells) + " |")
  return "\n".join(rows)


def results_body(kinds, methods, records, behaviour) -> str:
  scores_flag = "" if FLAGS.scores is None else f" --scores={FLAGS.scores}"
  seconds = sum(records[(k, m)]["train_seconds"] + records[(k, m)]["eval_seconds"]
                for k in kinds for m in methods)
  return f"""Command (2-core CPU, JAX CPU backend; {seconds / 60:.0f} min of training and evaluation):

    PYTHONPATH=$PWD MINARI_DATASETS_PATH=$PWD/data/minari python -m experiments.compare \\
      --env={FLAGS.env} --datasets={','.join(kinds)} --methods={','.join(methods)} \\
      --num_steps={FLAGS.num_steps} --num_seeds={FLAGS.num_seeds} --seed={FLAGS.seed} --hidden={FLAGS.hidden} \\
      --eval_episodes={FLAGS.eval_episodes}{scores_flag} --write_results

Setup: actor and critics {FLAGS.hidden}-{FLAGS.hidden}, batch {FLAGS.batch_size}, actor lr {FLAGS.actor_lr},
critic lr 1e-3, {FLAGS.num_steps} gradient steps (a short budget for a 2-core CPU; the paper trains 1M),
{FLAGS.num_seeds} seeds vmapped in one program, deterministic backup, two critics. CQL(H) and CQL(ρ)
use α = {FLAGS.cql_weight}, N = 10 samples per source; CQL(ρ) is T·log E_{{a~π(s)}}[exp Q] from 10
samples of the current policy; BC is `algorithm="bc"` (actor by the BC loss alone, no critic); offline
SAC is α = 0. Entries: D4RL-normalised score (0 = the dataset's ref_min_score, 100 = its
ref_max_score) of the final deterministic policy, {FLAGS.eval_episodes} episodes per seed, mean ± std
over seeds; "behaviour" is the dataset's own mean score.

{table(kinds, methods, records, behaviour)}
"""


def main(argv):
  del argv
  kinds = FLAGS.datasets or list(pendulum.KINDS if FLAGS.env == "pendulum" else mujoco_datasets.KINDS)
  methods = FLAGS.methods or DEFAULT_METHODS.get(FLAGS.env, ["cql_h", "bc", "sac"])
  path = FLAGS.scores or os.path.join("runs", f"compare-{FLAGS.env}.jsonl")
  records = read_scores(path)
  behaviour = {}
  for kind in kinds:
    dataset = minari_io.load_dataset(dataset_id(FLAGS.env, kind))
    behaviour[kind] = behaviour_score(dataset)
    for name in methods:
      if (kind, name) not in records:
        record = {"dataset": kind, "method": name, "settings": settings(),
                  **run_one(dataset, name)}
        append_score(path, record)
        records[(kind, name)] = record
      r = records[(kind, name)]
      s = np.asarray(r["scores"])
      print(f"{kind:14s} {LABELS.get(name, name):12s} {s.mean():6.1f} ± {s.std():5.1f}  "
            f"({r['train_seconds']:.0f} s train, {r['eval_seconds']:.0f} s eval)", flush=True)
  print(table(kinds, methods, records, behaviour))
  if FLAGS.write_results:
    results_md.write_section(FLAGS.results, heading(FLAGS.env),
                             results_body(kinds, methods, records, behaviour))


if __name__ == "__main__":
  define_flags()
  app.run(main)
