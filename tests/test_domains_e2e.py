"""The paper's AntMaze, Adroit, Kitchen and Atari domains: recipes, and tiny end-to-end runs.

Recipe tests read each domain config's effective values and check what the recipe means (the
reward transform on D4RL's sparse reward, the observation keys against a real environment's
state, the Lagrange threshold against the official code's penalty, Atari's schedule in agent
steps), not copies of the config.

End-to-end tests record a tiny dataset from the real environment with the project's own
recorders (Minari's DataCollector for the robotics tasks, a Dopamine-format replay with real
padding for Pong), train the domain's own config, shrunk only in sizes and steps, through
runner.train_and_evaluate, evaluate in the environment recovered from the dataset, checkpoint,
then resume the run to a longer one.
"""
import json
import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax import runner
from cql_jax.configs import adroit
from cql_jax.configs import antmaze
from cql_jax.configs import atari
from cql_jax.configs import base
from cql_jax.configs import kitchen
from cql_jax.continuous import losses
from cql_jax import evaluation
from cql_jax.data import observations

gym = pytest.importorskip("gymnasium")
pytest.importorskip("gymnasium_robotics")
minari = pytest.importorskip("minari")
from cql_jax.envs import robotics  # noqa: E402  (needs gymnasium-robotics)

SPARSE = np.array([0.0, 1.0])  # D4RL's and Minari's AntMaze goal reward.
# Gymnasium-Robotics and Minari warn about what these tiny datasets do on purpose (no code
# permalink, short episodes, the Adroit reward notice).
pytestmark = pytest.mark.filterwarnings("ignore")


def _transform(config, reward):
  return reward * config.data.reward_scale + config.data.reward_bias


# ------------------------------------------------------------------------------ recipes

@pytest.mark.parametrize("maze", antmaze.MAZES)
def test_antmaze_corl_reward_transform_centres_the_sparse_reward(maze):
  """CORL's antmaze recipe: reward·10 − 5, i.e. {0, 1} → {−5, +5}."""
  config = antmaze.get_config(maze)
  np.testing.assert_allclose(_transform(config, SPARSE), SPARSE * 10.0 - 5.0)


def test_antmaze_official_reward_transform_is_the_official_centring():
  """aviralkumar2907/CQL cql_antmaze_new.py: (r − 0.5)·4, i.e. {0, 1} → {−2, +2}."""
  config = antmaze.get_config("medium-play-official")
  np.testing.assert_allclose(_transform(config, SPARSE), (SPARSE - 0.5) * 4.0)


# The source codes' Lagrangian terms for two critics with gaps g_i and multiplier a:
#   official (rlkit cql.py):  penalty_i = a·(w·g_i − 5),     dual = −½·Σ_i a·(w·g_i − 5)
#   CORL (cql.py):            penalty_i = a·w·(g_i − 0.8),   dual = −½·Σ_i a·w·(g_i − 0.8)
SOURCE_LAGRANGE = {
    "medium-play": lambda a, w, g: a * w * (g - 0.8),
    "medium-play-official": lambda a, w, g: a * (w * g - 5.0),
}


@pytest.mark.parametrize("variant", sorted(SOURCE_LAGRANGE))
def test_antmaze_lagrange_threshold_reproduces_the_source_code(variant):
  """This agent's penalty and dual loss with the config's w and τ equal the source code's, for
  random per-critic gaps and multipliers."""
  config = antmaze.get_config(variant)
  assert config.agent.cql.lagrange and config.agent.cql.weight == 5.0
  source = SOURCE_LAGRANGE[variant]
  rng = np.random.default_rng(0)
  for _ in range(5):
    gap = rng.normal(0.0, 3.0, size=2).astype(np.float32)
    alpha_prime = float(rng.uniform(0.1, 3.0))
    penalty, dual = losses.cql_penalty(jnp.asarray(gap), config.agent.cql.weight,
                                          jnp.asarray(alpha_prime), config.agent.cql.target_gap)
    terms = [source(alpha_prime, 5.0, float(g)) for g in gap]
    np.testing.assert_allclose(float(penalty), sum(terms), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(dual), -0.5 * sum(terms), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant,max_backup,bc_steps,critic_depth", [
    ("umaze", True, 0, 5),                     # CORL: max-backup, no BC, Q 5x256.
    ("medium-play-official", False, 40_000, 3),  # official: policy_eval_start=40000, 3x256.
])
def test_antmaze_recipes(variant, max_backup, bc_steps, critic_depth):
  c = antmaze.get_config(variant)
  assert c.agent.cql.lagrange and c.agent.cql.weight == 5.0
  assert c.agent.max_backup == max_backup and c.agent.bc_steps == bc_steps
  assert len(c.agent.critic_hidden_sizes) == critic_depth
  assert set(c.agent.critic_hidden_sizes) == {256} and c.agent.actor_hidden_sizes == (256,) * 3
  # The policy learning rate is no larger than the critic's (paper, Section 4).
  assert c.agent.actor_lr <= c.agent.critic_lr and c.agent.cql.alpha_prime_lr == c.agent.critic_lr
  assert not c.agent.backup_entropy and c.eval_episodes == 100
  assert c.dataset_id == f"D4RL/antmaze/{antmaze.parse_variant(variant)[0]}-v1"
  assert c.config_arg.endswith(f"antmaze.py:{variant}")


