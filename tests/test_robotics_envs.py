"""Gymnasium-Robotics environments: observation flattening, start-up checks, tiny Minari datasets."""
import warnings

import numpy as np
import pytest

from cql_jax.data import observations
from cql_jax.envs import robotics

pytest.importorskip("gymnasium_robotics")
gym = pytest.importorskip("gymnasium")
minari = pytest.importorskip("minari")

D4RL_ANTMAZE_KEYS = ("achieved_goal", "observation")  # D4RL's 29-d [x, y, qpos[2:], qvel]


# ------------------------------------------------------------------ flatten_observation

def test_flatten_single_and_batched_dicts():
  single = {"observation": np.arange(3.0), "achieved_goal": np.array([10.0, 11.0]),
            "desired_goal": np.array([20.0, 21.0])}
  got = observations.flatten_observations(single, ("achieved_goal", "observation"), batch_ndim=0)
  np.testing.assert_array_equal(got, [10, 11, 0, 1, 2])
  assert got.dtype == np.float32
  # Default: every key, sorted.
  np.testing.assert_array_equal(observations.flatten_observations(single, batch_ndim=0),
                                [10, 11, 20, 21, 0, 1, 2])
  batched = {k: np.stack([v, v + 100]) for k, v in single.items()}
  got = observations.flatten_observations(batched, ("observation", "desired_goal"))
  np.testing.assert_array_equal(got, [[0, 1, 2, 20, 21], [100, 101, 102, 120, 121]])


def test_flatten_nested_dicts_and_arrays():
  """Kitchen-like: nested goal dicts are flattened with sorted keys; arrays just reshaped."""
  obs = {"observation": np.zeros((2, 3)),
         "desired_goal": {"microwave": np.full((2, 1), 5.0), "kettle": np.full((2, 2), 7.0)}}
  got = observations.flatten_observations(obs, ("desired_goal", "observation"))
  np.testing.assert_array_equal(got, [[7, 7, 5, 0, 0, 0]] * 2)
  frames = np.arange(24).reshape(2, 3, 4)
  np.testing.assert_array_equal(observations.flatten_observations(frames), frames.reshape(2, 12))


def test_flatten_errors_name_the_problem():
  obs = {"observation": np.zeros((2, 3)), "desired_goal": np.zeros((2, 2))}
  with pytest.raises(observations.ObservationError, match=r"\['achieved_goal'\].*'desired_goal'"):
    observations.flatten_observations(obs, ("achieved_goal",))
  with pytest.raises(observations.ObservationError, match="set obs_keys to None"):
    observations.flatten_observations(np.zeros((2, 3)), ("observation",))
  with pytest.raises(observations.ObservationError, match="different lengths"):
    observations.flatten_observations({"a": np.zeros((2, 3)), "b": np.zeros((3, 3))})
  with pytest.raises(observations.ObservationError, match="empty"):
    observations.flatten_observations(obs, ())


# ------------------------------------------------------------------ real environments

@pytest.mark.parametrize("env_id,kwargs,sizes", [
    ("AntMaze_UMaze-v4", {}, {"observation": 27, "achieved_goal": 2, "desired_goal": 2}),
    ("AntMaze_UMaze-v5", {}, {"observation": 105, "achieved_goal": 2, "desired_goal": 2}),
    ("AntMaze_UMaze-v5", {"include_cfrc_ext_in_observation": False},
     {"observation": 27, "achieved_goal": 2, "desired_goal": 2}),
    ("AdroitHandPen-v1", {}, 45),
    ("AdroitHandDoor-v1", {}, 39),
])
def test_environments_build_and_have_their_documented_sizes(env_id, kwargs, sizes):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    check = robotics.check_environment(env_id, kwargs)
  space = check.observation_space
  if isinstance(sizes, dict):
    assert {k: int(np.prod(s.shape)) for k, s in space.spaces.items()} == sizes
  else:
    assert space.shape == (sizes,)
  assert check.spec.id == env_id and all(check.spec.kwargs[k] == v for k, v in kwargs.items())


