"""Entry point: the only module that reads flags.

  python -m experiments.train --config=cql_jax/configs/classic.py:medium-expert \
      --workdir=runs/pendulum-me --seeds=0,1,2,3 [--config.agent.cql.weight=10] [--resume]

A sweep trains settings × seeds in one compiled program (cql_jax.sweep):
  --sweep=agent.cql.weight=1,5,10 --sweep=agent.critic_lr=3e-4,1e-3    # 3 × 2 grid
  --sweep_zip=agent.cql.weight=1,5 --sweep_zip=agent.critic_lr=3e-4,1e-3  # 2 zipped settings
"""
from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Domain config, e.g. cql_jax/configs/locomotion.py:hopper-medium.",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (config, metrics, checkpoints, results).")
flags.DEFINE_list("seeds", ["0"], "Comma-separated seeds, trained together in one vmapped program.")
flags.DEFINE_bool("resume", False, "Continue the run in --workdir from its latest checkpoint.")
flags.DEFINE_bool("download", False, "Let Minari download a dataset that is not stored locally.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_multi_string("sweep", [], "Sweep axis KEY=V1,V2,... (e.g. agent.cql.weight=1,5,10); "
                          "several --sweep axes form a grid (their product).")
flags.DEFINE_multi_string("sweep_zip", [], "Sweep axis KEY=V1,V2,... stepped together with the "
                          "other --sweep_zip axes (equal lengths), crossed with --sweep.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv):
  """absl parsing, but an override of an unknown config key lists the valid keys.

  ml_collections reports it as "Unknown command line flag" or a traceback, depending on the depth.
  """
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError):
    config_args = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    if not config_args:
      raise
    from cql_jax.configs import base
    try:
      config = base.load_config_file(config_args[-1])
    except Exception:  # pylint: disable=broad-except
      raise  # the config file itself is broken: absl's message is the useful one.
    unknown = base.unknown_override_keys(config, argv)
    if not unknown:
      raise
    print("FATAL Flags parsing error: " + "\n".join(
        base.unknown_key_message(config, key) for key in unknown), file=sys.stderr)
    sys.exit(1)


class _QuietOrbax:
  """Drops orbax's INFO chatter (a dozen lines per save) from the absl log; warnings pass."""

  def filter(self, record) -> bool:
    return record.levelno >= 30 or "/orbax/" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_QuietOrbax())
  from cql_jax import parallel
  parallel.maybe_initialize_distributed()  # before anything touches a device.
  from cql_jax import runner  # local: flag parsing and --help stay fast.
  from cql_jax import sweep
  seeds = [int(s) for s in FLAGS.seeds]
  result = runner.train_and_evaluate(FLAGS.config, FLAGS.workdir, seeds, FLAGS.resume,
                                     download=FLAGS.download, progress=FLAGS.progress,
                                     grid=sweep.Grid.from_flags(FLAGS.sweep, FLAGS.sweep_zip))
  logging.info("final: %s", result.results["final_mean"])
  if result.results.get("sweep"):
    logging.info("sweep, final scores per setting over seeds:\n%s",
                 sweep.format_table(result.results["sweep"]))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
