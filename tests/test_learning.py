"""Learning to a score: CQL(H) on the project's Pendulum medium-expert data, against the data's
own score (a mixed dataset: an offline learner that only copied it would score about its mean)."""
import numpy as np
import pytest

from experiments import demo


@pytest.mark.slow
def test_cql_beats_its_own_data_on_pendulum_medium_expert():
  per_seed, data_score = demo.run("medium-expert", steps=demo.DEFAULT_STEPS, num_seeds=2,
                                  hidden=64, eval_episodes=20)
  print(f"\nCQL(H) pendulum medium-expert: {per_seed.mean():.1f} ± {per_seed.std():.1f} "
        f"(seeds {np.round(per_seed, 1).tolist()}); dataset average {data_score:.1f}")
  # The bar is the dataset's mean normalized episode return, computed from its episodes by
  # demo.run; every seed must clear it, not just their mean.
  assert 0.0 < data_score < 100.0, data_score        # a mixed dataset, below its expert.
  assert per_seed.min() >= data_score, (per_seed, data_score)
