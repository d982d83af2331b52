"""CartPole datasets: behaviour policies, termination vs truncation, Minari round trip, training."""
import jax
import numpy as np
import pytest

from cql_jax import agents
from cql_jax import evaluation
from cql_jax import train
from cql_jax.makers import cartpole
from cql_jax.makers import generate
from cql_jax.data import minari_io
from cql_jax.discrete.agent import default_config


def test_expert_balances_and_random_does_not():
  expert = generate.average_return(cartpole.ENV_ID, cartpole.expert_policy, 4, seed=0)
  random = generate.average_return(cartpole.ENV_ID, cartpole.random_policy, 8, seed=0)
  assert expert == 500.0  # every episode reaches the time limit.
  assert random < 60.0


def test_medium_replay_improves_over_blocks():
  episodes = cartpole.make_episodes("medium-replay", 40, seed=0)
  returns = generate.episode_returns(episodes)
  assert [ep.id for ep in episodes] == list(range(40))
  # Block 0 is uniform random, block 9 the medium policy.
  assert returns[:4].mean() < returns[-4:].mean()
  for ep in episodes:
    assert np.asarray(ep.actions).dtype.kind == "i"
    assert set(np.unique(ep.actions)) <= {0, 1}


@pytest.fixture()
def tmp_datasets(tmp_path, monkeypatch):
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
  return tmp_path


def test_ensure_writes_loadable_datasets_with_right_discounts(tmp_datasets):
  info = cartpole.ensure_cartpole_datasets(["random", "expert"], num_episodes=3, ref_episodes=2)
  assert all(v["generated"] for v in info.values())
  again = cartpole.ensure_cartpole_datasets(["random", "expert"], num_episodes=3, ref_episodes=2)
  assert not any(v["generated"] for v in again.values())

  random = minari_io.load_dataset(cartpole.dataset_id("random"))
  assert random.discrete and random.num_actions == 2 and random.env_id == cartpole.ENV_ID
  assert random.ref_max_score == 500.0 and random.ref_min_score < 60.0
  # Random episodes end by the pole falling: exactly one discount-0 step per episode, the last.
  discount = random.transitions.discount
  assert discount.sum() == random.size - 3
  ends = np.cumsum(random.episode_returns).astype(int) - 1  # reward 1 per step
  np.testing.assert_array_equal(np.flatnonzero(discount == 0.0), ends)

  # Expert episodes are cut by the 500-step limit: a truncation, so the backup bootstraps.
  expert = minari_io.load_dataset(cartpole.dataset_id("expert"))
  np.testing.assert_array_equal(expert.episode_returns, [500.0] * 3)
  assert np.all(expert.transitions.discount == 1.0)


def test_discrete_agent_trains_and_evaluates_through_the_common_loop(tmp_datasets):
  cartpole.ensure_cartpole_datasets(["medium"], num_episodes=4, ref_episodes=2)
  dataset = minari_io.load_dataset(cartpole.dataset_id("medium"))
  config = default_config()
  config.torso, config.hidden_sizes, config.num_quantiles = "mlp", (16,), 8
  agent = agents.make_agent(config, dataset)
  data = agents.device_data(dataset)
  state = train.init_states(agent, jax.random.key(0))
  before = jax.tree.map(np.asarray, state.params)
  seen = []
  state = train.fit(agent, data, seed=0, num_steps=20, steps_per_chunk=10, batch_size=8,
                    state=state, on_chunk=lambda step, _, metrics: seen.append((step, metrics)))
  assert [step for step, _ in seen] == [10, 20]
  assert np.isfinite(seen[-1][1]["critic/loss"]) and seen[-1][1]["cql/penalty"] > 0.0
  assert int(state.step) == 20
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), before, jax.device_get(state.params))
  assert any(jax.tree.leaves(moved))
  result = evaluation.evaluate_agent(agent, state, dataset, num_episodes=2, seed=0)
  assert result.returns.shape == (2,) and np.all(result.lengths >= 1)
  assert result.normalized is not None
