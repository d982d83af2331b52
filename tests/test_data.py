"""Tests for the data layer: Minari round trip, validation errors, scores, generators."""
import warnings

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from cql_jax import scores
from cql_jax.data import minari_io, paths
from cql_jax.makers import generate, pendulum
from cql_jax.data.minari_io import DatasetError
from cql_jax.types import OfflineDataset, Transition


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
  root = tmp_path / "minari"
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
  return root


def _write(dataset_id, episodes, obs_space, act_space, **kwargs):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # missing author/permalink/env warnings are expected here.
    return minari.create_dataset_from_buffers(
        dataset_id=dataset_id, buffer=episodes, observation_space=obs_space,
        action_space=act_space, **kwargs)


def _episode(i, steps, obs_dim=2, terminated=False, discrete=False, rng=None):
  rng = rng or np.random.default_rng(i)
  obs = rng.standard_normal((steps + 1, obs_dim)).astype(np.float32)
  if discrete:
    actions = rng.integers(0, 3, size=steps)
  else:
    actions = rng.uniform(-1, 1, size=(steps, 1)).astype(np.float32)
  terms = [False] * steps
  truncs = [False] * steps
  if terminated:
    terms[-1] = True
  else:
    truncs[-1] = True
  return EpisodeBuffer(id=i, observations=obs, actions=actions,
                       rewards=list(rng.standard_normal(steps)), terminations=terms,
                       truncations=truncs)


def _transition(t=4, obs_dim=2, act_dim=1):
  return Transition(
      obs=np.zeros((t, obs_dim), np.float32), action=np.zeros((t, act_dim), np.float32),
      reward=np.zeros(t, np.float32), discount=np.ones(t, np.float32),
      next_obs=np.zeros((t, obs_dim), np.float32))


# ---------------------------------------------------------------------------
# Paths.
# ---------------------------------------------------------------------------


def test_datasets_root_follows_env_var(minari_root, monkeypatch):
  assert paths.datasets_root() == minari_root.resolve()
  monkeypatch.delenv("MINARI_DATASETS_PATH")
  root = paths.datasets_root()
  assert root == paths.default_datasets_root()
  assert root.parts[-2:] == ("data", "minari")
  # Minari itself must now resolve ids against the same directory.
  assert str(minari.storage.get_dataset_path("x/y-v0")).startswith(str(root))


# ---------------------------------------------------------------------------
# Round trips.
# ---------------------------------------------------------------------------


