"""`make demo`: CQL(H) on the project's own Pendulum medium-expert data, offline, in minutes.

Makes the Pendulum datasets if absent (scripted behaviour policies written in the Minari
format), trains CQL with vmapped seeds, and prints CQL's normalized score next to the
dataset's own average score.
"""
from __future__ import annotations

import time

from absl import app
from absl import flags
import numpy as np

from cql_jax import agents
from cql_jax import evaluation
from cql_jax import scores
from cql_jax import train
from cql_jax.data import minari_io
from cql_jax.makers import pendulum
from cql_jax.configs import classic

DEFAULT_STEPS = 8_000
FLAGS = flags.FLAGS


def define_flags() -> None:
  """Called only when run as a script, so importing demo (tests do) defines no flags."""
  flags.DEFINE_enum("kind", "medium-expert", list(pendulum.KINDS), "Pendulum dataset kind.")
  flags.DEFINE_integer("steps", DEFAULT_STEPS, "Gradient steps.")
  flags.DEFINE_integer("seeds", 2, "Seeds trained together (vmapped).")
  flags.DEFINE_integer("hidden", 64, "Width of the two hidden layers of actor and critics.")
  flags.DEFINE_integer("eval_episodes", 20, "Evaluation episodes per seed.")


def run(kind: str, steps: int, num_seeds: int, hidden: int, eval_episodes: int, log=print):
  """Trains and evaluates; returns (per-seed normalized scores [S], dataset's normalized score)."""
  pendulum.ensure_pendulum_datasets()
  dataset = minari_io.load_dataset(pendulum.dataset_id(kind))
  agent = agents.make_agent(classic.pendulum_agent_config(hidden), dataset)
  data = agents.device_data(dataset)
  start = time.time()

  def on_chunk(step, state, metrics):
    log(f"step {step:6d}  {step / (time.time() - start):6.0f} steps/s  "
        f"bellman {float(np.mean(metrics['critic/bellman_error'])):.3f}  "
        f"cql gap {float(np.mean(metrics['cql/gap'])):.3f}")

  states = train.fit(agent, data, seed=0, num_steps=steps, steps_per_chunk=min(1000, steps),
                     num_seeds=num_seeds, on_chunk=on_chunk)
  per_seed = np.array([
      evaluation.evaluate_agent(agent, evaluation.seed_state(states, i), dataset,
                                num_episodes=eval_episodes, seed=1000 + i).mean_normalized
      for i in range(num_seeds)])
  data_score = float(np.mean(scores.normalized_score(
      dataset.episode_returns, dataset.ref_min_score, dataset.ref_max_score)))
  return per_seed, data_score


def main(argv):
  del argv
  per_seed, data_score = run(FLAGS.kind, FLAGS.steps, FLAGS.seeds, FLAGS.hidden,
                             FLAGS.eval_episodes)
  print(f"\nDataset cql_jax/pendulum/{FLAGS.kind}-v0")
  print(f"  dataset average score : {data_score:6.1f} (normalized)")
  print(f"  CQL(H) score          : {per_seed.mean():6.1f} ± {per_seed.std():.1f} "
        f"over {len(per_seed)} seeds ({', '.join(f'{s:.1f}' for s in per_seed)})")


if __name__ == "__main__":
  define_flags()
  app.run(main)
