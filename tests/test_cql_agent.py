"""Behaviour of the continuous CQL agent's update: bootstrapping, the Lagrangian α′, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax import agents
from cql_jax import train
from cql_jax.continuous import agent as cql
from cql_jax.data import minari_io
from cql_jax.types import OfflineDataset, Transition

import numpy_cql

OBS = np.array([0.5, -0.2, 0.1], np.float32)
ACTION = np.array([0.3], np.float32)


def tiny_config():
  c = cql.default_config()
  c.actor_hidden_sizes = (16, 16)
  c.critic_hidden_sizes = (16, 16)
  c.cql.num_samples = 4
  return c


def self_loop(discount: float, size: int = 64) -> Transition:
  """One transition s -> s with reward 1, repeated: Q* is 1 if it terminates, 1/(1-γ) if not."""
  rep = lambda x: jnp.asarray(np.repeat(x[None], size, axis=0))
  return Transition(obs=rep(OBS), action=rep(ACTION), reward=jnp.ones(size),
                    discount=jnp.full(size, discount), next_obs=rep(OBS))


@pytest.fixture(scope="module")
def bellman_agent():
  c = tiny_config()
  c.cql.weight = 0.0          # pure Bellman backup: the fixed point is known in closed form
  c.backup_entropy = False
  c.gamma = 0.5
  c.polyak = 0.1
  c.critic_lr = 3e-3
  agent = cql.make_cql_agent(c, 3, [-1.0], [1.0])
  return agent, train.compile_chunk(agent, batch_size=16, num_steps=400)


def q_at(agent_state, critic):
  return np.asarray(critic.apply(agent_state.critic_params, OBS[None], ACTION[None, None]))[:, 0, 0]


def test_termination_stops_bootstrap_truncation_does_not(bellman_agent):
  """r = 1 on a self-loop with γ = 0.5: a terminal step has Q = 1 exactly, while a truncated
  one keeps bootstrapping, Q = 1 + γ·Q(s, a' ~ π) ≥ 2 (more where the critic extrapolates
  upwards to the policy's action, the over-estimation CQL exists to remove)."""
  agent, chunk = bellman_agent
  critic = cql.networks.CriticEnsemble(2, (16, 16))
  q = {}
  for discount in (0.0, 1.0):
    state = agent.init(jax.random.key(0))
    for i in range(3):
      state, _ = chunk(state, self_loop(discount), jax.random.key(10 + i))
    q[discount] = q_at(state, critic)
  np.testing.assert_allclose(q[0.0], 1.0, atol=0.05)
  assert np.all(q[1.0] > 1.9), q


@pytest.fixture(scope="module")
def lagrange_agent():
  c = tiny_config()
  c.cql.lagrange = True
  c.cql.alpha_prime_lr = 1e-2
  agent = cql.make_cql_agent(c, 3, [-1.0], [1.0])
  return agent, train.compile_chunk(agent, batch_size=16, num_steps=50)


@pytest.mark.parametrize("target_gap,direction", [(-50.0, +1), (50.0, -1)])
def test_lagrangian_alpha_prime_follows_the_gap(lagrange_agent, target_gap, direction):
  """α′ rises while the CQL gap exceeds τ and falls while it is below (τ is a state hparam)."""
  agent, chunk = lagrange_agent
  state = agent.init(jax.random.key(1), {"cql.target_gap": target_gap})
  state, metrics = chunk(state, self_loop(1.0), jax.random.key(2))
  gap = np.asarray(metrics["cql/gap"])
  assert direction * (gap.mean() - target_gap) > 0  # the gap really is on the intended side
  assert direction * float(state.log_alpha_prime) > 0.2


def test_update_metrics_are_finite_and_named(lagrange_agent):
  agent, chunk = lagrange_agent
  state, metrics = chunk(agent.init(jax.random.key(3)), self_loop(1.0), jax.random.key(4))
  for key in ["critic/loss", "critic/bellman_error", "cql/gap", "cql/alpha_prime", "actor/loss",
              "alpha/value"]:
    assert key in metrics and np.all(np.isfinite(np.asarray(metrics[key]))), key
  assert int(state.step) == 50


def test_hyperparameters_vmap_over_one_compiled_update():
  """Seeds and α values sweep together: per-run cql.weight lives in the state."""
  c = tiny_config()
  agent = cql.make_cql_agent(c, 3, [-1.0], [1.0])
  init_keys, loop_keys = train.seed_keys([5, 6])
  states = jax.vmap(agent.init)(init_keys, {"cql.weight": jnp.array([0.0, 50.0], jnp.float32)})
  states = jax.tree.map(jnp.copy, states)
  chunk = train.compile_chunk(agent, batch_size=16, num_steps=30, num_seeds=2)
  states, metrics = chunk(states, self_loop(1.0), train.chunk_keys(loop_keys, 0))
  q = np.asarray(metrics["critic/q_data"])[:, -1]
  # A heavy penalty pushes Q at sampled actions down relative to the data action: the
  # penalised run must end with the larger gap-closing effect, i.e. a smaller gap.
  gap = np.asarray(metrics["cql/gap"])[:, -1]
  assert gap[1] < gap[0], (gap, q)


def test_cql_h_penalty_matches_numpy_recomputation_from_the_critic():
  """The reported gap, penalty and loss equal the importance-sampled logsumexp over uniform,
  π(s) and π(s') proposals recomputed in NumPy from the critic's raw outputs (same keys)."""
  c = tiny_config()
  c.cql.weight = 3.0
  agent = cql.make_cql_agent(c, 3, [-1.0], [1.0])
  rng = np.random.default_rng(7)
  size = 16
  batch = Transition(obs=jnp.asarray(rng.normal(size=(size, 3)), jnp.float32),
                     action=jnp.asarray(rng.uniform(-0.9, 0.9, (size, 1)), jnp.float32),
                     reward=jnp.asarray(rng.normal(size=size), jnp.float32),
                     discount=jnp.asarray(rng.uniform(size=size) > 0.3, jnp.float32),
                     next_obs=jnp.asarray(rng.normal(size=(size, 3)), jnp.float32))
  state = agent.init(jax.random.key(8))
  # A few updates first, so the target critic differs from the critic and the policy from init.
  chunk = train.compile_chunk(agent, batch_size=size, num_steps=5)
  state, _ = chunk(state, batch, jax.random.key(9))
  want = numpy_cql.critic_step_terms(c, jax.device_get(state), batch, update_seed=10)
  _, metrics = jax.jit(agent.update)(state, batch, jax.random.key(10))
  for name, value in want.items():
    np.testing.assert_allclose(float(metrics[name]), value, rtol=2e-4, atol=2e-5, err_msg=name)
  assert abs(want["cql/gap"]) > 1e-2 and want["cql/penalty"] != 0.0


def test_continuous_agent_rejects_discrete_dataset():
  t = Transition(np.zeros((4, 3), np.float32), np.zeros(4, np.int32), np.zeros(4, np.float32),
                 np.ones(4, np.float32), np.zeros((4, 3), np.float32))
  ds = OfflineDataset(t, "test/discrete-v0", None, {}, None, None, np.zeros(1), np.zeros((1, 3)),
                      discrete=True, num_actions=2)
  with pytest.raises(minari_io.DatasetError, match="discrete"):
    agents.make_agent(tiny_config(), ds)


def test_unbounded_action_space_is_rejected():
  with pytest.raises(ValueError, match="bounded"):
    cql.make_cql_agent(tiny_config(), 3, [-np.inf], [np.inf])


def _alive(tree) -> bool:
  return not any(leaf.is_deleted() for leaf in jax.tree.leaves(tree) if isinstance(leaf, jax.Array))


def test_compile_chunk_deletes_the_state_it_is_given_as_documented(lagrange_agent):
  agent, chunk = lagrange_agent
  state = train.init_states(agent, jax.random.key(11))
  kept = jax.tree.map(jnp.copy, state)          # the docstring's way to keep one
  new_state, _ = chunk(state, self_loop(1.0), jax.random.key(12))
  assert not _alive(state) and _alive(kept) and _alive(new_state)
  with pytest.raises(RuntimeError, match="deleted"):
    np.asarray(jax.tree.leaves(state)[0])


def test_fit_leaves_the_callers_states_alive(lagrange_agent):
  """fit copies a given start state, and on_chunk's states may be kept past the next chunk.
  (The fixture's chunk shape: fit's program is the one the persistent cache already holds.)"""
  agent, _ = lagrange_agent
  start = train.init_states(agent, jax.random.key(13))
  seen = []
  final = train.fit(agent, self_loop(1.0), seed=0, num_steps=100, steps_per_chunk=50,
                    batch_size=16, state=start, on_chunk=lambda step, s, m: seen.append((step, s)))
  assert [step for step, _ in seen] == [50, 100]
  assert _alive(start) and all(_alive(s) for _, s in seen) and _alive(final)
  assert int(start.step) == 0 and int(seen[0][1].step) == 50 and int(final.step) == 100
  for a, b in zip(jax.tree.leaves(seen[-1][1]), jax.tree.leaves(final)):  # the last one is final
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
