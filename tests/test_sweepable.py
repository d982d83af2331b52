"""The agent contract's sweepable hyperparameters: init(key, hparams) puts them in the state.

Members built by one vmapped init differ only in those arrays, and one compiled update must use
each member's own values; the expectations are closed forms computed here in NumPy.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax.continuous import agent as cql
from cql_jax.discrete import agent as discrete
from cql_jax.discrete import networks as discrete_networks
from cql_jax.types import Transition

ADAM_EPS = 1e-8  # optax.adam's default, used by the continuous agent's optimisers.


def _continuous_agent(**overrides):
  c = cql.default_config()
  c.actor_hidden_sizes = c.critic_hidden_sizes = (8, 8)
  c.cql.num_samples = 3
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  return cql.make_cql_agent(c, 3, -np.ones(2), np.ones(2))


def _batch(rng, size, obs_dim, action):
  return Transition(jnp.asarray(rng.normal(size=(size, obs_dim)), jnp.float32), action,
                    jnp.asarray(rng.normal(size=size), jnp.float32),
                    jnp.asarray(rng.uniform(size=size) > 0.2, jnp.float32),
                    jnp.asarray(rng.normal(size=(size, obs_dim)), jnp.float32))


def test_continuous_sweepable_lists_only_what_the_update_reads():
  assert set(_continuous_agent().sweepable) == {
      "gamma", "polyak", "critic_lr", "cql.weight", "actor_lr", "alpha_lr"}
  assert set(_continuous_agent(**{"cql.lagrange": True}).sweepable) >= {
      "cql.target_gap", "cql.alpha_prime_lr"}
  assert "cql.weight" not in _continuous_agent(**{"cql.weight": 0.0}).sweepable
  assert set(_continuous_agent(algorithm="bc").sweepable) == {"actor_lr", "alpha_lr"}
  assert set(discrete.SWEEPABLE) == {"cql.weight", "gamma", "target_update_period", "lr"}


@pytest.mark.parametrize("make", [_continuous_agent, lambda: discrete.make_discrete_agent(
    discrete.default_config(), (4,), 3)], ids=["continuous", "discrete"])
def test_init_rejects_a_key_it_cannot_sweep(make):
  agent = make()
  with pytest.raises(ValueError, match="sweepable keys"):
    agent.init(jax.random.key(0), {"cql.wieght": 1.0})
  with pytest.raises(ValueError, match="scalar per run"):
    agent.init(jax.random.key(0), {"gamma": jnp.ones(2)})


def test_continuous_vmapped_init_one_update_follows_each_members_adam_step():
  """Adam's first step is Δ = −lr·g/(|g| + ε): the same g for both members (same keys, same
  params), so Δ/lr agrees between them and |Δ/lr| = |g|/(|g| + ε) lies in [0, 1)."""
  agent = _continuous_agent()
  lrs = np.array([1e-4, 3e-3], np.float32)
  hparams = {"critic_lr": jnp.asarray(lrs), "cql.weight": jnp.array([1.0, 5.0]),
             "gamma": jnp.array([0.9, 0.5])}
  states = jax.vmap(agent.init, in_axes=(None, 0))(jax.random.key(0), hparams)
  np.testing.assert_array_equal(states.hparams["cql.weight"], [1.0, 5.0])
  np.testing.assert_array_equal(states.hparams["gamma"], np.float32([0.9, 0.5]))
  np.testing.assert_array_equal(states.critic_opt.hyperparams["learning_rate"], lrs)
  # Defaults come from the config.
  np.testing.assert_array_equal(states.hparams["polyak"], np.float32([5e-3] * 2))
  np.testing.assert_array_equal(states.actor_opt.hyperparams["learning_rate"], np.float32([1e-4] * 2))

  # Same weight and γ for both members, so only the learning rate differs.
  states = jax.vmap(agent.init, in_axes=(None, 0))(jax.random.key(0), {"critic_lr": jnp.asarray(lrs)})
  batch = _batch(np.random.default_rng(0), 16, 3, jnp.asarray(
      np.random.default_rng(1).uniform(-1, 1, (16, 2)), jnp.float32))
  new, _ = jax.jit(jax.vmap(agent.update, in_axes=(0, None, None)))(
      states, batch, jax.random.key(1))
  before = np.stack([_flat(states.critic_params, i) for i in range(2)])
  after = np.stack([_flat(new.critic_params, i) for i in range(2)])
  _assert_first_adam_steps(before, after, lrs)


def _flat(params, member):
  return np.concatenate([np.ravel(x[member]) for x in jax.tree.leaves(params)])


def _assert_first_adam_steps(before, after, lrs):
  """before, after: [2, P] float32 params of two members; lrs: [2] their learning rates.

  Float32 rounding of p + Δ makes the measured Δ exact only to one ulp of p, so every bound
  carries that slack."""
  ulp = np.spacing(np.maximum(np.abs(before), np.abs(after))).astype(np.float64)
  delta = after.astype(np.float64) - before
  ratio, slack = delta / lrs[:, None], ulp / lrs[:, None]
  bad = np.abs(ratio) > 1.0 + slack + 1e-6   # 1e-6: Adam's own float32 arithmetic
  assert not bad.any(), (ratio[bad], slack[bad], before[bad], after[bad])
  big = np.all(np.abs(ratio) > 0.99, axis=0)      # entries where |g| ≫ ε
  assert big.mean() > 0.3
  np.testing.assert_array_less(np.abs(ratio[0] - ratio[1])[big], (slack[0] + slack[1])[big] + 1e-3)


def _discrete_config():
  c = discrete.default_config()
  c.loss, c.torso, c.hidden_sizes, c.lr = "dqn", "mlp", (8,), 1e-3
  return c


def test_discrete_vmapped_init_uses_each_members_gamma_period_and_lr():
  config = _discrete_config()
  agent = discrete.make_discrete_agent(config, (4,), 3)
  lrs = np.array([1e-3, 1e-2], np.float32)
  gammas = np.array([0.9, 0.5], np.float32)
  periods = np.array([2, 3], np.int32)
  states = jax.vmap(agent.init, in_axes=(None, 0))(jax.random.key(0), {"lr": jnp.asarray(lrs), "gamma": jnp.asarray(gammas),
                                       "target_update_period": jnp.asarray(periods)})
  assert states.hparams["target_update_period"].dtype == jnp.int32
  np.testing.assert_array_equal(states.hparams["cql.weight"], [1.0, 1.0])
  rng = np.random.default_rng(0)
  batch = _batch(rng, 16, 4, jnp.asarray(rng.integers(0, 3, 16), jnp.int32))
  update = jax.jit(jax.vmap(agent.update, in_axes=(0, None, None)))
  network = discrete_networks.make_q_network(config, 3)

  # γ: the reported mean target is mean(r + γ·d·max_a Q_target(s', a)), from the raw network.
  q_next = np.stack([np.asarray(network.apply(jax.tree.map(lambda x: x[i], states.target_params),
                                              batch.next_obs)) for i in range(2)])
  want = [np.mean(np.asarray(batch.reward) + g * np.asarray(batch.discount) * q.max(-1))
          for g, q in zip(gammas, q_next)]
  new, metrics = update(states, batch, jax.random.key(1))
  np.testing.assert_allclose(metrics["critic/target_mean"], want, rtol=1e-5)

  # lr: Adam's first step Δ = −lr·g/(|g| + ε); |g| ≫ ε gives ±lr in both members, although
  # their targets (γ) differ, so only the sign pattern may differ there.
  before = np.stack([_flat(states.params, i) for i in range(2)])
  after = np.stack([_flat(new.params, i) for i in range(2)])
  ulp = np.spacing(np.maximum(np.abs(before), np.abs(after))).astype(np.float64)
  ratio = np.abs(after.astype(np.float64) - before) / lrs[:, None]
  assert np.all(ratio <= 1.0 + ulp / lrs[:, None] + 1e-6)
  assert np.mean(ratio > 0.99) > 0.3

  # Period: member i syncs at steps that are multiples of its own period.
  synced = [np.asarray(metrics["critic/target_synced"])]
  state = new
  for i in range(5):
    state, m = update(state, batch, jax.random.key(2 + i))
    synced.append(np.asarray(m["critic/target_synced"]))
  steps = np.arange(1, 7)
  want_sync = (steps[:, None] % periods[None, :] == 0).astype(np.float32)
  np.testing.assert_array_equal(np.stack(synced), want_sync)
  assert update._cache_size() == 1