def test_pendulum_round_trip(minari_root):
  info = pendulum.ensure_pendulum_datasets(kinds=("medium-expert",), num_episodes=4, seed=3,
                                           ref_episodes=4)
  ds_id = "cql_jax/pendulum/medium-expert-v0"
  assert info[ds_id]["generated"] and info[ds_id]["seconds"] > 0
  assert (minari_root / "cql_jax" / "pendulum" / "medium-expert-v0" / "data").is_dir()

  data = minari_io.load_dataset(ds_id)
  tr = data.transitions
  assert data.size == 800 and data.obs_dim == 3 and data.action_dim == 1
  assert tr.obs.shape == tr.next_obs.shape == (800, 3) and tr.action.shape == (800, 1)
  for x in tr:
    assert x.dtype == np.float32
  # Raw Pendulum torques are stored; the agent rescales with the env's bounds.
  assert np.abs(tr.action).max() <= 2.0 and np.abs(tr.action).max() > 1.0
  # Pendulum only truncates: every transition bootstraps, no step is dropped.
  np.testing.assert_array_equal(tr.discount, 1.0)
  # next_obs is the following obs inside an episode.
  np.testing.assert_array_equal(tr.next_obs[:199], tr.obs[1:200])
  np.testing.assert_array_equal(data.initial_obs, tr.obs[::200])
  np.testing.assert_allclose(data.episode_returns, tr.reward.reshape(4, 200).sum(1), rtol=1e-5)
  assert data.env_id == "Pendulum-v1" and data.env_kwargs["max_episode_steps"] == 200
  assert data.ref_min_score == pytest.approx(info[ds_id]["ref_min_score"])
  assert data.ref_max_score == pytest.approx(info[ds_id]["ref_max_score"])
  assert data.ref_max_score > data.ref_min_score + 500
  assert not data.discrete and data.num_actions is None
  metadata = minari.load_dataset(ds_id).storage.metadata
  assert metadata["algorithm_name"] == "scripted-pendulum-medium-expert"
  assert "probability 0.7" in metadata["description"]
  assert metadata["generation_seed"] == 3 and metadata["generation_seconds"] > 0
  assert metadata["behaviour_mean_return"] == pytest.approx(info[ds_id]["mean_return"])

  # Reward transform applies to transitions only; returns stay raw for scoring.
  shifted = minari_io.load_dataset(ds_id, reward_scale=2.0, reward_bias=-1.0)
  np.testing.assert_allclose(shifted.transitions.reward, 2.0 * tr.reward - 1.0, rtol=1e-6)
  np.testing.assert_allclose(shifted.episode_returns, data.episode_returns)

  # Made once: a second call skips the existing id.
  again = pendulum.ensure_pendulum_datasets(kinds=("medium-expert",), num_episodes=4, seed=3)
  assert again == {ds_id: {"generated": False}}

  # On the device the agent trains on [-1, 1]: device_data maps a to 2(a - low)/(high - low) - 1
  # = a/2 with Pendulum's bounds [-2, 2], and the raw torques are refused.
  from cql_jax import agents
  from cql_jax.data import buffer
  assert list(data.action_low) == [-2.0] and list(data.action_high) == [2.0]
  device = agents.device_data(data)
  np.testing.assert_allclose(np.asarray(device.action), tr.action / 2.0, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(device.obs), tr.obs)
  with pytest.raises(ValueError, match=r"spans \[-2, 2\].*device_data\(dataset\)"):
    buffer.to_device(tr)



def test_generation_is_deterministic():
  a = pendulum.make_episodes("medium-replay", 3, seed=7)
  b = pendulum.make_episodes("medium-replay", 3, seed=7)
  c = pendulum.make_episodes("medium-replay", 3, seed=8)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x.observations, y.observations)
    np.testing.assert_array_equal(x.actions, y.actions)
  assert not np.array_equal(a[0].observations, c[0].observations)
  assert [ep.id for ep in a] == [0, 1, 2]


def test_termination_stops_bootstrapping_but_truncation_does_not(minari_root):
  obs_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
  act_space = gym.spaces.Box(-1, 1, (1,), np.float32)
  episodes = [_episode(0, 5, terminated=True), _episode(1, 3, terminated=False)]
  _write("test/term-v0", episodes, obs_space, act_space)
  data = minari_io.load_dataset("test/term-v0")
  np.testing.assert_array_equal(data.transitions.discount, [1, 1, 1, 1, 0, 1, 1, 1])
  # The truncated episode's last transition is kept, with its true next observation.
  np.testing.assert_array_equal(data.transitions.next_obs[-1], episodes[1].observations[-1])
  np.testing.assert_array_equal(data.transitions.obs[5], episodes[1].observations[0])
  assert data.env_id is None and data.ref_min_score is None
  with pytest.raises(ValueError, match="ref_min_score=None"):
    scores.normalized_score(data.episode_returns, data.ref_min_score, data.ref_max_score)


def test_discrete_actions_and_action_kind_check(minari_root):
  obs_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
  _write("test/disc-v0", [_episode(0, 4, discrete=True)], obs_space, gym.spaces.Discrete(3))
  data = minari_io.load_dataset("test/disc-v0")
  assert data.discrete and data.num_actions == 3 and data.action_dim == 1
  assert data.transitions.action.dtype == np.int32 and data.transitions.action.shape == (4,)
  minari_io.check_action_kind(data, discrete=True)
  with pytest.raises(DatasetError, match="continuous agent got discrete"):
    minari_io.check_action_kind(data, discrete=False)

  _write("test/cont-v0", [_episode(0, 4)], obs_space, gym.spaces.Box(-1, 1, (1,), np.float32))
  cont = minari_io.load_dataset("test/cont-v0")
  minari_io.check_action_kind(cont, discrete=False)
  with pytest.raises(DatasetError, match="discrete agent got continuous"):
    minari_io.check_action_kind(cont, discrete=True)


