"""Offline model selection: episode splits, statistics against NumPy, the workflow's rules, and the
select entry point on a real (tiny) Pendulum run."""
import json
import subprocess
import sys
import pathlib
import os

import jax
import numpy as np
import pytest

from cql_jax import runner
from cql_jax import selection
from cql_jax import statistics
from cql_jax import sweep
from cql_jax import writers
from cql_jax.configs import base
from cql_jax.configs import classic
from cql_jax.data import split
from cql_jax.discrete import agent as discrete_agent
from cql_jax.types import OfflineDataset

ROOT = pathlib.Path(__file__).resolve().parents[1]


def episodes_dataset(lengths, obs_dim=3, seed=0):
  """Episodes of the given lengths with distinct random observations (episode layout)."""
  rng = np.random.default_rng(seed)
  obs, actions, rewards, terms, truncs = [], [], [], [], []
  for i, n in enumerate(lengths):
    obs.append(rng.normal(size=(n + 1, obs_dim)).astype(np.float32))
    actions.append(rng.integers(0, 2, size=n))
    rewards.append(np.full(n, float(i), np.float32))  # the reward names the episode.
    terms.append(np.r_[np.zeros(n - 1, bool), i % 2 == 0])
    truncs.append(np.r_[np.zeros(n - 1, bool), i % 2 == 1])
  return OfflineDataset.from_arrays(
      np.concatenate(obs), np.concatenate(actions), np.concatenate(rewards), np.concatenate(terms),
      np.concatenate(truncs), num_actions=2)


def test_episode_starts_and_holdout_keep_whole_episodes():
  lengths = [5, 3, 7, 4, 6, 2, 8, 5, 3, 4]
  dataset = episodes_dataset(lengths)
  np.testing.assert_array_equal(split.episode_starts(dataset.transitions),
                                np.cumsum([0] + lengths[:-1]))
  train, held = split.holdout_split(dataset, 0.3, seed=3)
  held_eps = sorted(set(held.reward.astype(int).tolist()))
  train_eps = sorted(set(train.transitions.reward.astype(int).tolist()))
  assert len(held_eps) == 3 and not set(held_eps) & set(train_eps)
  assert sorted(held_eps + train_eps) == list(range(10))
  for e in held_eps:  # every transition of a held-out episode left training
    assert int(np.sum(held.reward == e)) == lengths[e]
  assert train.size + len(held.reward) == dataset.size
  assert len(train.initial_obs) == len(lengths)  # scoring still sees every start state
  same, empty = split.holdout_split(dataset, 0.0, seed=3)
  assert same is dataset and len(empty.reward) == 0
  with pytest.raises(ValueError, match="at least two episodes"):
    split.holdout_split(episodes_dataset([5]), 0.5, seed=0)
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    split.holdout_split(dataset, 1.0, seed=0)


def test_statistics_match_numpy():
  dataset = episodes_dataset([6, 9, 7, 5, 8], obs_dim=4, seed=1)
  config = discrete_agent.default_config()
  config.torso, config.loss, config.hidden_sizes = "mlp", "dqn", (8,)
  config.gamma = 0.9
  agent = discrete_agent.make_discrete_agent(config, (4,), 2)
  states = jax.vmap(agent.init)(jax.random.split(jax.random.key(0), 3))
  # Target params differ from params, as after training.
  states = states.replace(target_params=jax.vmap(agent.init)(
      jax.random.split(jax.random.key(1), 3)).params)
  data = dataset.transitions  # 35 transitions: one padded sub-batch
  stats = statistics.make_statistics(agent, data, dataset.initial_obs, seed=4)(states)
  net = discrete_agent.make_spec(config, (4,), 2).network
  rms = np.sqrt(np.mean(np.asarray(data.reward, np.float64) ** 2))
  for m in range(3):
    params = jax.tree.map(lambda x: x[m], states.params)
    target = jax.tree.map(lambda x: x[m], states.target_params)
    q = np.asarray(net.apply(params, data.obs), np.float64)
    q_next = np.asarray(net.apply(target, data.next_obs), np.float64)
    a = np.asarray(data.action)
    q_a = q[np.arange(len(a)), a]
    y = data.reward + 0.9 * data.discount * q_next.max(axis=1)
    td = np.mean((y - q_a) ** 2)
    lse = np.log(np.exp(q).sum(axis=1))
    q0 = np.asarray(net.apply(params, dataset.initial_obs), np.float64)
    want = {"offline/q_data": q_a.mean(), "offline/td_error": td,
            "offline/relative_td": np.sqrt(td) / (abs(q_a.mean()) + rms),
            "offline/gap": np.mean(lse - q_a), "offline/v_initial": q0.max(axis=1).mean()}
    for name, value in want.items():
      np.testing.assert_allclose(stats[name][m], value, rtol=2e-5, atol=2e-6, err_msg=name)


