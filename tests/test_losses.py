"""Each loss in cql_jax.continuous.losses against a NumPy twin written here with plain loops."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from cql_jax.continuous import losses
from cql_jax.continuous import networks

RNG = np.random.default_rng(0)
E, B, M = 2, 5, 7


def np_logsumexp(x):
  m = max(x)
  return m + math.log(sum(math.exp(v - m) for v in x))


def test_soft_td_target_matches_numpy():
  next_q = RNG.normal(size=(E, B)).astype(np.float32)
  reward = RNG.normal(size=B).astype(np.float32)
  discount = np.array([1, 0, 1, 1, 0], np.float32)
  logp = RNG.normal(size=B).astype(np.float32)
  got = losses.soft_td_target(next_q, reward, discount, 0.9, logp, 0.3)
  want = [reward[b] + 0.9 * discount[b] * (min(next_q[e, b] for e in range(E)) - 0.3 * logp[b])
          for b in range(B)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  det = losses.soft_td_target(next_q, reward, discount, 0.9)
  want_det = [reward[b] + 0.9 * discount[b] * min(next_q[:, b]) for b in range(B)]
  np.testing.assert_allclose(det, want_det, rtol=1e-5)


def test_no_bootstrap_through_termination_in_target():
  next_q = np.full((E, B), 1e3, np.float32)
  reward = np.arange(B, dtype=np.float32)
  got = losses.soft_td_target(next_q, reward, np.zeros(B, np.float32), 0.99)
  np.testing.assert_allclose(got, reward)


def test_bellman_error_matches_numpy():
  q = RNG.normal(size=(E, B)).astype(np.float32)
  y = RNG.normal(size=B).astype(np.float32)
  per_critic = losses.bellman_error(q, y)
  want = [sum((q[e, b] - y[b]) ** 2 for b in range(B)) / B for e in range(E)]
  np.testing.assert_allclose(per_critic, want, rtol=1e-5)
  # The critic loss is their sum; the logged "critic/bellman_error" their mean.
  np.testing.assert_allclose(np.sum(per_critic), sum(want), rtol=1e-5)
  np.testing.assert_allclose(np.mean(per_critic), sum(want) / E, rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
@pytest.mark.parametrize("subtract", [False, True])
def test_importance_sampled_logsumexp_matches_numpy(temperature, subtract):
  q = RNG.normal(size=(E, B, M)).astype(np.float32)
  logd = RNG.normal(size=(B, M)).astype(np.float32)
  got = losses.importance_sampled_logsumexp(q, logd, temperature, subtract)
  for e in range(E):
    for b in range(B):
      x = [q[e, b, m] / temperature - logd[b, m] for m in range(M)]
      want = temperature * (np_logsumexp(x) - (math.log(M) if subtract else 0.0))
      np.testing.assert_allclose(got[e, b], want, rtol=1e-5)


def test_cql_gap_and_fixed_penalty_match_numpy():
  soft = RNG.normal(size=(E, B)).astype(np.float32)
  q_data = RNG.normal(size=(E, B)).astype(np.float32)
  gap = losses.cql_gap(soft, q_data)
  want_gap = [sum(soft[e, b] - q_data[e, b] for b in range(B)) / B for e in range(E)]
  np.testing.assert_allclose(gap, want_gap, rtol=1e-5)
  penalty, dual = losses.cql_penalty(gap, 5.0)
  np.testing.assert_allclose(penalty, 5.0 * sum(want_gap), rtol=1e-5)
  assert float(dual) == 0.0


def test_lagrangian_penalty_matches_numpy():
  gap = np.array([3.0, 1.0], np.float32)
  penalty, dual = losses.cql_penalty(jnp.asarray(gap), 2.0, jnp.asarray(0.5), 1.5)
  np.testing.assert_allclose(penalty, 0.5 * 2.0 * ((3 - 1.5) + (1 - 1.5)), rtol=1e-6)
  np.testing.assert_allclose(dual, -0.5 * 2.0 * ((3 - 1.5) + (1 - 1.5)) / 2, rtol=1e-6)


@pytest.mark.parametrize("gap,direction", [(4.0, +1), (0.5, -1)])
def test_lagrange_multiplier_rises_above_and_falls_below_threshold(gap, direction):
  """Dual gradient descent on log α′ must raise α′ while gap > τ and lower it while gap < τ."""
  import optax
  tau = 2.0
  def dual(log_ap):
    return losses.cql_penalty(jnp.full((E,), gap), 5.0, jnp.exp(log_ap), tau)[1]
  tx = optax.adam(1e-2)
  log_ap = jnp.asarray(0.0)
  opt = tx.init(log_ap)
  for _ in range(20):
    upd, opt = tx.update(jax.grad(dual)(log_ap), opt)
    log_ap = optax.apply_updates(log_ap, upd)
  assert direction * float(log_ap) > 0.15


def test_sac_bc_and_temperature_losses_match_numpy():
  q_pi = RNG.normal(size=(E, B)).astype(np.float32)
  logp = RNG.normal(size=B).astype(np.float32)
  loss = losses.sac_actor_loss(q_pi, logp, 0.2)
  np.testing.assert_allclose(loss, np.mean([0.2 * logp[b] - min(q_pi[:, b]) for b in range(B)]),
                             rtol=1e-5)
  logp_data = RNG.normal(size=B).astype(np.float32)
  bc = losses.bc_actor_loss(logp_data, logp, 0.2)
  np.testing.assert_allclose(bc, np.mean(0.2 * logp - logp_data), rtol=1e-5)
  t_loss = losses.temperature_loss(jnp.asarray(0.3), logp, -1.0)
  np.testing.assert_allclose(t_loss, -0.3 * np.mean(logp - 1.0), rtol=1e-5)
  # Entropy below target (log π large) must push log α up: negative gradient.
  g = jax.grad(lambda la: losses.temperature_loss(la, jnp.full(B, 2.0), -1.0))(0.0)
  assert float(g) < 0


def test_shape_errors_raise():
  with pytest.raises(AssertionError):
    losses.bellman_error(np.zeros((B,)), np.zeros((B,)))
  with pytest.raises(AssertionError):
    losses.cql_gap(np.zeros((E, B)), np.zeros((E, B + 1)))
  with pytest.raises(AssertionError):
    losses.importance_sampled_logsumexp(np.zeros((E, B)), np.zeros((B, M)))


def test_tanh_gaussian_log_prob_matches_numpy_and_normalises():
  mean = np.array([[0.3]], np.float32)
  log_std = np.array([[-0.5]], np.float32)
  u = np.array([[[-2.0], [0.1], [1.5]]], np.float32)
  got = networks.tanh_gaussian_log_prob(mean, log_std, u)
  sd = math.exp(-0.5)
  want = [(-0.5 * ((v - 0.3) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)
           - math.log(1 - math.tanh(v) ** 2)) for v in u[0, :, 0]]
  np.testing.assert_allclose(got[0], want, rtol=1e-4)
  density = lambda a: float(jnp.exp(networks.tanh_gaussian_log_prob_of_action(
      mean, log_std, jnp.full((1, 1, 1), a), eps=1e-9)[0, 0]))
  total, _ = integrate.quad(density, -1 + 1e-9, 1 - 1e-9, limit=200)
  np.testing.assert_allclose(total, 1.0, atol=2e-3)


def test_importance_sampled_logsumexp_converges_to_quadrature():
  """On a 1-D action space the IS estimate approaches log ∫_{-1}^{1} exp Q(a) da as N grows."""
  q_fn = lambda a: 3.0 * np.sin(2.0 * a) + a ** 2
  exact = math.log(integrate.quad(lambda a: math.exp(q_fn(a)), -1.0, 1.0)[0])
  errors = {}
  key = jax.random.key(0)
  for n in [10, 100, 1_000, 100_000]:
    key, uni_key, pi_key = jax.random.split(key, 3)
    # Half uniform proposals, half from a tanh-Gaussian: the mixture CQL(H) uses.
    a_uni = jax.random.uniform(uni_key, (1, n, 1), minval=-1.0, maxval=1.0)
    mean, log_std = jnp.array([[0.6]]), jnp.array([[-0.7]])
    a_pi, logp_pi = networks.sample_tanh_gaussian(mean, log_std, pi_key, n)
    acts = np.concatenate([np.asarray(a_uni), np.asarray(a_pi)], axis=1)[..., 0]
    logd = np.concatenate([np.full((1, n), -math.log(2.0)), np.asarray(logp_pi)], axis=1)
    est = losses.importance_sampled_logsumexp(q_fn(acts)[None].astype(np.float32),
                                              logd.astype(np.float32), 1.0, True)
    errors[n] = abs(float(est[0, 0]) - exact)
  assert errors[100_000] < 0.01, errors
  assert errors[100_000] < errors[10], errors
