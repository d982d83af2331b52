"""The user's data door: OfflineDataset.from_arrays and .npz files, against the Minari loader."""
import json

import minari
import numpy as np
import pytest

import cql_jax
from cql_jax import scores
from cql_jax.data import minari_io
from cql_jax.data import npz
from cql_jax.data.errors import DatasetError
from cql_jax.makers import cartpole
from cql_jax.makers import pendulum


@pytest.fixture(scope="module")
def made(tmp_path_factory):
  """A Pendulum and a CartPole Minari dataset written by the makers, and their raw episodes."""
  root = tmp_path_factory.mktemp("minari")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    pendulum.ensure_pendulum_datasets(kinds=("medium",), num_episodes=3, ref_episodes=2)
    cartpole.ensure_cartpole_datasets(["medium"], num_episodes=4, ref_episodes=2)
    out = {}
    for ds_id in (pendulum.dataset_id("medium"), cartpole.dataset_id("medium")):
      episodes = list(minari.load_dataset(ds_id).iterate_episodes())
      out[ds_id] = (minari_io.load_dataset(ds_id), episodes)
    yield out


def _episode_layout(episodes):
  cat = lambda f: np.concatenate([np.asarray(getattr(ep, f)) for ep in episodes])
  return dict(observations=cat("observations"), actions=cat("actions"), rewards=cat("rewards"),
              terminals=cat("terminations"), truncations=cat("truncations"))


def _assert_same(a, b):
  for x, y in zip(a.transitions, b.transitions):
    assert x.dtype == y.dtype
    np.testing.assert_array_equal(x, y)
  np.testing.assert_array_equal(a.episode_returns, b.episode_returns)
  np.testing.assert_array_equal(a.initial_obs, b.initial_obs)
  assert (a.discrete, a.num_actions) == (b.discrete, b.num_actions)
  if not a.discrete:
    np.testing.assert_array_equal(a.action_low, b.action_low)
    np.testing.assert_array_equal(a.action_high, b.action_high)
  assert (a.ref_min_score, a.ref_max_score) == (b.ref_min_score, b.ref_max_score)
  assert a.env_id == b.env_id


@pytest.mark.parametrize("which", ["pendulum", "cartpole"])
def test_arrays_equal_the_minari_path_on_the_same_episodes(made, which):
  module = pendulum if which == "pendulum" else cartpole
  ds_id = module.dataset_id("medium")
  loaded, episodes = made[ds_id]
  arrays = _episode_layout(episodes)
  ours = cql_jax.OfflineDataset.from_arrays(
      **arrays, dataset_id=ds_id, env_id=module.ENV_ID, ref_min_score=loaded.ref_min_score,
      ref_max_score=loaded.ref_max_score)
  _assert_same(ours, loaded)
  # And both against NumPy by hand: transition t of episode e is (o_t, a_t, r_t, o_{t+1}).
  obs = np.concatenate([np.asarray(ep.observations, np.float32)[:-1] for ep in episodes])
  nxt = np.concatenate([np.asarray(ep.observations, np.float32)[1:] for ep in episodes])
  np.testing.assert_array_equal(ours.transitions.obs, obs)
  np.testing.assert_array_equal(ours.transitions.next_obs, nxt)
  np.testing.assert_array_equal(ours.transitions.discount,
                                1.0 - np.concatenate([ep.terminations for ep in episodes]))
  np.testing.assert_allclose(ours.episode_returns, [np.sum(ep.rewards) for ep in episodes],
                             rtol=1e-6)
  if which == "pendulum":  # bounds read from the env's action space: torques in [-2, 2].
    np.testing.assert_array_equal(ours.action_low, [-2.0])
  else:
    assert ours.num_actions == 2 and ours.transitions.action.dtype == np.int32