def test_workflow_rules():
  steps = np.arange(1, 9) * 1000
  rise_fall = [0.0, 2.0, 5.0, 8.0, 7.0, 5.0, 3.0, 2.5]
  d = selection.diagnose(steps, rise_fall, np.full(8, 0.1))
  assert d.kind == "overfitting" and d.peak_step == 4000 and "fell" in d.reason
  falling = [9.0, 7.0, 5.0, 4.0, 3.5, 3.2, 3.1, 3.0]   # travel from an optimistic start
  assert selection.diagnose(steps, falling, np.full(8, 0.1)).kind == "fine"
  small_dip = [0.0, 2.0, 5.0, 8.0, 7.9, 7.8, 7.9, 7.7]  # < 25% of the range
  assert selection.diagnose(steps, small_dip, np.full(8, 0.1)).kind == "fine"
  d = selection.diagnose(steps, small_dip, np.r_[np.full(7, 0.1), 0.9])
  assert d.kind == "underfitting" and "0.9" in d.reason
  assert selection.nearest([2000, 4000, 6000], 5000) == 6000
  assert selection.nearest([2000, 4000, 6000], 4400) == 4000


TINY = {
    "agent.actor_hidden_sizes": (16, 16), "agent.critic_hidden_sizes": (16, 16),
    "batch_size": 32, "steps_per_chunk": 20, "num_steps": 80, "eval_every": 20,
    "checkpoint_every": 20, "keep_checkpoints": 4, "eval_episodes": 2,
    "selection.holdout_fraction": 0.25,
}


@pytest.fixture(scope="module")
def run_dir(pendulum_minari_root, tmp_path_factory):
  del pendulum_minari_root
  workdir = tmp_path_factory.mktemp("select")
  config = base.override(classic.get_config("medium"), TINY)
  runner.train_and_evaluate(config, workdir, (0, 1), progress=False)
  return workdir


def test_runs_record_offline_rows_at_every_evaluation(run_dir):
  records = writers.read_jsonl(run_dir / writers.METRICS_FILE)
  offline = [r for r in records if r["kind"] == "offline"]
  assert [r["step"] for r in offline] == [r["step"] for r in records if r["kind"] == "eval"]
  for name in ("offline/q_data", "offline/td_error", "offline/relative_td", "offline/gap",
               "offline/v_initial"):
    values = np.asarray([r[name] for r in offline])
    assert values.shape == (4, 2) and np.all(np.isfinite(values)), name


