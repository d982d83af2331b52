"""The shared rollout loop against independent single-environment rollouts."""
import gymnasium as gym
import jax
import numpy as np
import pytest

from cql_jax import evaluation
from cql_jax import rollout
from cql_jax.makers import generate
from cql_jax.makers import pendulum


def _single_env_episode(env_id, policy, seed):
  """One episode in its own gym.make env, stepped by hand (the independent reference)."""
  env = gym.make(env_id)
  obs, _ = env.reset(seed=seed)
  observations, actions, rewards, terms, truncs = [np.asarray(obs, np.float32)], [], [], [], []
  while True:
    action = policy(np.asarray(obs, np.float32)[None])[0]
    obs, reward, term, trunc, _ = env.step(action)
    observations.append(np.asarray(obs, np.float32))
    actions.append(action)
    rewards.append(reward)
    terms.append(term)
    truncs.append(trunc)
    if term or trunc:
      env.close()
      return (np.stack(observations), np.stack(actions), np.asarray(rewards, np.float64),
              np.asarray(terms), np.asarray(truncs))


@pytest.mark.parametrize("active_only", [True, False])
def test_more_episodes_than_copies_match_single_env_rollouts(active_only):
  # CartPole episodes have different lengths, so copies finish at different times and the
  # loop must hand each finished copy the next seed.
  seeds = [11, 3, 250, 7, 42, 5, 9]
  # Deterministic; push toward the pole's angular velocity: 150-250-step episodes.
  policy = lambda obs: (obs[:, 3] > 0).astype(np.int64)
  env = gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
  records = rollout.run_episodes(env, policy, seeds, record=True, active_only=active_only,
                                 obs_transform=lambda o: np.asarray(o, np.float32))
  env.close()
  assert [r.seed for r in records] == seeds
  assert len({r.length for r in records}) == len(seeds)  # copies finish at different steps.
  for record, seed in zip(records, seeds):
    obs, act, rew, term, trunc = _single_env_episode("CartPole-v1", policy, seed)
    np.testing.assert_array_equal(record.observations, obs)
    np.testing.assert_array_equal(record.actions, act)
    np.testing.assert_array_equal(record.rewards, rew)
    np.testing.assert_array_equal(record.terminations, term)
    np.testing.assert_array_equal(record.truncations, trunc)
    assert record.finished and record.length == len(rew)


def test_active_only_policy_sees_running_copies_only():
  sizes = []

  def policy(obs):
    sizes.append(obs.shape[0])
    return np.ones(obs.shape[0], np.int64)  # always push right: short, unequal episodes.

  env = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
  records = rollout.run_episodes(env, policy, [0, 1, 2, 3, 4], active_only=True)
  env.close()
  total_steps = sum(r.length for r in records)
  assert sum(sizes) == total_steps  # one policy row per recorded step, no idle rows.
  assert sizes[0] == 4 and sizes[-1] < 4


def test_max_steps_returns_unfinished_episodes():
  env = gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync")
  records = rollout.run_episodes(env, lambda obs: np.zeros((obs.shape[0], 1), np.float32),
                                 [0, 1, 2], max_steps=5)
  env.close()
  assert len(records) == 2  # the third episode never started.
  assert [r.length for r in records] == [5, 5] and not any(r.finished for r in records)


def test_refuses_other_autoreset_modes():
  env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync",
                     vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
  with pytest.raises(ValueError, match="NEXT_STEP"):
    rollout.run_episodes(env, lambda obs: np.zeros(obs.shape[0], np.int64), [0, 1, 2])
  env.close()


def test_generate_and_evaluate_share_the_loop_results():
  """Makers' episodes and evaluation scores recomputed from single-env rollouts."""
  rng = np.random.default_rng(0)
  episodes = generate.rollout_episodes("Pendulum-v1", pendulum.expert_policy, 3, rng=rng,
                                       seeds=[5, 6, 7], batch_size=2)
  for ep, seed in zip(episodes, [5, 6, 7]):
    obs, act, rew, _, _ = _single_env_episode("Pendulum-v1", pendulum.expert_policy, seed)
    np.testing.assert_array_equal(ep.observations, obs)
    np.testing.assert_array_equal(ep.actions, act)
    np.testing.assert_array_equal(np.asarray(ep.rewards), rew)

  gamma = 0.9
  result = evaluation.evaluate(lambda obs, key: pendulum.expert_policy(np.asarray(obs)),
                               "Pendulum-v1", num_episodes=3, seed=20, gamma=gamma)
  for i in range(3):  # evaluation resets slot i with seed + i.
    _, _, rew, _, _ = _single_env_episode("Pendulum-v1", pendulum.expert_policy, 20 + i)
    assert result.returns[i] == pytest.approx(rew.sum(), rel=1e-12)
    assert result.discounted_returns[i] == pytest.approx(
        sum(gamma**t * r for t, r in enumerate(rew)), rel=1e-12)
    assert result.lengths[i] == 200


def test_evaluate_flattens_dict_observations():
  """A dict-observation env: the policy receives the loaders' flattening of each batch."""
  seen = []

  def policy(obs, key):
    del key
    seen.append(obs)
    return np.zeros((obs.shape[0], 1), np.float32)

  def make_env(n):
    def one():
      env = gym.make("Pendulum-v1", max_episode_steps=3)
      space = gym.spaces.Dict({"b": gym.spaces.Box(-np.inf, np.inf, (1,), np.float32),
                               "a": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)})
      return gym.wrappers.TransformObservation(
          env, lambda o: {"a": o[:2], "b": o[2:]}, space)
    return gym.vector.SyncVectorEnv([one] * n)

  result = evaluation.evaluate(policy, num_episodes=2, seed=0, make_env=make_env,
                               obs_keys=("b", "a"), key=jax.random.key(0))
  assert result.lengths.tolist() == [3, 3]
  first = seen[0]
  raw = np.stack([gym.make("Pendulum-v1").reset(seed=s)[0] for s in (0, 1)])
  np.testing.assert_array_equal(first, np.concatenate([raw[:, 2:], raw[:, :2]], axis=1))
