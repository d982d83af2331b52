"""`make demo`: CQL(H) on the project's own Pendulum medium-expert data, offline, in minutes.

Makes the Pendulum datasets if absent (scripted behaviour policies written in the Minari
format), trains CQL with vmapped seeds through cql_jax.runner into --workdir (metrics.jsonl,
TensorBoard events, checkpoints, results.json, as any experiments.train run), and prints CQL's
normalized score next to the dataset's own average score. Launched again on the same workdir it
reuses the finished run; remove the directory to train afresh.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import tempfile

import numpy as np

from cql_jax import scores
from cql_jax.makers import pendulum
from experiments import budget as budget_lib

DEFAULT_STEPS = 8_000


def demo_config(kind: str, steps: int, hidden: int, eval_episodes: int):
  """classic.py's config for `kind` with the demo's budget: evaluated once, at the end."""
  from cql_jax.configs import classic  # local: --help stays free of JAX.
  chunk = min(1000, steps)
  budget = budget_lib.Budget(num_steps=steps, steps_per_chunk=chunk, hidden=hidden,
                             eval_episodes=eval_episodes)
  return budget_lib.run_config(classic.get_config(kind), classic.pendulum_agent_config(hidden),
                               budget)


def run(kind: str, steps: int, num_seeds: int, hidden: int, eval_episodes: int, workdir=None,
        progress: bool = False):
  """Trains and evaluates; returns (per-seed normalized scores [S], dataset's normalized score).

  workdir: the run directory; None trains in a temporary one that is removed afterwards.
  """
  config = demo_config(kind, steps, hidden, eval_episodes)
  seeds = tuple(range(num_seeds))
  if workdir is None:
    with tempfile.TemporaryDirectory(prefix="cql_jax-demo-") as tmp:
      result = budget_lib.train(config, tmp, seeds, progress)
  else:
    result = budget_lib.train(config, workdir, seeds, progress)
  from cql_jax import runner
  dataset = runner.load_data(config)
  data_score = float(np.mean(scores.normalized_score(
      dataset.episode_returns, dataset.ref_min_score, dataset.ref_max_score)))
  return np.asarray(result.results["final"]["eval/normalized_score"]), data_score


def main(argv):
  del argv
  from absl import flags
  from cql_jax import logs
  FLAGS = flags.FLAGS
  logs.quiet(FLAGS.library_logs)
  per_seed, data_score = run(FLAGS.kind, FLAGS.steps, FLAGS.seeds, FLAGS.hidden,
                             FLAGS.eval_episodes, FLAGS.workdir or f"runs/demo-{FLAGS.kind}",
                             progress=True)
  print(f"\nDataset {pendulum.dataset_id(FLAGS.kind)}")
  print(f"  dataset average score : {data_score:6.1f} (normalized)")
  print(f"  CQL(H) score          : {per_seed.mean():6.1f} ± {per_seed.std():.1f} "
        f"over {len(per_seed)} seeds ({', '.join(f'{s:.1f}' for s in per_seed)})")


def define_flags() -> None:
  """Called only when run as a script, so importing demo (tests do) defines no flags."""
  from absl import flags
  from cql_jax import logs
  flags.DEFINE_enum("kind", "medium-expert", list(pendulum.KINDS), "Pendulum dataset kind.")
  flags.DEFINE_integer("steps", DEFAULT_STEPS, "Gradient steps.")
  flags.DEFINE_integer("seeds", 2, "Seeds trained together (vmapped).")
  flags.DEFINE_integer("hidden", 64, "Width of the two hidden layers of actor and critics.")
  flags.DEFINE_integer("eval_episodes", 20, "Evaluation episodes per seed.")
  flags.DEFINE_string("workdir", None, "Run directory (default runs/demo-<kind>).")
  flags.DEFINE_bool("library_logs", False, logs.FLAG_HELP)


if __name__ == "__main__":
  from absl import app
  define_flags()
  app.run(main)
