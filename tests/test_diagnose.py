"""The diagnosis script's return bookkeeping, against returns summed by hand."""
import numpy as np

from cql_jax.types import Transition
from experiments import diagnose


def _two_episodes():
  # Episode A: 3 steps, truncated (discount stays 1); episode B: 2 steps, terminated.
  obs = np.array([[0.], [1.], [2.], [10.], [11.]], np.float32)
  next_obs = np.array([[1.], [2.], [3.], [11.], [12.]], np.float32)
  reward = np.array([1., 2., 3., 5., 7.], np.float32)
  discount = np.array([1., 1., 1., 1., 0.], np.float32)
  return Transition(obs=obs, action=np.zeros(5, np.int32), reward=reward, discount=discount,
                    next_obs=next_obs)


def test_episode_bounds_split_at_observation_jumps_and_terminations():
  np.testing.assert_array_equal(diagnose.episode_bounds(_two_episodes()), [0, 3])


def test_discounted_returns_from_each_first_step():
  g = 0.9
  got = diagnose.data_discounted_returns(_two_episodes(), g)
  np.testing.assert_allclose(got, [1 + 2 * g + 3 * g * g, 5 + 7 * g], rtol=1e-6)


def test_truncated_returns_interpolate_between_horizons():
  g = 0.5
  a = [0., 1., 1 + 2 * g, 1 + 2 * g + 3 * g ** 2]      # episode A after k = 0..3 steps
  b = [0., 5., 5 + 7 * g, 5 + 7 * g]                   # episode B (2 steps, then constant)
  got = diagnose.data_truncated_returns(_two_episodes(), g, np.array([0., 1., 2., 2.5, 10.]))
  want = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2, (a[2] + b[2]) / 2,
          ((a[2] + a[3]) / 2 + b[2]) / 2, (a[3] + b[3]) / 2]
  np.testing.assert_allclose(got, want, rtol=1e-6)
