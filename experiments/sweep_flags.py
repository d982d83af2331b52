"""The flags the comparison scripts (compare.py, table4.py) share, defined once per process.

Scripts define their flags in `define_flags()`, called under `if __name__ == "__main__"` (and by
tests), never at import: importing two scripts into one process (as the test suite does) must not
raise absl's DuplicateFlagError. `define_once` leaves an already-defined flag alone, so calling a
script's define_flags() twice, or two scripts' in one process, is safe; the first definition wins.
"""
from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS


def define_once(definer, name: str, *args, **kwargs) -> None:
  """definer(name, *args, **kwargs) (e.g. flags.DEFINE_integer) unless `name` is defined."""
  if name not in FLAGS:
    definer(name, *args, **kwargs)


def define(*, num_steps: int, num_seeds: int) -> None:
  """Training-budget, network and output flags, with the script's step and seed defaults."""
  define_once(flags.DEFINE_integer, "num_steps", num_steps, "Gradient steps per run.")
  define_once(flags.DEFINE_integer, "steps_per_chunk", 1000, "Steps per compiled chunk.")
  define_once(flags.DEFINE_integer, "num_seeds", num_seeds, "Seeds, vmapped in one program.")
  define_once(flags.DEFINE_integer, "seed", 0, "Root seed: seeds seed, seed+1, ..., seed+num_seeds-1 train.")
  define_once(flags.DEFINE_integer, "hidden", 64, "Width of the two hidden layers of actor and critics.")
  define_once(flags.DEFINE_integer, "batch_size", 256, "Batch size.")
  define_once(flags.DEFINE_float, "cql_weight", 5.0, "α of Eq. 4 for the CQL methods.")
  define_once(flags.DEFINE_float, "actor_lr", 3e-4, "Actor learning rate.")
  define_once(flags.DEFINE_bool, "write_results", False, "Write the table into RESULTS.md.")
  define_once(flags.DEFINE_string, "results", "RESULTS.md", "Results file.")


def agent_config():
  """base.short_budget_agent_config with the --hidden, --actor_lr and --cql_weight flags."""
  from cql_jax.configs import base
  config = base.short_budget_agent_config(FLAGS.hidden)
  config.actor_lr = FLAGS.actor_lr
  config.cql.weight = FLAGS.cql_weight
  return config