def test_select_ranks_every_checkpoint_and_writes_its_evidence(run_dir):
  out = selection.select_run(run_dir, fqe_steps=100, log=lambda m: None)
  saved = json.loads((run_dir / selection.SELECTION_FILE).read_text())
  assert saved["choice"] == json.loads(json.dumps(out["choice"]))
  assert [(c["member"], c["step"]) for c in saved["candidates"]] == [
      (m, s) for s in (20, 40, 60, 80) for m in ("seed_0", "seed_1")]
  for name in selection.ESTIMATORS:
    values = np.asarray(saved["estimates"][name])
    assert values.shape == (8,) and np.all(np.isfinite(values)), name
    choice = saved["choice"][name]
    index = saved["candidates"].index({"member": choice["member"], "step": choice["step"]})
    if name != "workflow":  # the workflow chooses by diagnosis first
      assert values[index] == values.max()
  assert set(saved["diagnosis"]) == {"seed_0", "seed_1"}
  for d in saved["diagnosis"].values():
    assert d["kind"] in ("fine", "overfitting", "underfitting") and d["reason"]
  # The critic estimator is the recorded Q at the start states, read back per checkpoint.
  records = writers.read_jsonl(run_dir / writers.METRICS_FILE)
  v = {r["step"]: r["offline/v_initial"] for r in records if r["kind"] == "offline"}
  np.testing.assert_allclose(saved["estimates"]["critic"],
                             [v[s][m] for s in (20, 40, 60, 80) for m in range(2)])
  # New thresholds reuse the trained critics' estimates; other critic settings retrain.
  again = selection.select_run(run_dir, ["fqe"], fqe_steps=100, drop=0.9, reuse=True,
                               write=False, log=lambda m: None)
  assert again["estimates"]["fqe"] == saved["estimates"]["fqe"]
  # The bounds come from the rewards the run trained on (its held-out episodes left out).
  config = base.override(classic.get_config("medium"), TINY)
  training, _ = split.holdout_split(runner.load_data(config), 0.25, seed=0)
  rewards = np.asarray(training.transitions.reward)
  low, high = saved["value_range"]
  assert np.isclose(low, rewards.min() / 0.01 * 1.1) and np.isclose(high, -0.1 * low / 1.1)
  assert saved["valid"]["fqe"] == [bool(low <= x <= high) for x in saved["estimates"]["fqe"]]


def test_select_trains_critics_on_the_training_episodes_and_measures_the_held_out(
    run_dir, monkeypatch):
  """The critics see the episodes the run trained on, not the 25% it held out, and their
  statistics are measured on those held-out episodes (the split recomputed here by hand)."""
  config = base.override(classic.get_config("medium"), TINY)
  whole = runner.load_data(config)
  starts = split.episode_starts(whole.transitions)
  held = np.random.default_rng(0).choice(len(starts), size=round(0.25 * len(starts)), replace=False)
  ends = np.append(starts[1:], whole.size)
  out_mask = np.zeros(whole.size, bool)
  for e in held:
    out_mask[starts[e]:ends[e]] = True
  seen = {}

  def fake(agent_config, dataset, policies, **kwargs):
    seen.update(dataset=dataset, **kwargs)
    num = int(jax.tree.leaves(policies)[0].shape[0])
    return {k: np.full(num, -1.0) for k in ("v_initial", "td_error", "q_data")}
  monkeypatch.setattr(selection, "policy_values", fake)
  selection.select_run(run_dir, ["fqe"], fqe_steps=100, write=False, log=lambda m: None)
  np.testing.assert_array_equal(seen["dataset"].transitions.obs, whole.transitions.obs[~out_mask])
  np.testing.assert_array_equal(seen["measure_on"].obs, whole.transitions.obs[out_mask])
  assert seen["hparams"] is None  # one γ for every member: the config's


def test_each_member_is_valued_with_its_own_gamma():
  config = base.override(classic.get_config("medium"), TINY)
  plan = sweep.plan(config, {"agent.gamma": [0.9, 0.99]}, [0, 1])
  np.testing.assert_allclose(selection.member_gammas(config, plan), [0.9, 0.9, 0.99, 0.99])
  unswept = sweep.plan(config, {"agent.cql.weight": [1.0, 5.0]}, [0])
  np.testing.assert_allclose(selection.member_gammas(config, unswept), [config.agent.gamma] * 2)
  # Per-candidate bounds follow each candidate's own γ.
  low, high = selection.value_range(np.array([-1.0, 0.0]), np.array([0.9, 0.99]), slack=0.0)
  np.testing.assert_allclose(low, [-10.0, -100.0])
  np.testing.assert_allclose(high, [0.0, 0.0])


