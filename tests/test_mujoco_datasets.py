"""End to end: a (tiny) online SAC run on Hopper-v5 → the five D4RL-style Minari datasets →
loaded back, scored and evaluated the way experiments/compare.py uses them."""
import jax
import numpy as np
import pytest

from cql_jax.makers import online
from cql_jax.agents import make_agent
from cql_jax.continuous import variants
from cql_jax.data import minari_io
from cql_jax.makers import mujoco_datasets
from cql_jax.evaluation import evaluate_agent


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  root = tmp_path_factory.mktemp("minari")
  c = online.default_config()
  c.actor_hidden_sizes = c.critic_hidden_sizes = (8, 8)
  c.total_steps, c.warmup_steps, c.steps_per_round = 600, 200, 100
  c.batch_size, c.buffer_capacity, c.eval_every, c.eval_episodes = 32, 1_000, 200, 2
  snapshots = []

  def on_eval(step, state, info):
    snapshots.append({"step": step, "mean_return": info["mean_return"],
                      "actor_params": jax.device_get(state.actor_params)})
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    run = online.train_online("Hopper-v5", c, seed=0, record_episodes=True, on_eval=on_eval)
    stats = mujoco_datasets.write_all("hopper", run, snapshots, num_transitions=60,
                                      ref_episodes=3, seed=0, train_text="test run.",
                                      log=lambda m: None)
    loaded = {kind: minari_io.load_dataset(mujoco_datasets.dataset_id("hopper", kind))
              for kind in mujoco_datasets.KINDS}
    yield run, snapshots, stats, loaded


def test_datasets_follow_the_d4rl_recipe(written):
  run, snapshots, stats, loaded = written
  refs = {(d.ref_min_score, d.ref_max_score) for d in loaded.values()}
  assert len(refs) == 1                                   # one normalisation for the family.
  # The medium policy: the first snapshot whose sampled return reached a third of the way from
  # the random policy (ref_min_score) to the best snapshot's sampled return.
  best = max(snapshots, key=lambda s: s["mean_return"])
  level = loaded["random"].ref_min_score + (best["sampled_return"] - loaded["random"].ref_min_score) / 3
  medium_step = next(s["step"] for s in snapshots if s.get("sampled_return", -np.inf) >= level)
  for kind, d in loaded.items():
    assert d.env_id == "Hopper-v5" and not d.discrete
    assert d.obs_dim == 11 and d.action_dim == 3
    assert d.size == stats[mujoco_datasets.dataset_id("hopper", kind)]["transitions"]
    np.testing.assert_allclose(d.episode_returns.mean(),
                               stats[mujoco_datasets.dataset_id("hopper", kind)]["mean_return"],
                               rtol=1e-5)
  for kind in ("random", "medium", "expert"):
    assert loaded[kind].size >= 60
  assert np.all(np.abs(loaded["random"].transitions.action) <= 1.0)
  # medium-expert is the medium episodes followed by the expert ones, not a fresh rollout.
  me = loaded["medium-expert"]
  assert me.size == loaded["medium"].size + loaded["expert"].size
  np.testing.assert_array_equal(me.transitions.obs[:loaded["medium"].size],
                                loaded["medium"].transitions.obs)
  # medium-replay is SAC's own training episodes up to the medium snapshot's step.
  replay = [ep for ep in run.episodes if ep.end_step <= medium_step]
  assert len(loaded["medium-replay"].episode_returns) == len(replay)
  np.testing.assert_allclose(loaded["medium-replay"].episode_returns,
                             [ep.episode_return for ep in replay], rtol=1e-5)


def test_compare_path_evaluates_on_them(written):
  _, _, _, loaded = written
  dataset = loaded["medium"]
  config = variants.variant_config("bc")
  config.actor_hidden_sizes = config.critic_hidden_sizes = (8, 8)
  agent = make_agent(config, dataset)
  result = evaluate_agent(agent, agent.init(jax.random.key(0)), dataset, num_episodes=2, seed=3)
  assert len(result.returns) == 2 and np.isfinite(result.mean_normalized)
  expected = 100 * (np.mean(result.returns) - dataset.ref_min_score) / (
      dataset.ref_max_score - dataset.ref_min_score)
  np.testing.assert_allclose(result.mean_normalized, expected, rtol=1e-5)