def test_antmaze_unknown_variant_lists_the_mazes():
  with pytest.raises(ValueError, match="<maze>-official.*umaze-diverse"):
    antmaze.get_config("umaze-official-diverse")


def test_antmaze_obs_keys_give_the_ant_its_position_and_goal():
  """Flattened with the config's keys, a real AntMaze observation starts with the torso's x, y
  from MuJoCo's qpos (D4RL's layout) and ends with the env's goal."""
  keys = antmaze.get_config("umaze").data.obs_keys
  robotics.register_robotics_envs()
  env = gym.make("AntMaze_UMaze-v4")
  try:
    obs, _ = env.reset(seed=3)
    for _ in range(5):
      obs, *_ = env.step(env.action_space.sample())
    flat = observations.flatten_observations(obs, keys, batch_ndim=0)
    qpos, qvel = env.unwrapped.data.qpos, env.unwrapped.data.qvel
    np.testing.assert_allclose(flat[:2], qpos[:2], atol=1e-5)   # x, y
    np.testing.assert_allclose(flat[2:15], qpos[2:15], atol=1e-5)
    np.testing.assert_allclose(flat[15:29], qvel[:14], atol=1e-5)
    np.testing.assert_allclose(flat[29:], env.unwrapped.goal, atol=1e-5)
    assert flat.shape == (31,) == (observations.flat_size(env.observation_space, keys),)
  finally:
    env.close()


@pytest.mark.parametrize("variant", [f"{t}-{k}" for t in adroit.TASKS for k in adroit.KINDS])
def test_adroit_recipe_is_corls(variant):
  c = adroit.get_config(variant)
  assert c.agent.cql.weight == 1.0 and not c.agent.cql.lagrange
  assert c.agent.actor_lr == 1e-4 and c.agent.critic_lr == 3e-4
  assert c.agent.actor_hidden_sizes == c.agent.critic_hidden_sizes == (256,) * 3
  assert not c.agent.max_backup and c.agent.bc_steps == 0 and c.data.obs_keys is None
  assert (c.data.reward_scale, c.data.reward_bias) == (1.0, 0.0)
  task, kind = variant.split("-")
  assert c.dataset_id == f"D4RL/{task}/{kind}-v2"


@pytest.mark.parametrize("variant", kitchen.KINDS)
def test_kitchen_recipe(variant):
  c = kitchen.get_config(variant)
  assert c.agent.cql.weight == 5.0 and not c.agent.cql.lagrange
  assert c.agent.actor_lr <= c.agent.critic_lr
  assert c.agent.actor_hidden_sizes == c.agent.critic_hidden_sizes == (256,) * 3
  assert c.data.obs_keys == ("observation",) and c.env_id == kitchen.ENV_ID
  assert c.dataset_id == f"D4RL/kitchen/{variant}-v2"


