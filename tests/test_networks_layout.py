"""Critic's feature-major layout and low-precision matmul option."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax.continuous import networks


def _row_major_q(params, obs, actions):
  """Plain concat-free MLP on [B, N, H] activations, from the same parameter tree."""
  p = params["params"]
  h = obs @ p["obs_in"]["kernel"] + p["obs_in"]["bias"]
  h = jax.nn.relu(h[:, None, :] + actions @ p["action_in"]["kernel"])
  torso = p["torso"]
  num = len(torso)
  for i in range(num):
    h = h @ torso[f"Dense_{i}"]["kernel"] + torso[f"Dense_{i}"]["bias"]
    if i < num - 1:
      h = jax.nn.relu(h)
  return h[..., 0]


@pytest.fixture(scope="module")
def inputs():
  key = jax.random.key(0)
  obs_key, act_key = jax.random.split(key)
  return (jax.random.normal(obs_key, (5, 7)),
          jax.random.uniform(act_key, (5, 4, 2), minval=-1.0, maxval=1.0))


@pytest.mark.parametrize("hidden", [(16,), (16, 8), (16, 8, 8)])
def test_critic_matches_row_major_mlp(inputs, hidden):
  obs, actions = inputs
  critic = networks.Critic(hidden)
  params = critic.init(jax.random.key(1), obs, actions)
  shapes = jax.tree.map(jnp.shape, params)["params"]
  assert shapes["obs_in"] == {"kernel": (7, 16), "bias": (16,)}
  assert shapes["action_in"] == {"kernel": (2, 16)}
  assert shapes["torso"][f"Dense_{len(hidden) - 1}"] == {"kernel": (hidden[-1], 1), "bias": (1,)}
  q = critic.apply(params, obs, actions)
  assert q.shape == (5, 4)
  np.testing.assert_allclose(q, _row_major_q(params, obs, actions), rtol=1e-5, atol=1e-5)


def test_bfloat16_matmuls_close_to_float32(inputs):
  obs, actions = inputs
  exact = networks.CriticEnsemble(2, (32, 32))
  fast = networks.CriticEnsemble(2, (32, 32), matmul_dtype=jnp.bfloat16)
  params = exact.init(jax.random.key(2), obs, actions)

  def loss(net, p):
    return jnp.mean(net.apply(p, obs, actions) ** 2)
  q_exact, q_fast = exact.apply(params, obs, actions), fast.apply(params, obs, actions)
  assert q_fast.dtype == jnp.float32
  np.testing.assert_allclose(q_fast, q_exact, rtol=0.05, atol=0.02)
  g_exact = jax.grad(lambda p: loss(exact, p))(params)
  g_fast = jax.grad(lambda p: loss(fast, p))(params)
  for a, b in zip(jax.tree.leaves(g_exact), jax.tree.leaves(g_fast)):
    assert b.dtype == jnp.float32
    np.testing.assert_allclose(b, a, rtol=0.1, atol=0.02 * float(jnp.max(jnp.abs(a))) + 1e-6)
