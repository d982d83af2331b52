"""OGBench single-task data: ids, OGBench's file layout, rewards and masks, success, the maker."""
import json

import numpy as np
import pytest

from cql_jax import evaluation
from cql_jax.configs import base
from cql_jax.configs import ogbench as ogbench_config
from cql_jax.data import ogbench_io
from cql_jax.data.errors import DatasetError
from cql_jax.makers import registry

ogbench = pytest.importorskip("ogbench")
gym = pytest.importorskip("gymnasium")
pytestmark = pytest.mark.filterwarnings("ignore")

CUBE_XYZ = slice(14, 17)  # the cube's position in a cube-single qpos (7-d free joint at 14).


@pytest.fixture
def root(tmp_path, monkeypatch):
  monkeypatch.setenv(ogbench_io.ENV_VAR, str(tmp_path / "ogbench"))
  return tmp_path / "ogbench"


# ------------------------------------------------------------------------------ ids

@pytest.mark.parametrize("dataset_id,dataset_name,task", [
    ("cube-single-play-singletask-v0", "cube-single-play-v0", None),
    ("cube-single-play-singletask-task4-v0", "cube-single-play-v0", 4),
    ("cql_jax/cube-double-play-singletask-task1-v0", "cube-double-play-v0", 1),
])
def test_ids_name_the_environment_ogbench_builds(dataset_id, dataset_name, task):
  """parse_id's environment is the one OGBench's own make_env_and_datasets builds."""
  parsed = ogbench_io.parse_id(dataset_id)
  assert (parsed.dataset_name, parsed.task) == (dataset_name, task)
  assert parsed.local == dataset_id.startswith("cql_jax/")
  env = ogbench.make_env_and_datasets(dataset_id.split("/")[-1], env_only=True)
  try:
    assert env.spec.id == parsed.env_name
  finally:
    env.close()
  assert registry.source_of(dataset_id).kind == registry.OGBENCH


@pytest.mark.parametrize("dataset_id", ["cube-single-play-v0", "D4RL/antmaze/umaze-v1",
                                        "other/cube-single-play-singletask-v0",
                                        "cube-single-play-singletask-taskx-v0"])
def test_other_ids_are_not_ogbench(dataset_id):
  assert ogbench_io.parse_id(dataset_id) is None
  with pytest.raises(ValueError, match="single-task id"):
    ogbench_config.get_config(dataset_id)


def test_missing_files_name_the_command_that_gets_them(root):
  with pytest.raises(DatasetError, match=r"make_ogbench --env=cube-single-v0"):
    registry.ensure_available("cql_jax/cube-single-play-singletask-v0")
  with pytest.raises(DatasetError, match=r"download_datasets\(\['cube-single-play-v0'\]"):
    registry.ensure_available("cube-single-play-singletask-task3-v0")


# ------------------------------------------------------------------------------ conventions

def _write_ogbench_file(path, episodes):
  """An OGBench-layout file: per episode T+1 rows, terminals 1 on the last row."""
  rows = {k: [] for k in ("observations", "actions", "terminals", "qpos", "qvel")}
  for obs, qpos in episodes:
    n = len(obs)
    rows["observations"].append(obs)
    rows["actions"].append(np.linspace(-1, 1, n * 5).reshape(n, 5))
    rows["terminals"].append(np.arange(n) == n - 1)
    rows["qpos"].append(qpos)
    rows["qvel"].append(np.zeros((n, qpos.shape[1])))
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(path, **{k: np.concatenate(v) for k, v in rows.items()})


