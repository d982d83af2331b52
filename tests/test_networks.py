"""Networks against NumPy forward passes written here (fixed parameters)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax.continuous import networks

O, A, B, N = 3, 2, 4, 5


def np_critic(p, obs, actions):
  """Q of one critic as the plain MLP on concat(s, a) it is meant to equal."""
  w_in = np.concatenate([p["obs_in"]["kernel"], p["action_in"]["kernel"]], axis=0)
  out = np.zeros(actions.shape[:2])
  for b in range(obs.shape[0]):
    for n in range(actions.shape[1]):
      x = np.maximum(np.concatenate([obs[b], actions[b, n]]) @ w_in + p["obs_in"]["bias"], 0)
      layers = sorted(p["torso"].keys(), key=lambda k: int(k.split("_")[-1]))
      for i, name in enumerate(layers):
        x = x @ p["torso"][name]["kernel"] + p["torso"][name]["bias"]
        if i < len(layers) - 1:
          x = np.maximum(x, 0)
      out[b, n] = x[0]
  return out


@pytest.fixture(scope="module")
def ensemble():
  net = networks.CriticEnsemble(num_critics=3, hidden_sizes=(8, 6))
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(B, O)).astype(np.float32)
  actions = rng.uniform(-1, 1, size=(B, N, A)).astype(np.float32)
  params = net.init(jax.random.key(0), obs, actions)
  return net, params, obs, actions


def test_critic_ensemble_matches_numpy_concat_mlp(ensemble):
  net, params, obs, actions = ensemble
  q = np.asarray(net.apply(params, obs, actions))
  assert q.shape == (3, B, N)
  stacked = jax.tree.map(np.asarray, params["params"]["critics"])
  for e in range(3):
    member = jax.tree.map(lambda x: x[e], stacked)
    np.testing.assert_allclose(q[e], np_critic(member, obs, actions), rtol=1e-4, atol=1e-5)


def test_ensemble_members_are_initialised_independently(ensemble):
  _, params, _, _ = ensemble
  kernel = np.asarray(params["params"]["critics"]["obs_in"]["kernel"])
  assert kernel.shape[0] == 3
  assert not np.allclose(kernel[0], kernel[1])


def test_actor_clamps_log_std_and_samples_in_bounds():
  actor = networks.TanhGaussianActor(A, (8,), log_std_min=-5.0, log_std_max=2.0)
  obs = 1e3 * np.random.default_rng(1).normal(size=(B, O)).astype(np.float32)
  params = actor.init(jax.random.key(1), obs)
  params = jax.tree.map(lambda x: x * 1e3, params)  # drive the raw log-std far out of range
  mean, log_std = actor.apply(params, obs)
  assert float(log_std.min()) >= -5.0 and float(log_std.max()) <= 2.0
  a, logp = networks.sample_tanh_gaussian(mean, log_std, jax.random.key(2), N)
  assert a.shape == (B, N, A) and logp.shape == (B, N)
  assert float(jnp.abs(a).max()) <= 1.0
  assert bool(jnp.all(jnp.isfinite(logp)))