@pytest.mark.parametrize("game", sorted(atari.GAMES))
def test_atari_schedule_is_batch_rls_in_agent_steps(game):
  """batch_rl quantile.gin: 200 iterations of 250k agent steps at update period 4, target
  network every 8000 agent steps; CQL weight 4 at 1% data and 1 at 10% (official README)."""
  update_period = 4
  for percent, weight in (("1", 4.0), ("10", 1.0), ("20", 1.0)):
    c = atari.get_config(f"{game}-{percent}")
    assert c.num_steps * update_period == 200 * 250_000
    assert c.eval_every * update_period == 250_000 == c.checkpoint_every * update_period
    assert c.agent.target_update_period * update_period == 8000
    assert c.batch_size == 32 and c.agent.gamma == 0.99
    assert c.agent.lr == 5e-5 and math.isclose(c.agent.adam_eps, 0.01 / 32)
    assert c.agent.loss == "qrdqn" and c.agent.num_quantiles == 200 and c.agent.kappa == 1.0
    assert c.agent.cql.weight == weight
    assert not c.eval_deterministic and c.agent.epsilon == 0.001
    assert c.atari.max_episode_steps * 4 == 108_000  # frames, at frame-skip 4.
    assert atari.get_config(f"{game}-{percent}-qrdqn").agent.cql.weight == 0.0


# ------------------------------------------------------------------------------ end to end

def _shrink(config, dataset_overrides, *, num_steps, hidden=32, chunk=50, **more):
  """The domain's config, shrunk in sizes and steps only (depths and switches kept)."""
  agent = config.agent
  overrides = dict(dataset_overrides)
  overrides.update({
      "num_steps": num_steps, "steps_per_chunk": chunk, "eval_every": 2 * chunk,
      "checkpoint_every": 2 * chunk, "eval_episodes": 2, "batch_size": 32, "keep_checkpoints": 2,
      "log.tensorboard": False,
  })
  if "actor_hidden_sizes" in agent:
    overrides.update({
        "agent.actor_hidden_sizes": (hidden,) * len(agent.actor_hidden_sizes),
        "agent.critic_hidden_sizes": (hidden,) * len(agent.critic_hidden_sizes),
        "agent.cql.num_samples": 4, "agent.backup_num_samples": 4,
        "agent.bc_steps": min(agent.bc_steps, chunk),
    })
  overrides.update(more)
  return base.override(config, overrides)


def _train_metrics_finite(workdir):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in rows if r["kind"] == "train"]
  assert train, "no training metrics were written"
  for row in train:
    for name, value in row.items():
      if isinstance(value, (list, float)) and name != "step":
        assert np.all(np.isfinite(value)), (name, row["step"], value)
  return rows


def _run_and_resume(config, workdir, first_steps, seeds=(0,)):
  """Trains to first_steps, then resumes the same run to config.num_steps."""
  first = base.override(config, {"num_steps": first_steps})
  runner.train_and_evaluate(first, workdir, seeds=seeds, progress=False)
  assert (workdir / "checkpoints" / str(first_steps)).is_dir()
  resumed = runner.train_and_evaluate(config, workdir, seeds=seeds, resume=True, progress=False)
  steps = [e["step"] for e in resumed.results["evals"]]
  assert steps == list(range(config.eval_every, config.num_steps + 1, config.eval_every))
  assert (workdir / "checkpoints" / str(config.num_steps)).is_dir()
  rows = _train_metrics_finite(workdir)
  assert [r["step"] for r in rows if r["kind"] == "train"] == list(
      range(config.steps_per_chunk, config.num_steps + 1, config.steps_per_chunk))
  return resumed.results


def _record(dataset_id, env_id, **kwargs):
  return robotics.record_minari_dataset(dataset_id, env_id, num_episodes=2, ref_min_score=0.0,
                                        ref_max_score=1.0, **kwargs)


def _check_robotics_run(results, config, env_id, obs_dim, seeds=(0,)):
  """Finite scores with a normalised field, and the evaluator's environment (recovered from the
  dataset's stored spec) hands the agent observations of the size it trained on."""
  final = results["final"]
  assert len(final["eval/normalized_score"]) == len(seeds)
  assert np.all(np.isfinite(final["eval/normalized_score"]))
  assert np.all(np.isfinite(final["eval/return"]))
  data = runner.load_data(config)
  assert data.env_spec.id == env_id and data.obs_dim == obs_dim
  env = evaluation.make_eval_env(data, 2)
  try:
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, obs_dim) and env.single_observation_space.shape == (obs_dim,)
  finally:
    env.close()


