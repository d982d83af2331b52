"""Chooses a checkpoint and a sweep member of a finished run without touching the environment.

  python -m experiments.select_policy --workdir=runs/pendulum-sweep \
      [--estimators=workflow,critic,fqe,conservative] [--fqe_steps=10000]

Reads <workdir>/config.json, metrics.jsonl (the "offline" rows every run records) and the
checkpoints, scores every (member, checkpoint) with each estimator (cql_jax.selection), prints
each member's diagnosis and each estimator's choice, and writes <workdir>/selection.json.
Rank more checkpoints by training with --config.checkpoint_every equal to eval_every and a large
--config.keep_checkpoints.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import sys

from absl import app
from absl import flags

from cql_jax import logs

# cql_jax.selection (JAX) is imported where used, so --help is quick.

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The flags; defined only when run as a script, so importing this module defines none."""
  flags.DEFINE_string("workdir", None, "A training run's or sweep's --workdir.")
  flags.DEFINE_list("estimators", None, "Which estimators to run (default: all of them, "
                    "workflow,critic,fqe,conservative; cql_jax.selection.ESTIMATORS).")
  flags.DEFINE_integer("fqe_steps", 10_000, "Gradient steps of each FQE / conservative critic.")
  flags.DEFINE_float("drop", 0.25, "Workflow: fall after the Q peak, as a share of its range, that "
                     "reads as over-fitting.")
  flags.DEFINE_float("underfit", 0.5, "Workflow: final relative TD error that reads as "
                     "under-fitting.")
  flags.DEFINE_float("cql_weight", None, "α of the conservative estimate (default: the run's).")
  flags.DEFINE_integer("seed", 0, "Seed of the policy-evaluation critics.")
  flags.DEFINE_bool("reuse", False, "Reuse the FQE / conservative estimates of an existing "
                    "selection.json made with the same critic settings (change thresholds only).")
  flags.DEFINE_multi_string("fqe", [], "KEY=VALUE agent-config settings of the evaluation critics "
                            "only, e.g. --fqe=polyak=0.02 or --fqe=target_update_period=100.")
  flags.DEFINE_bool("library_logs", False, logs.FLAG_HELP)
  flags.mark_flags_as_required(["workdir"])


def fqe_overrides(items) -> dict:
  """--fqe=KEY=VALUE items -> {KEY: VALUE as a Python literal}."""
  from cql_jax import selection, sweep
  out = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
      raise selection.SelectionError(f"--fqe={item!r} is not KEY=VALUE; e.g. --fqe=polyak=0.02.")
    out[key.strip()] = sweep.parse_literal(value.strip())
  return out


def main(argv):
  del argv
  logs.quiet(FLAGS.library_logs)  # orbax logs every restore at INFO.
  from cql_jax import selection
  try:
    selection.select_run(FLAGS.workdir, FLAGS.estimators or selection.ESTIMATORS, fqe_steps=FLAGS.fqe_steps,
                         drop=FLAGS.drop, underfit=FLAGS.underfit, cql_weight=FLAGS.cql_weight,
                         seed=FLAGS.seed, reuse=FLAGS.reuse,
                         fqe_overrides=fqe_overrides(FLAGS.fqe))
  except selection.SelectionError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