def test_value_range_is_what_returns_allow():
  low, high = selection.value_range(np.array([1.0, 1.0]), 0.99)     # CartPole: 0 to 100
  assert np.isclose(low, -10.0) and np.isclose(high, 110.0)
  low, high = selection.value_range(np.array([-16.0, -1.0]), 0.9)   # all negative: up to 0
  assert np.isclose(low, -176.0) and np.isclose(high, 16.0)
  np.testing.assert_array_equal(selection.valid_estimates([np.nan, -10.0, 17.0, -177.0],
                                                          (low, high)), [False, True, False, False])


def test_select_refuses_clearly(tmp_path, run_dir):
  with pytest.raises(selection.SelectionError, match="config.json is missing"):
    selection.select_run(tmp_path, log=lambda m: None)
  with pytest.raises(selection.SelectionError, match="unknown estimator"):
    selection.select_run(run_dir, ["fqe", "oracle"], log=lambda m: None)
  proc = subprocess.run([sys.executable, "-m", "experiments.select_policy", f"--workdir={tmp_path}"],
                        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1 and "config.json is missing" in proc.stderr


def test_study_scores_choices_against_the_true_returns():
  from experiments import selection_study
  cands = [{"member": m, "step": s} for s in (1, 2, 3) for m in ("a", "b")]
  truth = np.array([10.0, 20.0, 50.0, 30.0, 40.0, 35.0])    # a: 10, 50, 40; b: 20, 30, 35
  estimate = np.array([1.0, 2.0, 3.0, 0.0, 5.0, 4.0])       # picks a@3 overall, a@3 and b@3
  selected = {"candidates": cands, "estimates": {"fqe": estimate.tolist()},
              "choice": {"fqe": {"member": "a", "step": 3, "estimate": 5.0}}}
  r = selection_study.score_estimators(selected, truth)
  f = r["estimators"]["fqe"]
  assert r["best"] == 50.0 and r["last_of_best_member"] == 40.0 and r["mean_last"] == 37.5
  assert f["regret"] == 10.0 and f["regret_vs_last"] == 0.0
  assert f["checkpoint_gain"] == 0.0            # both members: the last checkpoint is picked
  # Spearman by hand: ranks of estimate [2,3,4,1,6,5], of truth [1,2,6,3,5,4].
  d = np.array([2, 3, 4, 1, 6, 5]) - np.array([1, 2, 6, 3, 5, 4])
  assert abs(f["spearman"] - (1 - 6 * np.sum(d ** 2) / (6 * 35))) < 1e-12


def test_evaluation_critic_settings_are_checked_like_config_overrides():
  from cql_jax.continuous import agent as cql
  from experiments import select_policy as select
  overrides = select.fqe_overrides(["polyak=0.02", "critic_hidden_sizes=(8, 8)"])
  assert overrides == {"polyak": 0.02, "critic_hidden_sizes": (8, 8)}
  config = selection.evaluation_agent_config(cql.default_config(), penalty=False,
                                             overrides=overrides)
  assert config.polyak == 0.02 and tuple(config.critic_hidden_sizes) == (8, 8)
  assert config.cql.weight == 0.0 and config.num_critics == 1
  with pytest.raises(selection.SelectionError, match="Did you mean 'polyak'"):
    selection.evaluation_agent_config(cql.default_config(), False, overrides={"polyk": 0.1})
  with pytest.raises(selection.SelectionError, match="polyak"):
    selection.evaluation_agent_config(cql.default_config(), False, overrides={"polyak": "fast"})
  with pytest.raises(selection.SelectionError, match="KEY=VALUE"):
    select.fqe_overrides(["polyak"])
