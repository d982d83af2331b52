"""Online DQN (cql_jax.makers.online_dqn) and the discrete D4RL-style datasets made from it
(cql_jax.makers.discrete_datasets): a tiny CartPole run end to end, and the pure pieces."""
import jax
import numpy as np
import pytest

from cql_jax.data import minari_io
from cql_jax.makers import discrete_datasets
from cql_jax.makers import online_dqn

ENV = "cartpole-dqn"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  root = tmp_path_factory.mktemp("minari")
  c = online_dqn.default_config()
  c.hidden_sizes = (8,)
  c.num_envs, c.steps_per_round, c.update_every = 4, 25, 1
  c.total_steps, c.warmup_steps, c.eval_every, c.eval_episodes = 2_000, 200, 500, 2
  c.batch_size, c.buffer_capacity = 32, 1_000
  snapshots = []

  def on_eval(step, state, info):
    snapshots.append({"step": step, "mean_return": info["mean_return"],
                      "params": jax.device_get(state.params)})
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    run = online_dqn.train_online("CartPole-v1", c, seed=0, record_episodes=True,
                                  on_eval=on_eval)
    # 2,000 steps teach nothing, so the snapshots' scores are set (the selection reads only
    # these) to returns above the random policy's 22: medium must be the one at 1,000.
    for snap, score in zip(snapshots, (30.0, 60.0, 100.0, 90.0)):
      snap["mean_return"] = score
    stats = discrete_datasets.write_all(ENV, run, snapshots, num_transitions=100, ref_episodes=3,
                                        seed=0, train_text="test run.", log=lambda m: None)
    loaded = {kind: minari_io.load_dataset(discrete_datasets.dataset_id(ENV, kind))
              for kind in discrete_datasets.KINDS}
    yield run, snapshots, stats, loaded


def test_dqn_run_fills_the_buffer_with_discrete_actions(written):
  run, snapshots, _, _ = written
  assert run.env_steps == 2_000 and len(snapshots) == 4
  data = jax.tree.map(np.asarray, run.buffer.data)
  assert int(run.buffer.size) == 1_000 and data.action.shape == (1_000,)
  assert set(np.unique(data.action).tolist()) == {0.0, 1.0}
  for ep in run.episodes:
    assert ep.actions.dtype == np.int64 and ep.terminations[-1] != ep.truncations[-1]
  np.testing.assert_array_equal(data.reward, 1.0)        # CartPole pays 1 per step.
  # The ring (1,000 slots) holds global transitions 1,000..1,999. An episode that ended at
  # env step E (a multiple of the 4 copies) wrote its last transition at index E - 4 + copy, so
  # those with E > 1,000 are in the ring: one discount 0 for each that terminated.
  recent = sum(int(ep.terminations[-1]) for ep in run.episodes if ep.end_step > 1_000)
  assert recent > 0 and int((data.discount == 0.0).sum()) == recent


def test_datasets_follow_the_d4rl_recipe(written):
  run, snapshots, stats, loaded = written
  ref_min = loaded["random"].ref_min_score
  medium, expert = discrete_datasets.pick_snapshots(snapshots, ref_min)
  assert 15 < ref_min < 30 and (medium["step"], expert["step"]) == (1_000, 1_500)
  refs = {(d.ref_min_score, d.ref_max_score) for d in loaded.values()}
  assert len(refs) == 1
  for kind, d in loaded.items():
    ds_id = discrete_datasets.dataset_id(ENV, kind)
    assert d.env_id == "CartPole-v1" and d.discrete and d.num_actions == 2
    assert d.size == stats[ds_id]["transitions"]
    np.testing.assert_allclose(d.episode_returns.mean(), stats[ds_id]["mean_return"], rtol=1e-5)
  for kind in ("random", "medium", "expert"):
    assert loaded[kind].size >= 100
    assert set(np.unique(loaded[kind].transitions.action).tolist()) == {0, 1}
  me = loaded["medium-expert"]
  assert me.size == loaded["medium"].size + loaded["expert"].size
  np.testing.assert_array_equal(me.transitions.obs[:loaded["medium"].size],
                                loaded["medium"].transitions.obs)
  replay = [ep for ep in run.episodes if ep.end_step <= medium["step"]]
  np.testing.assert_allclose(loaded["medium-replay"].episode_returns,
                             [ep.episode_return for ep in replay], rtol=1e-5)


def test_epsilon_schedule_and_epsilon_greedy():
  c = online_dqn.default_config()
  c.total_steps, c.epsilon_fraction, c.epsilon_start, c.epsilon_end = 1_000, 0.2, 1.0, 0.05
  assert online_dqn.epsilon_at(c, 0) == 1.0
  np.testing.assert_allclose(online_dqn.epsilon_at(c, 100), 1.0 - 0.5 * 0.95)
  assert online_dqn.epsilon_at(c, 200) == pytest.approx(0.05)
  assert online_dqn.epsilon_at(c, 900) == pytest.approx(0.05)
  rng = np.random.default_rng(0)
  greedy = np.full(200_000, 2)
  out = online_dqn.epsilon_greedy(greedy, 0.3, 4, rng)
  # P(action != greedy) = ε (A - 1) / A = 0.225; each other action ε / A = 0.075.
  np.testing.assert_allclose(np.mean(out != 2), 0.225, atol=0.005)
  np.testing.assert_allclose(np.bincount(out, minlength=4) / out.size,
                             [0.075, 0.075, 0.775, 0.075], atol=0.005)


def test_medium_is_a_third_of_the_way_from_random():
  # Negative returns (Acrobot): a third of the expert's return would be -30, above every one.
  snaps = [{"step": s, "mean_return": r} for s, r in
           [(10, -500.0), (20, -400.0), (30, -300.0), (40, -90.0), (50, -120.0)]]
  medium, expert = discrete_datasets.pick_snapshots(snaps, random_return=-500.0)
  assert expert["step"] == 40
  assert medium["step"] == 30      # -400 < -500 + 410/3 = -363.3 <= -300.


def test_online_dqn_refuses_box_actions():
  with pytest.raises(ValueError, match="Discrete"):
    online_dqn.train_online("Pendulum-v1", online_dqn.default_config(), seed=0)
