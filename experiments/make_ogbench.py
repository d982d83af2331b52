"""Makes an OGBench manipulation `play` dataset here, with OGBench's own oracles and settings.

  python -m experiments.make_ogbench --env=cube-single-v0                  # full size: 1000 episodes
  python -m experiments.make_ogbench --env=cube-single-v0 --num_episodes=60  # a small set
(cube-single's full size, 1.1M steps with the validation episodes, took 31 minutes on one core of
a 2-core CPU at 587 steps/s; 60 episodes take about 2 minutes.)

Writes cql_jax/<env>-play-v0.npz and its -val.npz under $OGBENCH_DATASETS_PATH (default
data/ogbench), in OGBench's file layout (cql_jax.makers.ogbench_play), then train on any of its
single-task ids, e.g. --config=cql_jax/configs/ogbench.py:cql_jax/cube-single-play-singletask-v0.
Prints the time taken and the steps per second, from which the full size's time follows.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("env", "cube-single-v0", "OGBench environment: cube-single-v0, cube-double-v0.")
flags.DEFINE_integer("num_episodes", None, "Training episodes (default: OGBench's full size).")
flags.DEFINE_integer("seed", 0, "Seeds NumPy (the oracles) and the first reset.")


def main(_):
  from cql_jax.makers import ogbench_play
  result = ogbench_play.make_play_dataset(FLAGS.env, FLAGS.num_episodes, seed=FLAGS.seed,
                                          progress=lambda line: print(line, flush=True))
  full = ogbench_play.FULL_SIZE.get(FLAGS.env, 1000) * 1.1 * ogbench_play.MAX_EPISODE_STEPS
  print(f"wrote {result['path']} ({result['transitions']} training transitions) and "
        f"{result['val_path']}: {result['steps']} environment steps in {result['seconds']:.0f} s, "
        f"{result['steps_per_second']:.0f} steps/s; OGBench's full size ({full:.0f} steps) would "
        f"take about {full / result['steps_per_second'] / 60:.0f} min at this rate.")


if __name__ == "__main__":
  app.run(main)
