"""Discrete agent on a tiny MLP: target sync period, CQL conservatism, metrics, acting."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax.discrete import agent as agent_lib
from cql_jax.discrete import networks
from cql_jax.types import Transition

OBS_DIM, NUM_ACTIONS, BATCH = 3, 4, 16
PERIOD = 3


def _config(loss, cql_weight, **overrides):
  config = agent_lib.default_config()
  config.loss = loss
  config.cql.weight = cql_weight
  config.torso = "mlp"
  config.hidden_sizes = (32,)
  config.num_quantiles = 5
  config.num_heads = 3
  config.lr = 3e-3
  config.target_update_period = PERIOD
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def batch():
  """A fixed dataset in which state i always took action i % 2: actions 2 and 3 never appear."""
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(BATCH, OBS_DIM)).astype(np.float32)
  return Transition(
      obs=jnp.asarray(obs),
      action=jnp.asarray(np.arange(BATCH) % 2, jnp.int32),
      reward=jnp.asarray(rng.uniform(size=BATCH), jnp.float32),
      discount=jnp.asarray((np.arange(BATCH) % 5 != 0), jnp.float32),
      next_obs=jnp.asarray(np.roll(obs, -1, axis=0)))


def _make_run(update, num_steps):
  """Runs `update` num_steps times on one fixed batch inside a single compiled scan."""
  def run(state, batch, key):
    def body(state, step_key):
      return update(state, batch, step_key)
    return jax.lax.scan(body, state, jax.random.split(key, num_steps))
  return jax.jit(run)


@pytest.fixture(scope="module")
def compiled():
  """Each agent variant and its jitted update/run, built once for the whole module."""
  out = {}
  for loss in ("dqn", "qrdqn", "rem"):
    for weight in (0.0, 2.0):
      agent = agent_lib.make_discrete_agent(_config(loss, weight), (OBS_DIM,), NUM_ACTIONS)
      out[loss, weight] = dict(agent=agent, update=jax.jit(agent.update),
                               run=_make_run(agent.update, 150))
  return out


def _tree_equal(a, b):
  return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b)))


@pytest.mark.parametrize("loss", ["dqn", "qrdqn", "rem"])
def test_target_syncs_every_period(compiled, batch, loss):
  entry = compiled[loss, 2.0]
  state = entry["agent"].init(jax.random.key(0))
  initial_target = state.target_params
  keys = jax.random.split(jax.random.key(1), 2 * PERIOD + 1)
  for i in range(2 * PERIOD + 1):
    previous_target = state.target_params
    state, metrics = entry["update"](state, batch, keys[i])
    step = i + 1
    assert int(state.step) == step
    synced = step % PERIOD == 0
    assert float(metrics["critic/target_synced"]) == float(synced)
    if synced:
      assert _tree_equal(state.target_params, state.params)
    else:
      assert _tree_equal(state.target_params, previous_target)
      assert not _tree_equal(state.target_params, state.params)
    if step < PERIOD:
      assert _tree_equal(state.target_params, initial_target)
  # A step counter inside the state, not a Python branch: one compilation served every step.
  assert entry["update"]._cache_size() == 1


@pytest.mark.parametrize("loss", ["dqn", "qrdqn", "rem"])
def test_cql_lowers_unseen_action_values(compiled, batch, loss):
  q_unseen, gaps = {}, {}
  for weight in (0.0, 2.0):
    entry = compiled[loss, weight]
    state = entry["agent"].init(jax.random.key(0))  # same init for both weights
    state, metrics = entry["run"](state, batch, jax.random.key(2))
    for value in metrics.values():
      assert np.all(np.isfinite(np.asarray(value)))
    params = state.params
    network = networks.make_q_network(_config(loss, weight), NUM_ACTIONS)
    q = networks.mean_q(network.apply(params, batch.obs), loss)
    q_unseen[weight] = float(q[:, 2:].mean())
    q_data = jnp.take_along_axis(q, batch.action[:, None], axis=1).mean()
    gaps[weight] = float(q_data - q[:, 2:].mean())
  assert q_unseen[2.0] < q_unseen[0.0] - 0.1, q_unseen
  assert gaps[2.0] > gaps[0.0], gaps


def test_metrics_are_finite_scalars(compiled, batch):
  entry = compiled["qrdqn", 2.0]
  state = entry["agent"].init(jax.random.key(3))
  _, metrics = entry["update"](state, batch, jax.random.key(4))
  expected = {"critic/td_loss", "critic/loss", "critic/q_mean", "critic/grad_norm",
              "critic/td_error_abs", "critic/target_mean", "critic/target_synced",
              "cql/penalty", "cql/gap", "cql/logsumexp", "cql/q_data"}
  assert expected <= set(metrics)
  for name, value in metrics.items():
    assert np.shape(value) == (), name
    assert np.isfinite(float(value)), name
  np.testing.assert_allclose(metrics["critic/loss"],
                             metrics["critic/td_loss"] + metrics["cql/penalty"], rtol=1e-5)


def test_baseline_has_zero_penalty(compiled, batch):
  entry = compiled["dqn", 0.0]
  state = entry["agent"].init(jax.random.key(5))
  _, metrics = entry["update"](state, batch, jax.random.key(6))
  assert float(metrics["cql/penalty"]) == 0.0
  assert float(metrics["cql/gap"]) > 0.0  # still logged for the baseline


def test_act_greedy_and_epsilon(batch):
  agent = agent_lib.make_discrete_agent(_config("qrdqn", 1.0, epsilon=1.0), (OBS_DIM,),
                                        NUM_ACTIONS)
  state = agent.init(jax.random.key(7))
  act = jax.jit(agent.act)
  network = networks.make_q_network(_config("qrdqn", 1.0), NUM_ACTIONS)
  greedy = np.argmax(networks.mean_q(network.apply(state.params, batch.obs), "qrdqn"), axis=-1)
  np.testing.assert_array_equal(act(state, batch.obs, jax.random.key(8), True), greedy)
  explored = np.asarray(act(state, batch.obs, jax.random.key(9), False))
  assert explored.dtype == np.int32 and explored.shape == (BATCH,)
  assert np.all((explored >= 0) & (explored < NUM_ACTIONS))
  assert not np.array_equal(explored, greedy)  # epsilon = 1: uniform over 4 actions


def test_cnn_agent_shapes():
  config = _config("rem", 1.0, torso="cnn")
  agent = agent_lib.make_discrete_agent(config, (84, 84, 4), NUM_ACTIONS)
  state = agent.init(jax.random.key(10))
  frames = jnp.zeros((2, 84, 84, 4), jnp.uint8)
  out = networks.make_q_network(config, NUM_ACTIONS).apply(state.params, frames)
  assert out.shape == (2, config.num_heads, NUM_ACTIONS)
  action = agent.act(state, frames, jax.random.key(11), True)
  assert action.shape == (2,)


def test_bc_loss_is_numpy_cross_entropy_and_fits_the_data(batch):
  config = _config("bc", 0.0, lr=1e-2)
  agent = agent_lib.make_discrete_agent(config, (OBS_DIM,), NUM_ACTIONS)
  state = agent.init(jax.random.key(0))
  spec = agent_lib.make_spec(config, (OBS_DIM,), NUM_ACTIONS)
  logits = np.asarray(spec.network.apply(state.params, batch.obs), np.float64)
  log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  expected = -log_probs[np.arange(BATCH), np.asarray(batch.action)].mean()
  loss, metrics = agent_lib.critic_loss(spec, state.params, state, batch, jax.random.key(1))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  assert agent.values(state, batch, jax.random.key(1)) == {}   # no critic to report on.
  state, metrics = _make_run(agent.update, 300)(state, batch, jax.random.key(2))
  # 16 points in general position, 32 hidden units: the classifier fits every data action.
  np.testing.assert_array_equal(np.asarray(agent.act(state, batch.obs, jax.random.key(3), True)),
                                np.asarray(batch.action))
  assert float(metrics["bc/loss"][-1]) < 0.5 * expected
