"""Learning to a score: CQL(H) on the project's Pendulum medium-expert data."""
import numpy as np
import pytest

from experiments import demo


@pytest.mark.slow
def test_cql_reaches_60_on_pendulum_medium_expert():
  per_seed, data_score = demo.run("medium-expert", steps=demo.DEFAULT_STEPS, num_seeds=2,
                                  hidden=64, eval_episodes=20)
  print(f"\nCQL(H) pendulum medium-expert: {per_seed.mean():.1f} ± {per_seed.std():.1f} "
        f"(seeds {np.round(per_seed, 1).tolist()}); dataset average {data_score:.1f}")
  assert per_seed.mean() >= 60.0, per_seed