def test_transition_layout_and_npz_give_the_same_dataset(made, tmp_path):
  ds_id = pendulum.dataset_id("medium")
  loaded, episodes = made[ds_id]
  arrays = _episode_layout(episodes)
  tr = loaded.transitions
  flat = cql_jax.OfflineDataset.from_arrays(
      tr.obs, tr.action, np.concatenate([ep.rewards for ep in episodes]),
      arrays["terminals"], arrays["truncations"], next_observations=tr.next_obs,
      env_id="Pendulum-v1", ref_min_score=loaded.ref_min_score, ref_max_score=loaded.ref_max_score)
  _assert_same(flat, loaded)

  path = npz.save_npz(tmp_path / "pend.npz", **arrays, env_id="Pendulum-v1",
                      env_kwargs={"max_episode_steps": 200},
                      ref_min_score=loaded.ref_min_score, ref_max_score=loaded.ref_max_score)
  from_file = npz.load_npz(path, reward_scale=2.0, reward_bias=-1.0)
  assert from_file.dataset_id == str(path) and from_file.env_kwargs == {"max_episode_steps": 200}
  np.testing.assert_allclose(from_file.transitions.reward, 2.0 * tr.reward - 1.0, rtol=1e-6)
  np.testing.assert_array_equal(from_file.episode_returns, loaded.episode_returns)  # raw
  np.testing.assert_array_equal(from_file.transitions.obs, tr.obs)
  assert [p.name for p in tmp_path.iterdir()] == ["pend.npz"]  # no temporary file left.


def test_dict_observations_and_inferred_bounds(tmp_path):
  rng = np.random.default_rng(0)
  obs = {"goal": rng.standard_normal((7, 2)), "state": rng.standard_normal((7, 3))}
  kwargs = dict(actions=rng.uniform(-1, 1, (5, 2)), rewards=np.arange(5.0),
                terminals=[0, 0, 1, 0, 0], truncations=[0, 0, 0, 0, 1])
  data = cql_jax.OfflineDataset.from_arrays(obs, **kwargs, obs_keys=("state", "goal"))
  assert data.obs_keys == ("state", "goal") and data.obs_dim == 5
  expected = np.concatenate([obs["state"], obs["goal"]], 1).astype(np.float32)
  # Episode 0 holds observation rows 0..3 (3 actions), episode 1 rows 4..6 (2 actions).
  np.testing.assert_array_equal(data.transitions.obs, expected[[0, 1, 2, 4, 5]])
  np.testing.assert_array_equal(data.transitions.next_obs, expected[[1, 2, 3, 5, 6]])
  np.testing.assert_array_equal(data.transitions.discount, [1, 1, 0, 1, 1])
  np.testing.assert_array_equal(data.episode_returns, [0 + 1 + 2, 3 + 4])
  np.testing.assert_array_equal(data.action_low, [-1, -1])  # no env: [-1, 1] fits the data.
  assert sorted(data.observation_space.spaces) == ["goal", "state"]
  path = npz.save_npz(tmp_path / "d.npz", obs, **kwargs)
  again = npz.load_npz(path, obs_keys=("state", "goal"))
  np.testing.assert_array_equal(again.transitions.obs, data.transitions.obs)


def _good(**changes):
  base = dict(observations=np.zeros((6, 3)), actions=np.zeros((4, 1)), rewards=np.zeros(4),
              terminals=np.array([0, 1, 0, 0]), truncations=np.array([0, 0, 0, 1]))
  base.update(changes)
  return base


@pytest.mark.parametrize("changes,message", [
    ({"observations": np.zeros((4, 3))}, "pass next_observations"),
    ({"observations": np.zeros((5, 3))}, r"needs T \+ E = 4 \+ 2 = 6"),
    ({"truncations": np.array([0, 0, 0, 0]), "observations": np.zeros((5, 3))},
     "the last episode does not end"),
    ({"rewards": np.zeros(3)}, r"rewards has shape \(3,\); expected \[T\] = \[4\]"),
    ({"terminals": np.array([0, 2, 0, 0])}, "terminals must be booleans"),
    ({"actions": np.full((4, 1), 3.0)}, "pass action_low and action_high"),
    ({"actions": np.full((4, 1), np.nan)}, "action contains NaN"),
    ({"observations": np.full((6, 3), np.inf)}, "obs contains NaN or inf"),
    ({"actions": np.zeros((0, 1)), "rewards": np.zeros(0), "terminals": np.zeros(0),
      "truncations": np.zeros(0)}, "empty"),
])
def test_bad_arrays_name_the_problem(changes, message):
  with pytest.raises(DatasetError, match=message):
    cql_jax.OfflineDataset.from_arrays(**_good(**changes))