def test_rewards_and_masks_follow_ogbench_on_hand_made_states(root):
  """Cube-single task 2 (goal (0.50, 0, 0.02)): reward −1 per step and 0 where the cube of s_t is
  within 4 cm of the goal, discount (OGBench's mask) 0 exactly there; a file's last row per
  trajectory only ends it; next_obs is the next row of the same trajectory."""
  goal = np.array([0.50, 0.0, 0.02])
  offsets = [[0.3, 0, 0], [0.0, 0.03, 0.0], [0.0, 0.0, 0.05], [0.02, -0.02, 0.01], [0, 0, 0]]
  episodes = []
  for e in range(2):
    qpos = np.zeros((5, 21))
    qpos[:, CUBE_XYZ] = goal + np.roll(offsets, e, axis=0)
    obs = np.arange(5 * 28, dtype=np.float32).reshape(5, 28) + 1000 * e
    episodes.append((obs, qpos))
  _write_ogbench_file(root / "cql_jax" / "cube-single-play-v0.npz", episodes)
  data = ogbench_io.load_dataset("cql_jax/cube-single-play-singletask-task2-v0",
                                 reward_scale=2.0, reward_bias=0.5)
  t = data.transitions
  assert t.obs.shape == (8, 28) and t.action.shape == (8, 5)
  success = np.array([np.linalg.norm(q[CUBE_XYZ] - goal) <= 0.04
                      for _, qpos in episodes for q in qpos[:-1]])
  np.testing.assert_array_equal(t.reward, (success.astype(np.float32) - 1.0) * 2.0 + 0.5)
  np.testing.assert_array_equal(t.discount, 1.0 - success)
  assert success.sum() == 4  # offsets 2, 4 (and their rolled copies) sit within 4 cm.
  np.testing.assert_array_equal(t.next_obs, np.concatenate([o[1:] for o, _ in episodes]))
  np.testing.assert_array_equal(t.obs, np.concatenate([o[:-1] for o, _ in episodes]))
  assert data.initial_obs.shape == (2, 28) and data.env_spec.id == "cube-single-singletask-task2-v0"
  assert evaluation.success_rate_metric(data)


def test_single_task_environment_terminates_exactly_at_success():
  """The evaluation convention: −1 per step; once the state is a success (the cube within 4 cm of
  its target), the next step returns reward 0, terminated and info['success'], all of the state
  before the action (success_timing 'pre'), as the dataset's reward and mask of s_t."""
  import mujoco
  env = gym.make("cube-single-singletask-task2-v0")
  try:
    env.reset(seed=0)
    zero = np.zeros(5)
    _, reward, terminated, _, info = env.step(zero)
    assert (reward, terminated, info["success"]) == (-1.0, False, False)
    u = env.unwrapped
    target = u._data.mocap_pos[u._cube_target_mocap_ids[0]].copy()
    np.testing.assert_allclose(target, [0.50, 0.0, 0.02])  # task 2's goal.
    u._data.joint("object_joint_0").qpos[:3] = target + [0.0, 0.03, 0.0]  # 3 cm off: a success.
    mujoco.mj_forward(u._model, u._data)
    u.post_step()  # what a physics step ends with: the success flag of the new state.
    _, reward, terminated, _, info = env.step(zero)
    assert (reward, terminated, info["success"]) == (0.0, True, True)
  finally:
    env.close()


def test_evaluation_counts_episodes_that_end_by_termination():
  """CartPole pushed one way always falls (terminates); capped at 3 steps it never does."""
  push = lambda obs, key: np.ones(len(obs), np.int64)
  fell = evaluation.evaluate(push, "CartPole-v1", num_episodes=3)
  assert fell.terminated.tolist() == [True] * 3 and (fell.lengths < 500).all()
  capped = evaluation.evaluate(push, "CartPole-v1", num_episodes=3,
                               env_kwargs={"max_episode_steps": 3})
  assert capped.terminated.tolist() == [False] * 3 and (capped.lengths == 3).all()


# ------------------------------------------------------------------------------ the maker

