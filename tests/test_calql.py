"""Cal-QL: the calibrated penalty against its NumPy twin, and returns-to-go against hand sums."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_cql
from cql_jax import train
from cql_jax.continuous import agent as cql
from cql_jax.continuous import losses
from cql_jax.data import returns
from cql_jax.types import ReturnTransition, Transition


def tiny_config():
  c = cql.default_config()
  c.actor_hidden_sizes = (8,)
  c.critic_hidden_sizes = (8,)
  c.cql.num_samples = 3
  c.cql.weight = 3.0
  c.cql.calibrated = True
  return c


def test_calibrate_bounds_only_the_marked_columns():
  q = np.array([[[-5.0, -5.0, 2.0, -1.0]]], np.float32)           # [E=1, B=1, K=4]
  out = np.asarray(losses.calibrate(q, np.array([0.5], np.float32),
                                    np.array([False, False, True, True])))
  np.testing.assert_array_equal(out, [[[-5.0, -5.0, 2.0, 0.5]]])
  # The gradient passes where Q is above the bound and stops where the bound replaced it.
  grad = jax.grad(lambda x: losses.calibrate(x, jnp.array([0.5]),
                                             np.array([False, False, True, True])).sum())(q)
  np.testing.assert_array_equal(np.asarray(grad), [[[1.0, 1.0, 1.0, 0.0]]])
  with pytest.raises(AssertionError):
    losses.calibrate(q, np.zeros(2, np.float32), np.ones(4, bool))


@pytest.fixture(scope="module")
def trained():
  """A tiny Cal-QL agent after 5 updates, a batch, and its jitted update (compiled once)."""
  c = tiny_config()
  agent = cql.make_cql_agent(c, 3, [-1.0], [1.0])
  rng = np.random.default_rng(3)
  size = 16
  plain = Transition(obs=jnp.asarray(rng.normal(size=(size, 3)), jnp.float32),
                     action=jnp.asarray(rng.uniform(-0.9, 0.9, (size, 1)), jnp.float32),
                     reward=jnp.asarray(rng.normal(size=size), jnp.float32),
                     discount=jnp.asarray(rng.uniform(size=size) > 0.3, jnp.float32),
                     next_obs=jnp.asarray(rng.normal(size=(size, 3)), jnp.float32))
  warm = ReturnTransition(*plain, mc_return=jnp.zeros(size, jnp.float32))
  state = agent.init(jax.random.key(4))
  state, _ = train.compile_chunk(agent, batch_size=size, num_steps=5)(state, warm,
                                                                      jax.random.key(5))
  # Q of the policy's mode at each state: samples of π fall on both sides of it.
  v = np.asarray(agent.values(state, warm, jax.random.key(6))["v"], np.float64)
  return c, jax.jit(agent.update), state, plain, v


@pytest.mark.parametrize("bound_level", ["mixed", "all_above"])
def test_calibrated_penalty_matches_numpy_recomputation(trained, bound_level):
  """Gap, penalty, loss and the bounded share equal the NumPy twin's, with the return-to-go
  bound cutting some policy samples' Q ('mixed') or every one of them ('all_above')."""
  c, update, state, plain, v = trained
  mc = v if bound_level == "mixed" else np.full(v.shape, np.abs(v).max() * 10 + 100.0)
  batch = ReturnTransition(*plain, mc_return=jnp.asarray(mc, jnp.float32))
  want = numpy_cql.critic_step_terms(c, jax.device_get(state), batch, update_seed=10)
  _, metrics = update(state, batch, jax.random.key(10))
  for name, value in want.items():
    np.testing.assert_allclose(float(metrics[name]), value, rtol=2e-4, atol=2e-5, err_msg=name)
  if bound_level == "mixed":
    assert 0.0 < want["cql/bounded_fraction"] < 1.0
  else:
    assert want["cql/bounded_fraction"] == 1.0


def test_calibrated_without_a_penalty_is_refused():
  c = tiny_config()
  c.cql.weight = 0.0
  with pytest.raises(ValueError, match="no penalty"):
    cql.make_cql_agent(c, 3, [-1.0], [1.0])


def _flat(episodes):
  """Flat transitions of episodes given as (rewards, terminated_at_end); each episode's
  observations are distinct integers, so episode_starts finds the breaks from them."""
  obs, nxt, rew, disc = [], [], [], []
  base = 0
  for rewards, terminated in episodes:
    t = len(rewards)
    states = base + np.arange(t + 1, dtype=np.float32)
    base += 1000
    obs.append(states[:-1, None]), nxt.append(states[1:, None]), rew.append(rewards)
    d = np.ones(t, np.float32)
    if terminated:
      d[-1] = 0.0
    disc.append(d)
  cat = lambda xs: np.concatenate([np.asarray(x, np.float32) for x in xs])
  return Transition(obs=cat(obs), action=np.zeros((sum(map(len, rew)), 1), np.float32),
                    reward=cat(rew), discount=cat(disc), next_obs=cat(nxt))


def test_return_to_go_matches_hand_sums():
  g = 0.9
  data = _flat([([1.0, 2.0, 3.0], True),      # terminated
                ([-1.0, -1.0], False),        # truncated: nothing after its last step
                ([5.0], False)])
  want = [1 + g * 2 + g * g * 3, 2 + g * 3, 3.0,
          -1 + g * -1, -1.0,
          5.0]
  np.testing.assert_allclose(returns.return_to_go(data, g), want, rtol=1e-6)
  ret = returns.with_return_to_go(data, g)
  assert isinstance(ret, ReturnTransition) and ret.mc_return.dtype == np.float32
  np.testing.assert_array_equal(ret.obs, data.obs)


def test_sparse_failure_episodes_get_the_value_of_failing_forever():
  """AntMaze-style rewards after the transform (failure −5, success +5): an episode of nothing
  but failures is worth −5/(1−γ) at every step; one that reaches the goal keeps its sum."""
  g = 0.99
  data = _flat([([-5.0, -5.0, -5.0], False), ([-5.0, 5.0], True)])
  got = returns.return_to_go(data, g, sparse_failure_reward=-5.0)
  np.testing.assert_allclose(got[:3], -5.0 / (1 - g), rtol=1e-6)
  np.testing.assert_allclose(got[3:], [-5 + g * 5, 5.0], rtol=1e-6)
  # Without the sparse convention the failing episode is the truncated sum.
  np.testing.assert_allclose(returns.return_to_go(data, g)[:3],
                             [-5 * (1 + g + g * g), -5 * (1 + g), -5.0], rtol=1e-6)


def test_termination_mid_episode_restarts_the_sum():
  got = returns.episode_return_to_go([1.0, 1.0, 1.0], [False, True, False], 0.5)
  np.testing.assert_allclose(got, [1.5, 1.0, 1.0])
  with pytest.raises(ValueError):
    returns.episode_return_to_go([1.0], [False, True], 0.5)