def test_antmaze_umaze_end_to_end(tmp_path, monkeypatch):
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
  dataset_id = "tiny/antmaze-umaze/random-v0"
  recorded = _record(dataset_id, "AntMaze_UMaze-v4", max_episode_steps=15)
  config = _shrink(antmaze.get_config("umaze"), {"dataset_id": dataset_id}, num_steps=200)

  data = runner.load_data(config)
  assert data.obs_dim == 31
  # The loader applies the config's transform to Minari's stored rewards.
  raw = np.concatenate([ep.rewards for ep in recorded.iterate_episodes()])
  np.testing.assert_allclose(np.sort(data.transitions.reward), np.sort(_transform(config, raw)))
  # Columns 0-1 are the ant's position: Minari's stored achieved_goal.
  first = next(recorded.iterate_episodes())
  np.testing.assert_allclose(data.transitions.obs[:2, :2], first.observations["achieved_goal"][:2],
                             atol=1e-6)

  results = _run_and_resume(config, tmp_path / "run", first_steps=100)
  _check_robotics_run(results, config, "AntMaze_UMaze-v4", 31)


@pytest.mark.parametrize("task,env_id,obs_dim", [
    ("pen", "AdroitHandPen-v1", 45),
    pytest.param("door", "AdroitHandDoor-v1", 39, marks=pytest.mark.slow),  # pen's path again.
])
def test_adroit_end_to_end(tmp_path, monkeypatch, task, env_id, obs_dim):
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
  dataset_id = f"tiny/{task}/random-v0"
  _record(dataset_id, env_id, max_episode_steps=15)
  config = _shrink(adroit.get_config(f"{task}-human"), {"dataset_id": dataset_id}, num_steps=200)
  results = _run_and_resume(config, tmp_path / "run", first_steps=100)
  _check_robotics_run(results, config, env_id, obs_dim)


@pytest.mark.slow  # ~45 s of one core, as AntMaze's; kept slow to stay within the fast budget.
def test_kitchen_end_to_end(tmp_path, monkeypatch):
  """Kitchen on the installed MuJoCo (4.x: through the joint-accessor fix in envs.robotics)."""
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
  dataset_id = "tiny/kitchen/random-v0"
  recorded = _record(dataset_id, kitchen.ENV_ID, max_episode_steps=15)
  config = _shrink(kitchen.get_config("partial"), {"dataset_id": dataset_id}, num_steps=200)
  data = runner.load_data(config)
  # The config's one key: Minari's stored 59-d `observation`, robot joints first.
  first = next(recorded.iterate_episodes())
  np.testing.assert_allclose(data.transitions.obs[:15], first.observations["observation"][:15],
                             atol=1e-6)
  results = _run_and_resume(config, tmp_path / "run", first_steps=100)
  _check_robotics_run(results, config, kitchen.ENV_ID, 59)
  # Evaluation ran to the 15-step cap stored in the dataset's spec (Kitchen only truncates).
  np.testing.assert_array_equal(results["final"]["eval/length"], [15])


@pytest.mark.slow  # a Nature CNN on 84x84x4 frames: ~0.1 s per batch-4 step on a shared CPU.
def test_atari_pong_end_to_end(tmp_path):
  from cql_jax.data import dopamine_replay
  from cql_jax.envs import atari as atari_envs
  from cql_jax.envs import atari_recorder
  replay_dir = tmp_path / "replay_logs"
  # pong-20 is the paper's first-20% setting: checkpoints 0-9, read in full.
  recorded = atari_recorder.record_atari_replay(
      str(replay_dir), "Pong", num_checkpoints=10, capacity=40, max_episode_steps=25, seed=0)
  assert recorded.num_episodes > 1  # padding between episodes is part of the data.
  config = _shrink(atari.get_config("pong-20"), {"atari.replay_dir": str(replay_dir)},
                   num_steps=100, chunk=25, **{
                       "agent.num_quantiles": 8, "agent.target_update_period": 20,
                       "atari.max_episode_steps": 30, "eval_episodes": 1, "batch_size": 4})
  results = _run_and_resume(config, tmp_path / "run", first_steps=50)
  final = results["final"]
  assert "eval/normalized_score" not in final  # Atari scores are raw game scores.
  assert np.all(np.isfinite(final["eval/return"]))
  assert 0 < final["eval/length"][0] <= 30
  # The replay's frames stack into the evaluation environment's observations.
  replay = dopamine_replay.load_paper_setting(str(replay_dir), config.atari.setting)
  assert replay.num_transitions > config.batch_size
  with atari_envs.make_atari_env("Pong") as env:
    assert (*replay.frames.shape[1:], atari_recorder.STACK) == env.observation_space.shape
