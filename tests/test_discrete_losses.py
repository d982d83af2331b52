"""Discrete losses against NumPy twins written with plain loops, on small fixed inputs."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax.discrete import losses

B, A, NQ, K = 3, 4, 5, 3
GAMMA = 0.9


def _np_huber(x, kappa):
  return 0.5 * x * x if abs(x) <= kappa else kappa * (abs(x) - 0.5 * kappa)


def _np_dqn(q_tm1, a_tm1, r_t, d_t, q_t_target, gamma, kappa, q_t_online=None):
  out = []
  for b in range(q_tm1.shape[0]):
    selector = q_t_target[b] if q_t_online is None else q_t_online[b]
    best = 0
    for a in range(len(selector)):
      if selector[a] > selector[best]:
        best = a
    target = r_t[b] + gamma * d_t[b] * q_t_target[b, best]
    out.append(_np_huber(target - q_tm1[b, a_tm1[b]], kappa))
  return np.array(out)


def _np_quantile(dist_tm1, a_tm1, r_t, d_t, dist_t_target, gamma, kappa, dist_t_online=None):
  n = dist_tm1.shape[-1]
  out = []
  for b in range(dist_tm1.shape[0]):
    selector = dist_t_target[b] if dist_t_online is None else dist_t_online[b]
    means = [sum(selector[a]) / n for a in range(selector.shape[0])]
    best = int(np.argmax(means))
    total = 0.0
    for i in range(n):
      tau = (2 * i + 1) / (2 * n)
      row = 0.0
      for j in range(n):
        z = r_t[b] + gamma * d_t[b] * dist_t_target[b, best, j]
        u = z - dist_tm1[b, a_tm1[b], i]
        row += abs(tau - (1.0 if u < 0 else 0.0)) * _np_huber(u, kappa) / kappa
      total += row / n
    out.append(total)
  return np.array(out)


def _np_cql(q_tm1, a_tm1, weight):
  out = []
  for b in range(q_tm1.shape[0]):
    lse = math.log(sum(math.exp(v) for v in q_tm1[b]))
    out.append(weight * (lse - q_tm1[b, a_tm1[b]]))
  return np.array(out)


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  return dict(
      q_tm1=rng.normal(size=(B, A)).astype(np.float32) * 2,
      q_t=rng.normal(size=(B, A)).astype(np.float32) * 2,
      q_t_online=rng.normal(size=(B, A)).astype(np.float32),
      dist_tm1=rng.normal(size=(B, A, NQ)).astype(np.float32) * 2,
      dist_t=rng.normal(size=(B, A, NQ)).astype(np.float32) * 2,
      dist_t_online=rng.normal(size=(B, A, NQ)).astype(np.float32),
      heads_tm1=rng.normal(size=(B, K, A)).astype(np.float32),
      heads_t=rng.normal(size=(B, K, A)).astype(np.float32),
      a_tm1=np.array([0, 3, 1], np.int32),
      r_t=np.array([1.0, -0.5, 0.0], np.float32),
      d_t=np.array([1.0, 0.0, 1.0], np.float32),
  )


def test_huber_matches_definition():
  xs = np.array([-3.0, -1.0, -0.2, 0.0, 0.5, 2.5], np.float32)
  for kappa in (1.0, 0.5):
    got = losses.huber(jnp.asarray(xs), kappa)
    np.testing.assert_allclose(got, [_np_huber(x, kappa) for x in xs], rtol=1e-6)


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("kappa", [1.0, 0.5])
def test_dqn_loss(data, double, kappa):
  online = data["q_t_online"] if double else None
  fn = jax.jit(losses.dqn_loss, static_argnames=("gamma", "kappa"))
  out = fn(data["q_tm1"], data["a_tm1"], data["r_t"], data["d_t"], data["q_t"],
           gamma=GAMMA, kappa=kappa, q_t_online=online)
  want = _np_dqn(data["q_tm1"], data["a_tm1"], data["r_t"], data["d_t"], data["q_t"], GAMMA,
                 kappa, online)
  np.testing.assert_allclose(out.loss, want, rtol=1e-5)
  assert out._fields == ("loss", "td_error_abs", "target")
  selector = data["q_t"] if online is None else online
  target = [data["r_t"][b] + GAMMA * data["d_t"][b] * data["q_t"][b, int(np.argmax(selector[b]))]
            for b in range(B)]
  np.testing.assert_allclose(out.target, target, rtol=1e-5)
  np.testing.assert_allclose(
      out.td_error_abs, [abs(target[b] - data["q_tm1"][b, data["a_tm1"][b]]) for b in range(B)],
      rtol=1e-5)


def test_dqn_terminal_ignores_next_state(data):
  """discount_t = 0 means the target is the reward alone, whatever Q(s', .) says."""
  loss_a = losses.dqn_loss(data["q_tm1"], data["a_tm1"], data["r_t"], data["d_t"],
                           data["q_t"], GAMMA).loss
  loss_b = losses.dqn_loss(data["q_tm1"], data["a_tm1"], data["r_t"], data["d_t"],
                           data["q_t"] + 100.0, GAMMA).loss
  np.testing.assert_allclose(loss_a[1], loss_b[1])
  assert not np.allclose(loss_a[0], loss_b[0])


def test_dqn_gradient_only_through_q_tm1(data):
  def total(q_tm1, q_t):
    return losses.dqn_loss(q_tm1, data["a_tm1"], data["r_t"], data["d_t"], q_t, GAMMA)[0].sum()
  g_tm1, g_t = jax.grad(total, argnums=(0, 1))(data["q_tm1"], data["q_t"])
  np.testing.assert_array_equal(g_t, 0.0)
  # Only the data action's entry of each row receives gradient.
  mask = np.zeros((B, A), bool)
  mask[np.arange(B), data["a_tm1"]] = True
  np.testing.assert_array_equal(np.asarray(g_tm1)[~mask], 0.0)


def test_quantile_midpoints():
  np.testing.assert_allclose(losses.quantile_midpoints(4), [0.125, 0.375, 0.625, 0.875])


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("kappa", [1.0, 2.0])
def test_quantile_huber_loss(data, double, kappa):
  online = data["dist_t_online"] if double else None
  fn = jax.jit(losses.quantile_huber_loss, static_argnames=("gamma", "kappa"))
  loss = fn(data["dist_tm1"], data["a_tm1"], data["r_t"], data["d_t"], data["dist_t"],
            gamma=GAMMA, kappa=kappa, dist_t_online=online).loss
  want = _np_quantile(data["dist_tm1"], data["a_tm1"], data["r_t"], data["d_t"], data["dist_t"],
                      GAMMA, kappa, online)
  np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_quantile_loss_is_minimised_at_target_quantiles():
  """With one action and a deterministic target, the optimum puts every quantile on the target."""
  dist = jnp.zeros((1, 1, NQ))
  r = jnp.array([2.0])
  d = jnp.array([0.0])
  a = jnp.array([0], jnp.int32)
  at_target = losses.quantile_huber_loss(dist + 2.0, a, r, d, dist, GAMMA).loss
  off_target = losses.quantile_huber_loss(dist + 1.5, a, r, d, dist, GAMMA).loss
  assert float(at_target[0]) == 0.0 and float(off_target[0]) > 0.0


def test_rem_weights_are_convex():
  alpha = losses.rem_weights(jax.random.key(0), 7)
  assert alpha.shape == (7,)
  assert np.all(np.asarray(alpha) >= 0)
  np.testing.assert_allclose(alpha.sum(), 1.0, rtol=1e-6)


def test_rem_loss_matches_mixture_dqn(data):
  alpha = np.asarray(losses.rem_weights(jax.random.key(1), K))
  loss = jax.jit(losses.rem_loss, static_argnames=("gamma",))(
      data["heads_tm1"], data["a_tm1"], data["r_t"], data["d_t"], data["heads_t"], alpha,
      gamma=GAMMA).loss
  mix_tm1 = np.zeros((B, A), np.float32)
  mix_t = np.zeros((B, A), np.float32)
  for b in range(B):
    for k in range(K):
      mix_tm1[b] += alpha[k] * data["heads_tm1"][b, k]
      mix_t[b] += alpha[k] * data["heads_t"][b, k]
  want = _np_dqn(mix_tm1, data["a_tm1"], data["r_t"], data["d_t"], mix_t, GAMMA, 1.0)
  np.testing.assert_allclose(loss, want, rtol=1e-5)


@pytest.mark.parametrize("weight", [0.0, 1.0, 4.0])
def test_cql_penalty(data, weight):
  out = jax.jit(losses.cql_penalty)(data["q_tm1"], data["a_tm1"], weight)
  np.testing.assert_allclose(out.penalty, _np_cql(data["q_tm1"], data["a_tm1"], weight),
                             rtol=1e-5, atol=1e-6)
  gap = _np_cql(data["q_tm1"], data["a_tm1"], 1.0)
  np.testing.assert_allclose(out.gap, gap, rtol=1e-5)
  np.testing.assert_allclose(out.gap.mean(), gap.mean(), rtol=1e-5)
  assert np.all(gap > 0)  # logsumexp exceeds any single entry


def test_cql_penalty_gradient_pushes_down_other_actions(data):
  grad = jax.grad(lambda q: losses.cql_penalty(q, data["a_tm1"], 1.0)[0].sum())(data["q_tm1"])
  grad = np.asarray(grad)
  for b in range(B):
    for a in range(A):
      # d/dQ = softmax(Q) - 1{a = a_data}: negative at the data action, positive elsewhere.
      assert (grad[b, a] < 0) == (a == data["a_tm1"][b])


def test_shape_errors_raise(data):
  with pytest.raises(AssertionError):  # actions must be [B]
    losses.dqn_loss(data["q_tm1"], data["a_tm1"][:, None], data["r_t"], data["d_t"],
                    data["q_t"], GAMMA)
  with pytest.raises(AssertionError):  # next-state values must match
    losses.dqn_loss(data["q_tm1"], data["a_tm1"], data["r_t"], data["d_t"],
                    data["q_t"][:, :2], GAMMA)
  with pytest.raises(AssertionError):  # quantile loss wants [B, A, Nq]
    losses.quantile_huber_loss(data["q_tm1"], data["a_tm1"], data["r_t"], data["d_t"],
                               data["q_t"], GAMMA)
  with pytest.raises(AssertionError):  # float actions
    losses.cql_penalty(data["q_tm1"], data["a_tm1"].astype(np.float32), 1.0)
  with pytest.raises(AssertionError):  # alpha length must equal K
    losses.rem_loss(data["heads_tm1"], data["a_tm1"], data["r_t"], data["d_t"],
                    data["heads_t"], jnp.ones(K + 1) / (K + 1), GAMMA)
  with pytest.raises(AssertionError):  # batch sizes disagree
    losses.cql_penalty(data["q_tm1"], data["a_tm1"][:2], 1.0)
