"""CQL(H), CQL(ρ), behaviour cloning and offline SAC on the project's Pendulum datasets.

Every method is a configuration of the one CQL agent (cql_jax.agents.variants). Seeds are vmapped
in one compiled program (train.fit(..., num_seeds=S)); each seed's final policy is evaluated
deterministically (tanh of the mean) and scored on the D4RL 0–100 scale.

  PYTHONPATH=$PWD MINARI_DATASETS_PATH=/work/main/data/minari \\
    python -m experiments.compare --num_steps=5000 --num_seeds=2 --write_results
"""
from __future__ import annotations

import time

from absl import app, flags
import jax
import numpy as np

from cql_jax import train
from cql_jax.agents import device_data, make_agent
from cql_jax.agents import variants
from cql_jax.data import minari_io
from cql_jax.data import pendulum
from cql_jax.evaluation import evaluate_agent, seed_state
from experiments import results_md
from experiments.configs import classic

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", list(pendulum.KINDS), "Pendulum dataset kinds.")
flags.DEFINE_list("methods", ["cql_h", "cql_rho", "bc", "sac"], "variants.variant_config names.")
flags.DEFINE_integer("num_steps", 5000, "Gradient steps per run.")
flags.DEFINE_integer("steps_per_chunk", 1000, "Steps per compiled chunk.")
flags.DEFINE_integer("num_seeds", 2, "Seeds, vmapped in one program.")
flags.DEFINE_integer("seed", 0, "Root seed.")
flags.DEFINE_integer("hidden", 64, "Width of the two hidden layers of actor and critics.")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_float("cql_weight", 5.0, "α of Eq. 4 for the CQL methods.")
flags.DEFINE_float("actor_lr", 3e-4, "Actor learning rate.")
flags.DEFINE_integer("eval_episodes", 10, "Evaluation episodes per seed.")
flags.DEFINE_bool("write_results", False, "Write the table into RESULTS.md.")
flags.DEFINE_string("results", "RESULTS.md", "Results file.")

HEADING = "## Variant comparison on Pendulum (issue 5)"
LABELS = {"cql_h": "CQL(H)", "cql_rho": "CQL(ρ)", "cql_nonis": "CQL non-IS", "cql_eq1": "CQL (Eq. 1)",
          "bc": "BC", "sac": "offline SAC"}


def base_config():
  config = classic.pendulum_agent_config(FLAGS.hidden)
  config.actor_lr = FLAGS.actor_lr
  config.cql.weight = FLAGS.cql_weight
  return config


def run_one(kind: str, name: str):
  """Returns ([S] normalized scores, training seconds)."""
  dataset = minari_io.load_dataset(pendulum.dataset_id(kind))
  agent = make_agent(variants.variant_config(name, base_config()), dataset)
  start = time.time()
  states = train.fit(agent, device_data(dataset), seed=FLAGS.seed, num_steps=FLAGS.num_steps,
                     steps_per_chunk=FLAGS.steps_per_chunk, batch_size=FLAGS.batch_size,
                     num_seeds=FLAGS.num_seeds)
  jax.block_until_ready(states)
  secs = time.time() - start
  scores = [evaluate_agent(agent, seed_state(states, s), dataset, num_episodes=FLAGS.eval_episodes,
                           seed=1000 + s).mean_normalized for s in range(FLAGS.num_seeds)]
  return np.array(scores), secs


def main(argv):
  del argv
  scores, behaviour = {}, {}
  for kind in FLAGS.datasets:
    dataset = minari_io.load_dataset(pendulum.dataset_id(kind))
    behaviour[kind] = float(np.mean(100 * (dataset.episode_returns - dataset.ref_min_score)
                                    / (dataset.ref_max_score - dataset.ref_min_score)))
    for name in FLAGS.methods:
      scores[(name, kind)], secs = run_one(kind, name)
      s = scores[(name, kind)]
      print(f"{kind:14s} {LABELS.get(name, name):12s} {s.mean():6.1f} ± {s.std():5.1f}  "
            f"({secs:.0f} s train)", flush=True)
  rows = ["| dataset | behaviour | " + " | ".join(LABELS.get(m, m) for m in FLAGS.methods) + " |",
          "|---|---:|" + "---:|" * len(FLAGS.methods)]
  for kind in FLAGS.datasets:
    cells = [f"{scores[(m, kind)].mean():.1f} ± {scores[(m, kind)].std():.1f}" for m in FLAGS.methods]
    rows.append(f"| {kind} | {behaviour[kind]:.1f} | " + " | ".join(cells) + " |")
  table = "\n".join(rows)
  print(table)
  if FLAGS.write_results:
    body = f"""Command (2-core shared CPU, JAX CPU backend):

    PYTHONPATH=$PWD MINARI_DATASETS_PATH=/work/main/data/minari python -m experiments.compare \\
      --num_steps={FLAGS.num_steps} --num_seeds={FLAGS.num_seeds} --seed={FLAGS.seed} --eval_episodes={FLAGS.eval_episodes} --write_results

Setup: actor and critics {FLAGS.hidden}-{FLAGS.hidden}, batch {FLAGS.batch_size}, actor lr {FLAGS.actor_lr},
critic lr 1e-3, {FLAGS.num_steps} gradient steps (a short budget for a shared CPU; the paper trains 1M),
{FLAGS.num_seeds} seeds vmapped in one program, deterministic backup, two critics. CQL(H) and CQL(ρ)
use α = {FLAGS.cql_weight}, N = 10 samples per source; CQL(ρ) is T·log E_{{a~π(s)}}[exp Q] from 10
samples of the current policy; BC is `algorithm="bc"` (actor by the BC loss alone, no critic); offline
SAC is α = 0. Entries: D4RL-normalised score (0 = random, 100 = scripted expert) of the final
deterministic policy, {FLAGS.eval_episodes} episodes per seed, mean ± std over seeds; "behaviour" is
the dataset's own mean score.

{table}
"""
    results_md.write_section(FLAGS.results, HEADING, body)


if __name__ == "__main__":
  app.run(main)
