"""The dataset registry (where an id comes from) and what a config's data selection loads."""
import numpy as np
import pytest

from cql_jax import runner
from cql_jax.configs import base
from cql_jax.configs import classic
from cql_jax.configs import locomotion
from cql_jax.data import minari_io
from cql_jax.data import npz
from cql_jax.data import paths
from cql_jax.data.errors import DatasetError
from cql_jax.makers import registry


def test_source_of_each_namespace():
  assert registry.source_of("cql_jax/pendulum/medium-v0").kind == registry.GENERATED
  assert registry.source_of("cql_jax/cartpole/random-v0").kind == registry.GENERATED
  assert registry.source_of("cql_jax/hopper/medium-v0") == (registry.MADE, "hopper")
  assert registry.source_of("D4RL/antmaze/umaze-v1").kind == registry.MINARI
  assert registry.source_of("mujoco/hopper/medium-v0").kind == registry.MINARI


def test_generated_ids_are_made_on_demand(tmp_path, monkeypatch):
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
  ds_id = "cql_jax/pendulum/expert-v0"
  assert not paths.dataset_exists(ds_id)
  # seed unset (None), as a CartPole config's generation group leaves settings: the default.
  registry.ensure_available(ds_id, generation={"num_episodes": 2, "ref_episodes": 2,
                                               "seed": None})
  assert paths.dataset_exists(ds_id)
  assert minari_io.load_dataset(ds_id).size == 2 * 200  # num_episodes was used.
  with pytest.raises(DatasetError, match=r"nothing makes this id.*cql_jax/pendulum/medium-v0"):
    registry.ensure_available("cql_jax/pendulum/meduim-v0")


def test_missing_messages_tell_downloadable_from_local(tmp_path, monkeypatch):
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
  registry.ensure_available("cql_jax/pendulum/medium-v0",
                            generation={"num_episodes": 1, "ref_episodes": 1})
  with pytest.raises(DatasetError) as err:
    registry.ensure_available("cql_jax/pendulum/medium-v0x")
  assert "Close local ids: cql_jax/pendulum/medium-v0" in str(err.value)

  with pytest.raises(DatasetError) as err:
    registry.ensure_available("mujoco/hopper/medium-v0", download_command="RELAUNCH --download")
  message = str(err.value)
  assert "Minari remote dataset" in message and "downloadable" in message
  assert "RELAUNCH --download" in message and "minari download mujoco/hopper/medium-v0" in message
  assert "cannot be downloaded" not in message

  with pytest.raises(DatasetError) as err:
    registry.ensure_available("cql_jax/hopper/medium-v0")
  message = str(err.value)
  assert "cannot be downloaded" in message and "local namespace" in message
  assert "python -m experiments.make_datasets --env=hopper" in message
  assert "Minari remote" not in message

  with pytest.raises(DatasetError) as err:
    registry.ensure_available("cql_jax/hoper/medium-v0")
  message = str(err.value)
  assert "no maker here produces it" in message
  assert "cql_jax/hopper/medium-v0" in message  # a close id the project makes.

  with pytest.raises(DatasetError) as err:
    registry.ensure_available("cql_jax/acrobot-dqn/expert-v0")
  message = str(err.value)
  assert "cannot be downloaded" in message and "online DQN" in message
  assert "python -m experiments.make_datasets --env=acrobot-dqn" in message


def test_dataset_id_override_replaces_the_whole_selection(pendulum_minari_root):
  del pendulum_minari_root
  config = locomotion.get_config("hopper-medium-expert")
  assert runner.dataset_ids(config) == ["mujoco/hopper/medium-v0", "mujoco/hopper/expert-v0"]
  config = base.override(config, {"dataset_id": "cql_jax/pendulum/medium-v0"})
  dataset = runner.load_data(config)  # nothing appended, nothing else looked up.
  assert dataset.dataset_id == "cql_jax/pendulum/medium-v0" and dataset.size == 4 * 200


def test_variant_without_data_is_refused_at_load_time_and_rescued_by_an_override(
    pendulum_minari_root, tmp_path):
  del pendulum_minari_root
  config = locomotion.get_config("hopper-medium-replay")  # building the config is fine.
  assert config.dataset_id is None
  with pytest.raises(DatasetError, match="hopper-medium-replay has no Minari counterpart"):
    runner.load_data(config)
  rescued = runner.load_data(base.override(config, {"dataset_id": "cql_jax/pendulum/medium-v0"}))
  assert rescued.env_id == "Pendulum-v1"
  rng = np.random.default_rng(0)
  path = npz.save_npz(tmp_path / "mine.npz", rng.standard_normal((4, 3)),
                      rng.uniform(-2, 2, (3, 1)), np.ones(3), np.zeros(3, bool),
                      [False, False, True], env_id="Pendulum-v1")
  from_file = runner.load_data(base.override(config, {"dataset_path": str(path)}))
  assert from_file.dataset_id == str(path) and from_file.size == 3


def test_joined_ids_are_concatenated(pendulum_minari_root):
  del pendulum_minari_root
  one = runner.load_data(classic.get_config("medium"))
  both = runner.load_data(base.override(
      classic.get_config("medium"),
      {"dataset_id": "cql_jax/pendulum/medium-v0+cql_jax/pendulum/medium-v0"}))
  assert both.size == 2 * one.size
  np.testing.assert_array_equal(both.transitions.obs, np.concatenate([one.transitions.obs] * 2))
  np.testing.assert_array_equal(both.episode_returns, np.tile(one.episode_returns, 2))
