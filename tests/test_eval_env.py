"""Evaluation environments: recovered from the dataset, same observation transform, start-up checks."""
import dataclasses
import warnings

import gymnasium as gym
import jax
import minari
import numpy as np
import pytest

from cql_jax import agents
from cql_jax import evaluation
from cql_jax import runner
from cql_jax import scores
from cql_jax.configs import antmaze as antmaze_config
from cql_jax.configs import base
from cql_jax.continuous.agent import default_config
from cql_jax.data import minari_io
from cql_jax.data import npz
from cql_jax.data.errors import DatasetError

ANT_KEYS = ("achieved_goal", "observation", "desired_goal")
STEPS = 12  # episode cap of the tiny AntMaze dataset (part of its stored spec)


@pytest.fixture(scope="module")
def antmaze(tmp_path_factory):
  """A 2-episode random-policy dataset recorded with Minari's DataCollector from AntMaze_UMaze-v4."""
  robotics = pytest.importorskip("gymnasium_robotics")
  gym.register_envs(robotics)
  root = tmp_path_factory.mktemp("minari")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    env = minari.DataCollector(gym.make("AntMaze_UMaze-v4", max_episode_steps=STEPS),
                               record_infos=False)
    env.action_space.seed(0)
    for episode in range(2):
      env.reset(seed=episode)
      done = False
      while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # no author e-mail or code permalink, on purpose.
      env.create_dataset(dataset_id="test/antmaze-v0", algorithm_name="random",
                         eval_env=gym.make("AntMaze_UMaze-v4", max_episode_steps=STEPS).spec,
                         ref_min_score=0.0, ref_max_score=1.0)
    env.close()
    yield "test/antmaze-v0"


def _tiny_agent(dataset):
  config = default_config()
  config.actor_hidden_sizes = config.critic_hidden_sizes = (8,)
  return agents.make_agent(config, dataset)


def test_dict_observation_dataset_trains_and_evaluates_in_its_recovered_env(antmaze):
  dataset = minari_io.load_dataset(antmaze, obs_keys=ANT_KEYS)
  recovered = minari.load_dataset(antmaze).recover_environment(eval_env=True)
  assert gym.make(dataset.env_spec).spec == recovered.spec  # Minari's own evaluation env.
  space = recovered.observation_space
  recovered.close()
  assert dataset.obs_keys == ANT_KEYS == tuple(antmaze_config.get_config("umaze").data.obs_keys)
  # The agent sees where the ant is: the first two features are the torso's x, y.
  episode = next(minari.load_dataset(antmaze).iterate_episodes())
  np.testing.assert_array_equal(dataset.transitions.obs[:STEPS, :2],
                                episode.observations["achieved_goal"][:-1].astype(np.float32))
  assert dataset.obs_dim == 2 + 27 + 2 == sum(space[k].shape[0] for k in ANT_KEYS)
  check = evaluation.check_eval_env(dataset)
  assert check.env_name == "AntMaze_UMaze-v4"

  # The evaluator's vector env flattens exactly like the loader: slot i of a seeded reset equals
  # the loader's flattening of a single env reset with the same seed.
  env = evaluation.make_eval_env(dataset, 2)
  obs, _ = env.reset(seed=[5, 6])
  env.close()
  assert obs.shape == (2, dataset.obs_dim) and obs.dtype == np.float32
  single = gym.make(dataset.env_spec)
  for i, seed in enumerate((5, 6)):
    raw, _ = single.reset(seed=seed)
    expected = np.concatenate([raw[k] for k in ANT_KEYS]).astype(np.float32)
    np.testing.assert_array_equal(obs[i], expected)
  single.close()

  agent = _tiny_agent(dataset)
  state = agent.init(jax.random.key(0))
  result = evaluation.evaluate_agent(agent, state, dataset, num_episodes=2, seed=0)
  assert result.lengths.tolist() == [STEPS, STEPS] and np.all(np.isfinite(result.returns))
  assert result.normalized is not None
  # The runner's evaluator (S seeds x episodes in one vector env) on the same data.
  evaluate = runner.make_evaluator(agent, dataset, num_seeds=2, num_episodes=2, gamma=0.99)
  out = evaluate(jax.vmap(agent.init)(jax.random.split(jax.random.key(1), 2)), 0)
  assert out["eval/return"].shape == (2,) and np.all(out["eval/length"] == STEPS)