def test_dict_observations_concatenate_sorted_keys(minari_root):
  obs_space = gym.spaces.Dict({
      "observation": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
      "desired_goal": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
      "achieved_goal": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
  })
  rng = np.random.default_rng(0)
  obs = {k: rng.standard_normal((4, s.shape[0])).astype(np.float32)
         for k, s in obs_space.spaces.items()}
  ep = EpisodeBuffer(id=0, observations=obs, actions=np.zeros((3, 1), np.float32),
                     rewards=[0.0, 1.0, 0.0], terminations=[False, False, False],
                     truncations=[False, False, True])
  _write("test/dict-v0", [ep], obs_space, gym.spaces.Box(-1, 1, (1,), np.float32))
  data = minari_io.load_dataset("test/dict-v0")
  expected = np.concatenate([obs["achieved_goal"], obs["desired_goal"], obs["observation"]], 1)
  np.testing.assert_array_equal(data.transitions.obs, expected[:-1])
  only = minari_io.load_dataset("test/dict-v0", obs_keys=["observation", "desired_goal"])
  assert only.obs_dim == 5
  np.testing.assert_array_equal(only.transitions.next_obs[:, :3], obs["observation"][1:])
  with pytest.raises(DatasetError, match="not in the observation dict"):
    minari_io.load_dataset("test/dict-v0", obs_keys=["goal"])


# ---------------------------------------------------------------------------
# Error cases.
# ---------------------------------------------------------------------------


def test_missing_dataset_names_the_fix(minari_root):
  obs_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
  _write("test/present-v0", [_episode(0, 2)], obs_space, gym.spaces.Box(-1, 1, (1,), np.float32))
  with pytest.raises(DatasetError) as err:
    minari_io.load_dataset("D4RL/antmaze/umaze-v1")
  message = str(err.value)
  assert "minari download D4RL/antmaze/umaze-v1" in message
  assert "download=True" in message
  assert "test/present-v0" in message  # lists what is available locally.


def test_empty_dataset(minari_root):
  obs_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
  _write("test/empty-v0", [], obs_space, gym.spaces.Box(-1, 1, (1,), np.float32))
  with pytest.raises(DatasetError, match="no transitions"):
    minari_io.load_dataset("test/empty-v0")
  with pytest.raises(DatasetError, match="empty"):
    minari_io.validate_transitions(_transition(t=0))


class _FakeEpisode:

  def __init__(self, **kw):
    self.__dict__.update(kw)


class _FakeMinari:
  """Stands in for a corrupt MinariDataset (Minari refuses to write one)."""

  action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
  total_episodes = 1

  def iterate_episodes(self):
    yield _FakeEpisode(id=0, observations=np.zeros((3, 2)), actions=np.zeros((3, 1)),
                       rewards=np.zeros(3), terminations=np.zeros(3, bool),
                       truncations=np.zeros(3, bool))


def test_mismatched_lengths():
  with pytest.raises(DatasetError, match="episode 0 has 3 observations"):
    minari_io.from_minari(_FakeMinari(), dataset_id="fake/bad-v0")
  bad = _transition()._replace(next_obs=np.zeros((3, 2), np.float32))
  with pytest.raises(DatasetError, match="mismatched leading lengths"):
    minari_io.validate_transitions(bad)