def test_antmaze_flattened_batch_is_d4rl_layout():
  """A vector env's dict batch: [x, y] (the torso position qpos[:2]) then the 27-d observation."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    robotics.register_robotics_envs()
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("AntMaze_UMaze-v4")] * 2)
    try:
      envs.reset(seed=[0, 1])
      obs, *_ = envs.step(envs.action_space.sample())
      flat = observations.flatten_observations(obs, D4RL_ANTMAZE_KEYS)
      assert flat.shape == (2, 29)
      for i, env in enumerate(envs.envs):
        data = env.unwrapped.ant_env.data
        np.testing.assert_allclose(flat[i], np.concatenate([data.qpos, data.qvel]), rtol=1e-6)
    finally:
      envs.close()
  assert observations.flat_size(envs.single_observation_space, D4RL_ANTMAZE_KEYS) == 29


def test_kitchen_builds_on_the_installed_mujoco():
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    check = robotics.check_environment("FrankaKitchen-v1")
  assert check.observation_space["observation"].shape == (59,)
  assert check.action_space.shape == (9,) and check.spec.max_episode_steps == 280
  # The fix is in place exactly when gymnasium-robotics' own accessor fails here.
  assert robotics.joint_getters_patched() == robotics.joint_getters_fail()
  if not robotics.mujoco_enums_compare_with_numpy():
    assert robotics.joint_getters_patched()


def test_joint_accessors_agree_with_mujocos_named_access():
  """On Kitchen's model (hinge, slide and one free joint), after random steps, every joint's
  qpos/qvel read through gymnasium-robotics' accessors equals MuJoCo's own `data.joint(name)`;
  a hinge set through the setter lands where MuJoCo reads it."""
  from gymnasium_robotics.utils import mujoco_utils
  import mujoco
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    robotics.register_robotics_envs()
    env = gym.make("FrankaKitchen-v1")
  try:
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(5):
      env.step(env.action_space.sample())
    model, data = env.unwrapped.robot_env.model, env.unwrapped.robot_env.data
    kinds = set()
    for joint in range(model.njnt):
      name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint)
      kinds.add(int(model.jnt_type[joint]))
      np.testing.assert_array_equal(mujoco_utils.get_joint_qpos(model, data, name),
                                    data.joint(name).qpos)
      np.testing.assert_array_equal(mujoco_utils.get_joint_qvel(model, data, name),
                                    data.joint(name).qvel)
    assert kinds == {int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE),
                     int(mujoco.mjtJoint.mjJNT_FREE)}
    hinge = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, 0)
    mujoco_utils.set_joint_qpos(model, data, hinge, 0.123)
    mujoco_utils.set_joint_qvel(model, data, hinge, -0.5)
    assert data.joint(hinge).qpos[0] == 0.123 and data.joint(hinge).qvel[0] == -0.5
  finally:
    env.close()


def test_joint_patch_stays_out_when_the_library_works(monkeypatch):
  """A gymnasium-robotics whose accessors work (simulated) is left untouched; the one installed
  here fails the probe exactly when MuJoCo's enums break `in`, and the error for an environment
  built without the fix names the cause and both ways out."""
  from gymnasium_robotics.utils import mujoco_utils
  working = {name: (lambda model, data, name, *value: None) for name in robotics._JOINT_FUNCTIONS}
  for name, function in working.items():
    monkeypatch.setattr(mujoco_utils, name, function)
  assert not robotics.joint_getters_fail()
  assert not robotics.patch_joint_getters() and not robotics.joint_getters_patched()
  assert all(getattr(mujoco_utils, name) is f for name, f in working.items())
  monkeypatch.undo()

  robotics.patch_joint_getters()
  original = getattr(mujoco_utils.get_joint_qpos, "cql_jax_original", mujoco_utils.get_joint_qpos)
  assert robotics.joint_getters_fail() == (not robotics.mujoco_enums_compare_with_numpy())
  if robotics.joint_getters_fail():
    import mujoco
    model = mujoco.MjModel.from_xml_string(robotics._PROBE_XML)
    with pytest.raises(AssertionError) as raised:
      original(model, mujoco.MjData(model), "probe")
    message = str(robotics.diagnose_build_failure("FrankaKitchen-v1", raised.value))
    assert "jnt_type" in message and "patch_joint_getters" in message
    assert f"mujoco<={robotics.LAST_GOOD_MUJOCO}" in message


def test_unknown_environment_is_refused_with_its_id():
  with pytest.raises(robotics.EnvironmentUnavailable, match="NoSuchEnv"):
    robotics.check_environment("NoSuchEnv-v0")


def test_layout_mismatch_names_the_key():
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    v4 = robotics.check_environment("AntMaze_UMaze-v4").observation_space
    v5 = robotics.check_environment("AntMaze_UMaze-v5").observation_space
  observations.check_layout(v4, v4, D4RL_ANTMAZE_KEYS)
  assert observations.flat_size(v4, D4RL_ANTMAZE_KEYS) == 29
  with pytest.raises(observations.ObservationError, match=r"observation 'observation'.*\(27,\).*\(105,\)"):
    observations.check_layout(v4, v5, D4RL_ANTMAZE_KEYS, dataset_name="D", env_name="E")
  with pytest.raises(observations.ObservationError, match="'goal'"):
    observations.check_layout(v4, v4, ("goal",))


# ------------------------------------------------------------------ tiny Minari datasets

@pytest.mark.parametrize("env_id,keys,flat", [
    ("AntMaze_UMaze-v4", D4RL_ANTMAZE_KEYS, 29),
    ("AdroitHandPen-v1", None, 45),
    ("AdroitHandDoor-v1", None, 39),
])
def test_recorded_dataset_loads_and_recovers_its_env(tmp_path, monkeypatch, env_id, keys, flat):
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
  dataset_id = f"cql_jax/{env_id.split('-')[0].lower()}/tiny-v0"
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    robotics.record_minari_dataset(dataset_id, env_id, num_episodes=2, max_episode_steps=6,
                                   ref_min_score=0.0, ref_max_score=1.0)
    dataset = minari.load_dataset(dataset_id)
    episodes = list(dataset.iterate_episodes())
    assert len(episodes) == 2 and dataset.total_steps == 12
    for episode in episodes:
      assert episode.actions.shape[0] == 6 and bool(episode.truncations[-1])
      if keys is None:
        assert episode.observations.shape == (7, flat)
      else:
        assert sorted(episode.observations) == ["achieved_goal", "desired_goal", "observation"]
        assert episode.observations["observation"].shape == (7, 27)
        assert episode.observations["achieved_goal"].shape == (7, 2)
      assert observations.flatten_observations(episode.observations, keys).shape == (7, flat)
    check = robotics.recover_eval_env_spec(dataset)
    assert check.spec.id == env_id and check.spec.max_episode_steps == 6
    observations.check_layout(dataset.observation_space, check.observation_space, keys,
                              dataset_name=dataset_id, env_name=env_id)
    assert observations.flat_size(dataset.observation_space, keys) == flat
    with pytest.raises(ValueError, match="exists already"):
      robotics.record_minari_dataset(dataset_id, env_id, num_episodes=1, max_episode_steps=2)