def test_maker_writes_ogbench_layout_that_ogbenchs_loader_reads(root):
  from cql_jax.makers import ogbench_play
  result = ogbench_play.make_play_dataset("cube-single-v0", num_episodes=2, seed=3,
                                          max_episode_steps=31)
  files = np.load(result["path"])
  assert sorted(k for k in files if k != "cql_jax_maker") == sorted(
      ["observations", "actions", "terminals", "qpos", "qvel"])
  assert files["observations"].shape == (62, 28) and files["actions"].shape == (62, 5)
  assert files["terminals"].dtype == bool and np.flatnonzero(files["terminals"]).tolist() == [30, 61]
  assert np.abs(files["actions"]).max() <= 1.0
  meta = json.loads(str(files["cql_jax_maker"]))
  assert (meta["noise"], meta["noise_smoothing"], meta["num_episodes"]) == (0.1, 0.5, 2)
  # qpos is the state of the observation on the same row (the cube's position is in both).
  block = (files["qpos"][:, CUBE_XYZ] - np.array([0.425, 0.0, 0.0])) * 10.0
  np.testing.assert_allclose(files["observations"][:, 19:22], block, atol=1e-5)
  val = np.load(result["val_path"])
  assert val["observations"].shape == (31, 28)
  # OGBench's own loader reads the pair; the project's id reads the same transitions.
  _, train, _ = ogbench.make_env_and_datasets(
      "cube-single-play-singletask-v0", dataset_path=result["path"], env_only=False)
  data = ogbench_io.load_dataset("cql_jax/cube-single-play-singletask-v0")
  np.testing.assert_array_equal(data.transitions.obs, train["observations"])
  np.testing.assert_array_equal(data.transitions.reward, train["rewards"])
  np.testing.assert_array_equal(data.transitions.discount, train["masks"])
  with pytest.raises(FileExistsError):
    ogbench_play.make_play_dataset("cube-single-v0", num_episodes=1, max_episode_steps=5)


def test_config_recipe_matches_the_published_setup():
  c = ogbench_config.get_config("cube-single-play-singletask-task2-v0")
  assert c.agent.actor_hidden_sizes == c.agent.critic_hidden_sizes == (512,) * 4
  assert c.agent.actor_lr == c.agent.critic_lr == 3e-4 and c.batch_size == 256
  assert c.num_steps == 1_000_000 and c.eval_episodes == 50 and c.agent.gamma == 0.99
  assert c.agent.cql.weight == 5.0 and not c.agent.cql.lagrange and not c.agent.max_backup
  assert c.data.obs_keys is None and (c.data.reward_scale, c.data.reward_bias) == (1.0, 0.0)
  assert base.override(c, {"agent.algorithm": "bc"}).agent.algorithm == "bc"


# ------------------------------------------------------------------------------ end to end

@pytest.mark.slow  # ~30 s of one core: OGBench's MuJoCo scene, a compile, two evaluations.
def test_ogbench_end_to_end(root, tmp_path):
  """Data made with OGBench's oracles, trained through the runner with the ogbench config shrunk
  in sizes and steps only, evaluated by success in the single-task environment, then resumed."""
  from cql_jax import runner
  from cql_jax.makers import ogbench_play
  ogbench_play.make_play_dataset("cube-single-v0", num_episodes=2, max_episode_steps=31)
  config = base.override(ogbench_config.get_config("cql_jax/cube-single-play-singletask-v0"), {
      "num_steps": 200, "steps_per_chunk": 50, "eval_every": 100, "checkpoint_every": 100,
      "eval_episodes": 2, "batch_size": 32, "log.tensorboard": False,
      "agent.actor_hidden_sizes": (32,) * 4, "agent.critic_hidden_sizes": (32,) * 4,
      "agent.cql.num_samples": 4})
  workdir = tmp_path / "run"
  runner.train_and_evaluate(base.override(config, {"num_steps": 100}), workdir, progress=False)
  resumed = runner.train_and_evaluate(config, workdir, resume=True, progress=False)
  results = resumed.results
  assert [e["step"] for e in results["evals"]] == [100, 200]
  for row in results["evals"]:
    success, length = row["eval/success"][0], row["eval/length"][0]
    assert 0.0 <= success <= 100.0 and 0 < length <= 200
    # Failed episodes run to the 200-step limit at −1 per step.
    assert success > 0 or (row["eval/return"][0] == -200.0 and length == 200)
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in rows if r["kind"] == "train"]
  assert [r["step"] for r in train] == [50, 100, 150, 200]
  assert all(np.isfinite(r["critic/q_data"]).all() for r in train if "critic/q_data" in r)