@pytest.mark.parametrize("field", ["obs", "next_obs", "reward", "action"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values(field, value):
  tr = _transition()
  arr = getattr(tr, field).copy()
  arr.reshape(-1)[2] = value  # second transition for 2-d fields, third for rewards.
  with pytest.raises(DatasetError, match=f"{field} contains NaN or inf"):
    minari_io.validate_transitions(tr._replace(**{field: arr}))


def test_non_finite_values_in_stored_episode(minari_root):
  obs_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
  ep = _episode(0, 3)
  ep.rewards[1] = float("nan")
  _write("test/nan-v0", [ep], obs_space, gym.spaces.Box(-1, 1, (1,), np.float32))
  with pytest.raises(DatasetError, match="reward contains NaN"):
    minari_io.load_dataset("test/nan-v0")


def test_validate_shapes_discount_and_kinds():
  minari_io.validate_transitions(_transition())
  with pytest.raises(DatasetError, match="discount must be 0"):
    minari_io.validate_transitions(_transition()._replace(discount=np.full(4, 0.99, np.float32)))
  with pytest.raises(DatasetError, match=r"must both be \[T, O\]"):
    minari_io.validate_transitions(_transition()._replace(
        obs=np.zeros(4, np.float32), next_obs=np.zeros(4, np.float32)))
  with pytest.raises(DatasetError, match=r"continuous actions must be \[T, A\]"):
    minari_io.validate_transitions(_transition()._replace(action=np.zeros(4, np.float32)))
  ints = _transition()._replace(action=np.array([0, 1, 2, 1], np.int32))
  minari_io.validate_transitions(ints, num_actions=3)  # inferred as discrete.
  with pytest.raises(DatasetError, match="continuous agent got discrete"):
    minari_io.validate_transitions(ints, discrete=False)
  with pytest.raises(DatasetError, match="discrete agent got continuous"):
    minari_io.validate_transitions(_transition(), discrete=True)
  with pytest.raises(DatasetError, match=r"must lie in \[0, 2\)"):
    minari_io.validate_transitions(ints, num_actions=2)


# ---------------------------------------------------------------------------
# Scores and policies.
# ---------------------------------------------------------------------------


def test_normalized_score_matches_hand_computation():
  # 100 * (-650 - -1200) / (-150 - -1200) = 100 * 550 / 1050.
  assert scores.normalized_score(-650.0, -1200.0, -150.0) == pytest.approx(52.38095238)
  np.testing.assert_allclose(scores.normalized_score([-1200.0, -150.0, -100.0], -1200.0, -150.0),
                             [0.0, 100.0, 104.76190476])
  with pytest.raises(ValueError, match="no reference scores"):
    scores.normalized_score(1.0, None, 5.0)
  with pytest.raises(ValueError, match="divides by zero"):
    scores.normalized_score(1.0, 2.0, 2.0)


def test_expert_beats_random_by_a_wide_margin():
  expert = generate.average_return("Pendulum-v1", pendulum.expert_policy, 8, seed=0)
  random = generate.average_return("Pendulum-v1", pendulum.random_policy, 8, seed=0)
  assert expert > -300.0  # ~-150 on average; 8 episodes leave room for a hard start.
  assert expert - random > 600.0
  medium = generate.average_return("Pendulum-v1", pendulum.medium_policy(), 8, seed=0)
  assert random < medium < expert


def test_unknown_kind_and_bad_id(minari_root):
  with pytest.raises(ValueError, match="unknown Pendulum dataset kind"):
    pendulum.ensure_pendulum_datasets(kinds=("hard",))
  with pytest.raises(ValueError, match="Malformed dataset ID"):
    generate.write_dataset("bad id!", [], "Pendulum-v1", ref_min_score=0.0, ref_max_score=1.0,
                           algorithm_name="x", description="x")


def test_offline_dataset_type_is_what_loader_returns(minari_root):
  obs_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
  _write("test/type-v0", [_episode(0, 2)], obs_space, gym.spaces.Box(-1, 1, (1,), np.float32))
  data = minari_io.load_dataset("test/type-v0")
  assert isinstance(data, OfflineDataset) and isinstance(data.transitions, Transition)
