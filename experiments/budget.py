"""The training budget the comparison scripts (compare.py, table4.py) share, as runner configs.

A script defines its flags with `define_flags` only under `if __name__ == "__main__"`, so
importing scripts (the tests do) defines none and two scripts never collide; it turns them into a
`Budget` with `from_flags`, and each (dataset, method) into a runner config with `run_config`.
Every run then goes through cql_jax.runner: its workdir holds config.json, metrics.jsonl,
TensorBoard events, checkpoints and results.json like any `experiments.train` run, and
`experiments.plot` reads it.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Optional, Tuple

import ml_collections

from cql_jax import logs


@dataclasses.dataclass(frozen=True)
class Budget:
  """num_steps gradient steps for seeds seed, ..., seed + num_seeds − 1 (vmapped together).

  eval_every: gradient steps between evaluations (a multiple of steps_per_chunk); None
  evaluates only at the end. Networks are two hidden layers of `hidden` units.
  """
  num_steps: int
  num_seeds: int = 2
  seed: int = 0
  steps_per_chunk: int = 1000
  hidden: int = 64
  batch_size: int = 256
  cql_weight: float = 5.0
  actor_lr: float = 3e-4
  eval_every: Optional[int] = None
  eval_episodes: int = 10

  @property
  def seeds(self) -> Tuple[int, ...]:
    return tuple(range(self.seed, self.seed + self.num_seeds))


def define_flags(*, num_steps: int, num_seeds: int, eval_every: Optional[int]) -> None:
  """The Budget flags with a script's defaults. Call only from a script's __main__ block."""
  from absl import flags
  flags.DEFINE_integer("num_steps", num_steps, "Gradient steps per run.")
  flags.DEFINE_integer("steps_per_chunk", 1000, "Steps per compiled chunk (and training log).")
  flags.DEFINE_integer("num_seeds", num_seeds, "Seeds, vmapped in one program.")
  flags.DEFINE_integer("seed", 0, "First seed: seeds seed, ..., seed+num_seeds-1 train.")
  flags.DEFINE_integer("hidden", 64, "Width of the two hidden layers of actor and critics.")
  flags.DEFINE_integer("batch_size", 256, "Batch size.")
  flags.DEFINE_float("cql_weight", 5.0, "α of Eq. 4 for the CQL methods.")
  flags.DEFINE_float("actor_lr", 3e-4, "Actor learning rate.")
  flags.DEFINE_integer("eval_every", eval_every, "Gradient steps between evaluations (a multiple "
                       "of --steps_per_chunk); unset: only at the end.")
  flags.DEFINE_integer("eval_episodes", 10, "Evaluation episodes per seed.")
  flags.DEFINE_bool("write_results", False, "Write the table into RESULTS.md.")
  flags.DEFINE_string("results", "RESULTS.md", "Results file.")
  flags.DEFINE_bool("library_logs", False, logs.FLAG_HELP)


def from_flags(flag_values) -> Budget:
  names = [f.name for f in dataclasses.fields(Budget)]
  return Budget(**{n: flag_values[n].value for n in names})


def agent_config(budget: Budget) -> ml_collections.ConfigDict:
  """base.short_budget_agent_config(hidden) with the budget's actor lr and CQL weight."""
  from cql_jax.configs import base
  config = base.short_budget_agent_config(budget.hidden)
  config.actor_lr = budget.actor_lr
  config.cql.weight = budget.cql_weight
  return config


def run_config(domain_config: ml_collections.ConfigDict, agent: ml_collections.ConfigDict,
               budget: Budget) -> ml_collections.ConfigDict:
  """The domain's runner config (dataset, reward transform, evaluation) with `agent` and the
  budget's schedule; checkpoints at every evaluation so a stopped sweep resumes where it was."""
  config = domain_config.copy_and_resolve_references()
  eval_every = budget.eval_every or budget.num_steps
  with config.unlocked():
    config.agent = ml_collections.ConfigDict(agent)
  config.num_steps = budget.num_steps
  config.steps_per_chunk = budget.steps_per_chunk
  config.batch_size = budget.batch_size
  config.eval_every = eval_every
  config.checkpoint_every = eval_every
  config.keep_checkpoints = 1
  config.eval_episodes = budget.eval_episodes
  config.lock()
  return config


def finished_results(workdir, config: ml_collections.ConfigDict, seeds) -> Optional[dict]:
  """results.json of a finished run of exactly this config and these seeds in `workdir`, or None."""
  from cql_jax import runner  # local: a script's --help stays free of JAX.
  workdir = pathlib.Path(workdir)
  try:
    saved = json.loads((workdir / runner.CONFIG_FILE).read_text())
    results = json.loads((workdir / runner.RESULTS_FILE).read_text())
  except FileNotFoundError:
    return None
  same = (saved.get("sweep") is None and saved["seeds"] == list(seeds)
          and saved["config"] == json.loads(config.to_json_best_effort()))
  return results if same and results["num_steps"] == config.num_steps else None


def run_results(config: ml_collections.ConfigDict, workdir, seeds) -> dict:
  """results.json of this run: the finished one in `workdir` if there is one, else trained (or
  resumed) now."""
  results = finished_results(workdir, config, seeds)
  return train(config, workdir, seeds).results if results is None else results


def train(config: ml_collections.ConfigDict, workdir, seeds, progress: bool = False
          ) -> runner.RunResult:
  """runner.train_and_evaluate, resuming whatever `workdir` holds of this run.

  A finished run is not retrained (its final state is restored from the last checkpoint); one
  with more steps asked is trained on; one with other settings is refused with the differences.
  """
  from cql_jax import runner
  return runner.train_and_evaluate(config, workdir, seeds, resume=True, progress=progress)