def test_layout_mismatch_names_the_key_and_shapes(antmaze):
  dataset = minari_io.load_dataset(antmaze, obs_keys=ANT_KEYS)
  # AntMaze v5 adds contact forces: a 105-d `observation` against the data's 27-d one.
  v5 = dataclasses.replace(dataset, env_spec=gym.spec("AntMaze_UMaze-v5"))
  with pytest.raises(DatasetError, match=r"observation 'observation'.*\(27,\).*\(105,\)"):
    evaluation.check_eval_env(v5)
  with pytest.raises(DatasetError, match="not in the observation dict"):
    minari_io.load_dataset(antmaze, obs_keys=("observation", "goal"))


def _npz(tmp_path, obs_dim, env_id, actions=None, **extra):
  rng = np.random.default_rng(0)
  steps = 6
  return npz.save_npz(
      tmp_path / f"{env_id}-{obs_dim}.npz", rng.standard_normal((steps + 1, obs_dim)),
      rng.uniform(-2, 2, (steps, 1)) if actions is None else actions, np.zeros(steps),
      np.zeros(steps, bool), np.eye(steps, dtype=bool)[-1], env_id=env_id, **extra)


def _config(path):
  config = base.get_config()
  config.dataset_path = str(path)
  return config


def test_startup_check_refuses_shapes_that_do_not_fit_the_env(tmp_path):
  with pytest.raises(DatasetError) as err:
    runner.load_data(_config(_npz(tmp_path, 4, "Pendulum-v1")))
  message = str(err.value)
  assert "4-d observations" in message and "Pendulum-v1 gives 3-d" in message
  assert "Train on a dataset recorded in Pendulum-v1" in message  # the fix.
  good = runner.load_data(_config(_npz(tmp_path, 3, "Pendulum-v1")))
  assert good.obs_dim == 3 and good.env_id == "Pendulum-v1"
  np.testing.assert_array_equal(good.action_high, [2.0])  # read from Pendulum's action space.

  with pytest.raises(DatasetError, match="2 discrete actions but Pendulum-v1 has action space Box"):
    runner.load_data(_config(_npz(tmp_path, 3, "Pendulum-v1", actions=np.array([0, 1] * 3),
                                  num_actions=2)))
  with pytest.raises(DatasetError, match=r"2-d actions but Pendulum-v1 takes 1-d"):
    runner.load_data(_config(_npz(tmp_path, 3, "Pendulum-v1", actions=np.zeros((6, 2)),
                                  action_low=[-2, -2], action_high=[2, 2])))
  with pytest.raises(DatasetError, match="the policy would act on the wrong scale"):
    runner.load_data(_config(_npz(tmp_path, 3, "Pendulum-v1", actions=np.zeros((6, 1)),
                                  action_low=[-1], action_high=[1])))


def test_env_that_cannot_be_built_or_is_missing(tmp_path):
  with pytest.raises(DatasetError, match="NoSuchEnv-v0.*(not registered|cannot be built)"):
    runner.load_data(_config(_npz(tmp_path, 3, "NoSuchEnv-v0", action_low=[-2],
                                  action_high=[2])))
  rng = np.random.default_rng(0)
  path = npz.save_npz(tmp_path / "noenv.npz", rng.standard_normal((4, 3)), np.zeros((3, 1)),
                      np.zeros(3), np.zeros(3, bool), [False, False, True])
  with pytest.raises(DatasetError, match="records no environment.*config.env_id"):
    runner.load_data(_config(path))
  # The config's environment is the fallback for data that records none.
  config = _config(path)
  config.env_id = "Pendulum-v1"
  assert runner.load_data(config).env_id == "Pendulum-v1"
  assert runner.load_data(config, check_env=False).size == 3


def test_minari_spec_wins_over_the_config_fallback(pendulum_minari_root):
  del pendulum_minari_root
  config = base.get_config()
  config.dataset_id = "cql_jax/pendulum/medium-v0"
  config.env_id = "CartPole-v1"  # only a fallback: the dataset's own spec is used.
  dataset = runner.load_data(config)
  assert dataset.env_spec.id == "Pendulum-v1" and dataset.env_spec.max_episode_steps == 200
  assert scores.dataset_score(dataset)["dataset/episodes"] == 4