def test_bad_bounds_and_kinds():
  with pytest.raises(DatasetError, match=r"actions span \[0, 0\] but the action bounds"):
    cql_jax.OfflineDataset.from_arrays(**_good(), action_low=[0.5], action_high=[1.0])
  with pytest.raises(DatasetError, match="discrete agent got continuous"):
    cql_jax.OfflineDataset.from_arrays(**_good(), discrete=True)
  with pytest.raises(DatasetError, match=r"must lie in \[0, 2\)"):
    cql_jax.OfflineDataset.from_arrays(**_good(actions=np.array([0, 1, 2, 1])), num_actions=2)
  with pytest.raises(DatasetError, match="are arrays, not dicts"):
    cql_jax.OfflineDataset.from_arrays(**_good(), obs_keys=("observation",))


def test_bad_npz_files(tmp_path):
  with pytest.raises(DatasetError, match="does not exist"):
    npz.load_npz(tmp_path / "missing.npz")
  np.savez(tmp_path / "typo.npz", **{**_good(), "reward": np.zeros(4)})
  with pytest.raises(DatasetError, match=r"unknown keys \['reward'\]"):
    npz.load_npz(tmp_path / "typo.npz")
  parts = _good()
  del parts["terminals"]
  np.savez(tmp_path / "short.npz", **parts)
  with pytest.raises(DatasetError, match=r"missing keys \['terminals'\]"):
    npz.load_npz(tmp_path / "short.npz")
  np.savez(tmp_path / "kw.npz", **_good(), env_kwargs=np.asarray("not json"))
  with pytest.raises(DatasetError, match="must be a JSON object"):
    npz.load_npz(tmp_path / "kw.npz")
  (tmp_path / "junk.npz").write_text("junk")
  with pytest.raises(DatasetError, match="not a readable .npz"):
    npz.load_npz(tmp_path / "junk.npz")
  # D4RL's name for truncations is accepted.
  parts = _good()
  parts["timeouts"] = parts.pop("truncations")
  np.savez(tmp_path / "d4rl.npz", **parts, env_kwargs=np.asarray(json.dumps({})))
  assert npz.load_npz(tmp_path / "d4rl.npz").size == 4


def test_dataset_score_is_the_mean_episode_return_normalized(made):
  ds_id = pendulum.dataset_id("medium")
  loaded, episodes = made[ds_id]
  returns = [float(np.sum(np.asarray(ep.rewards, np.float64))) for ep in episodes]
  mean = np.mean(returns)
  score = scores.dataset_score(loaded)
  assert score["dataset/return"] == pytest.approx(mean, rel=1e-5)
  assert score["dataset/episodes"] == 3
  lo, hi = loaded.ref_min_score, loaded.ref_max_score
  assert score["dataset/normalized_score"] == pytest.approx(100 * (mean - lo) / (hi - lo), rel=1e-5)
  text = scores.comparison_text({"eval/normalized_score": 80.0, "eval/return": -100.0}, score)
  assert text.startswith("policy normalized score 80.0 vs dataset ")
  no_refs = cql_jax.OfflineDataset.from_arrays(**_good())
  assert "dataset/normalized_score" not in scores.dataset_score(no_refs)
  assert scores.comparison_text({"eval/return": 1.0}, scores.dataset_score(no_refs)) == \
      "policy return 1.0 vs dataset 0.0 (+1.0)"
