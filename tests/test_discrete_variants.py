"""The discrete variants as configs of the one agent, and make_agent's dispatch on the config."""
import jax
import numpy as np
import pytest

from cql_jax import agents
from cql_jax.data import minari_io
from cql_jax.discrete import agent as discrete
from cql_jax.discrete import variants
from cql_jax.types import OfflineDataset, Transition


def _dataset(discrete_actions: bool) -> OfflineDataset:
  action = np.zeros(4, np.int32) if discrete_actions else np.zeros((4, 1), np.float32)
  t = Transition(np.zeros((4, 3), np.float32), action, np.zeros(4, np.float32),
                 np.ones(4, np.float32), np.zeros((4, 3), np.float32))
  kind = dict(discrete=True, num_actions=2) if discrete_actions else dict(
      action_low=-np.ones(1, np.float32), action_high=np.ones(1, np.float32))
  return OfflineDataset(t, "test/x-v0", None, {}, None, None, np.zeros(1), np.zeros((1, 3)), **kind)


@pytest.mark.parametrize("name", variants.NAMES)
def test_each_variant_sets_its_loss_and_weight(name):
  base = discrete.default_config()
  base.cql.weight = 2.5
  config = variants.variant_config(name, base)
  assert config.loss == name.replace("cql_", "")
  assert config.cql.weight == (2.5 if name.startswith("cql_") else 0.0)
  assert base.loss == "qrdqn" and base.cql.weight == 2.5      # base is not modified
  if name.startswith("cql_"):
    assert variants.variant_config(name, base, cql_weight=4.0).cql.weight == 4.0
  else:
    assert variants.variant_config(name, base, cql_weight=4.0).cql.weight == 0.0


def test_unknown_variant_names_the_choices():
  with pytest.raises(ValueError, match="cql_qrdqn"):
    variants.variant_config("cql_c51")


def test_make_agent_dispatches_on_the_config_and_checks_the_data():
  config = variants.variant_config("cql_dqn")
  config.torso, config.hidden_sizes = "mlp", (8,)
  agent = agents.make_agent(config, _dataset(discrete_actions=True))
  state = agent.init(jax.random.key(0))
  assert isinstance(state, discrete.DiscreteAgentState)
  assert agent.sweepable == discrete.SWEEPABLE
  with pytest.raises(minari_io.DatasetError, match="discrete"):
    agents.make_agent(config, _dataset(discrete_actions=False))


def test_policy_evaluation_values_a_frozen_policy():
  base = discrete.default_config()
  base.torso, base.loss, base.hidden_sizes = "mlp", "dqn", (8,)
  config = variants.policy_evaluation_config(base)
  assert config.policy_evaluation and config.cql.weight == base.cql.weight
  assert variants.policy_evaluation_config(base, penalty=False).cql.weight == 0.0
  agent = discrete.make_discrete_agent(config, (3,), 2)
  source = discrete.make_discrete_agent(base, (3,), 2).init(jax.random.key(1))
  state = variants.policy_evaluation_state(agent.init(jax.random.key(0)), source.params)
  rng = np.random.default_rng(0)
  batch = Transition(rng.normal(size=(16, 3)).astype(np.float32), rng.integers(0, 2, 16),
                     np.ones(16, np.float32), np.ones(16, np.float32),
                     rng.normal(size=(16, 3)).astype(np.float32))
  new, metrics = jax.jit(agent.update)(state, batch, jax.random.key(2))
  for x, y in zip(jax.tree.leaves(source.params), jax.tree.leaves(new.policy_params)):
    np.testing.assert_array_equal(x, y)          # the policy never moves
  assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(state.params),
                                                      jax.tree.leaves(new.params)))
  # The penalty's first term is Q(s, π(s)) of the frozen greedy policy (NumPy check).
  net = discrete.make_spec(config, (3,), 2).network
  q = np.asarray(net.apply(state.params, batch.obs))
  pi = np.argmax(np.asarray(net.apply(source.params, batch.obs)), axis=1)
  np.testing.assert_allclose(metrics["cql/gap"], np.mean(q[np.arange(16), pi]
                                                         - q[np.arange(16), batch.action]),
                             rtol=1e-5, atol=1e-6)
  other = base.copy_and_resolve_references()
  other.hidden_sizes = (4,)
  with pytest.raises(ValueError, match="hidden_sizes"):
    variants.policy_evaluation_state(agent.init(jax.random.key(0)),
                                     discrete.make_discrete_agent(other, (3,), 2).init(
                                         jax.random.key(3)).params)
