"""The PointMaze sparse-reward maker: its maze geometry against Gymnasium-Robotics' own, its
shortest paths against paths traced by hand on the U-maze, its expert against the environment's
reward, and a dataset of dict observations through the project's loader with the config's
reward transform and Cal-QL's failure return."""
import numpy as np
import pytest

from cql_jax.makers import pointmaze


def _maze_env():
  import gymnasium as gym
  import gymnasium_robotics
  gym.register_envs(gymnasium_robotics)
  return gym.make(pointmaze.ENV_ID)


def test_maze_and_cells_match_gymnasium_robotics():
  env = _maze_env()
  maze = env.unwrapped.maze
  np.testing.assert_array_equal(np.array(maze.maze_map), pointmaze.MAZE)
  assert maze.maze_size_scaling == 1.0
  rows, cols = np.nonzero(np.ones_like(pointmaze.MAZE))
  centres = pointmaze.cell_centre(rows, cols)
  theirs = np.array([maze.cell_rowcol_to_xy(np.array([r, c])) for r, c in zip(rows, cols)])
  np.testing.assert_allclose(centres, theirs, atol=1e-6)
  # Points anywhere inside a cell (not only its centre) map back to it.
  rng = np.random.default_rng(0)
  inside = centres + rng.uniform(-0.49, 0.49, centres.shape)
  np.testing.assert_array_equal(np.stack(pointmaze.cell_of(inside)), np.stack([rows, cols]))
  env.close()


def test_next_cells_follow_the_u_by_hand():
  # The U-maze's open cells, traced by hand: top row (1,1)-(1,2)-(1,3), down through (2,3), bottom
  # row (3,3)-(3,2)-(3,1). The only path between the two arms goes round the U.
  path = [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3), (3, 2), (3, 1)]
  for i, start in enumerate(path):
    for j, goal in enumerate(path):
      expected = start if i == j else path[i + (1 if j > i else -1)]
      assert tuple(pointmaze._NEXT[start + goal]) == expected, (start, goal)


def test_expert_reaches_every_goal_and_random_rarely_does():
  from cql_jax.makers import generate
  rng = np.random.default_rng(1)
  expert = generate.rollout_episodes(pointmaze.ENV_ID, pointmaze.expert_policy, 8, rng=rng)
  random = generate.rollout_episodes(pointmaze.ENV_ID, pointmaze.random_policy, 8, rng=rng)
  for ep in expert:
    # The environment's own reward: 1 within 0.45 m of the goal. Every episode gets there, and
    # from its first reward on it stays (the reward is 1 at every later step but a few).
    rewards = np.asarray(ep.rewards)
    assert rewards.shape == (300,) and rewards.sum() > 0, rewards.sum()
    first = int(np.argmax(rewards > 0))
    assert rewards[first:].mean() > 0.95, (first, rewards[first:].mean())
    dist = np.linalg.norm(ep.observations["achieved_goal"][1:] - ep.observations["desired_goal"][1:],
                          axis=-1)
    np.testing.assert_array_equal(rewards > 0, dist <= 0.45)
  expert_return = np.mean([np.sum(ep.rewards) for ep in expert])
  random_return = np.mean([np.sum(ep.rewards) for ep in random])
  assert expert_return > 200 and random_return < 0.25 * expert_return, (expert_return,
                                                                        random_return)


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
  """(config, dataset) of a 4-episode medium dataset made in the module's own Minari root."""
  from cql_jax import runner
  from cql_jax.configs import base, pointmaze as pointmaze_config
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
    config = base.override(pointmaze_config.get_config("medium"), {
        "generation.num_episodes": 4, "generation.ref_episodes": 2})
    yield config, runner.load_data(config)


def test_dataset_loads_with_the_sparse_transform_and_failure_return(medium):
  from cql_jax.data import returns
  config, dataset = medium
  t = dataset.transitions
  assert t.obs.shape == (4 * 300, 6)
  # The loader's [x, y, vx, vy, gx, gy] is the stored dict's "observation" then "desired_goal".
  import minari
  stored = list(minari.load_dataset(config.dataset_id).iterate_episodes())
  first = np.concatenate([stored[0].observations["observation"][:300],
                          stored[0].observations["desired_goal"][:300]], axis=-1)
  np.testing.assert_allclose(t.obs[:300], first, rtol=0, atol=1e-6)
  raw = np.concatenate([np.asarray(ep.rewards) for ep in stored])
  assert set(np.unique(raw)) <= {0.0, 1.0}
  # Cal-QL's reference value with the config's transform, against a hand computation per episode.
  scaled = raw * 10.0 - 5.0
  g = returns.return_to_go(t._replace(reward=scaled.astype(np.float32)), 0.99, -5.0)
  failed = [bool(np.all(scaled[300 * e:300 * (e + 1)] == -5.0)) for e in range(len(stored))]
  assert any(failed) and not all(failed), failed  # both cases of the reference value are checked
  for e, ep in enumerate(stored):
    r = scaled[300 * e:300 * (e + 1)]
    if np.all(r == -5.0):
      expected = np.full(300, -5.0 / (1 - 0.99))
    else:
      expected = np.array([sum(r[k] * 0.99 ** (k - i) for k in range(i, 300)) for i in range(300)])
    np.testing.assert_allclose(g[300 * e:300 * (e + 1)], expected, rtol=1e-6)  # float32


def test_unknown_variant_is_refused_with_the_kinds():
  from cql_jax.configs import pointmaze as pointmaze_config
  with pytest.raises(ValueError, match="medium-replay"):
    pointmaze_config.get_config("hard")


def test_online_env_flattens_dict_observations_with_same_step_autoreset(medium):
  # Online fine-tuning steps the evaluation env with SAME_STEP autoreset, which Gymnasium's own
  # observation wrappers refuse; the final observation of a finished episode stays a dict in info.
  import gymnasium as gym
  from cql_jax import evaluation, finetune
  _, dataset = medium
  env = evaluation.make_eval_env(dataset, 2, {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
  raw = env.unwrapped
  obs, _ = env.reset(seed=[0, 1])
  assert obs.shape == (2, 6) and obs.dtype == np.float32
  for _ in range(300):
    obs, _, terminated, truncated, info = env.step(np.zeros((2, 2), np.float32))
    inner = raw._observations  # the unwrapped vector env's dict batch, reset rows included
    np.testing.assert_allclose(obs, np.concatenate([inner["observation"], inner["desired_goal"]],
                                                   axis=-1), atol=1e-6)
  assert truncated.all() and not terminated.any()  # 300 steps: both episodes end together.
  final = finetune._true_next_obs(info, obs, dataset.obs_keys)
  for i in range(2):
    expected = np.concatenate([info["final_obs"][i]["observation"],
                               info["final_obs"][i]["desired_goal"]])
    np.testing.assert_allclose(final[i], expected, atol=1e-6)
  assert not np.allclose(final, obs)  # the reset observation was replaced.
  env.close()
