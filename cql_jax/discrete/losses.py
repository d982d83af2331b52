"""Discrete-action value losses and the CQL(H) penalty, as pure functions.

Every function here takes a batch on the leading axis and is built from a per-example core that
`jax.vmap` lifts, so the maths reads like the paper's one-transition equations. Each returns a
NamedTuple of per-example arrays, shape [B]: `loss` is elementwise so the caller chooses the
reduction (a plain mean in the agent, importance weights elsewhere); the agent names and logs
the metrics.

Naming follows rlax's time suffixes, as in cql_jax.continuous.losses: `_tm1` is the transition's
start state s (and the data action a_tm1), `_t` the next state s'; `r_t` the reward,
`discount_t` the dataset's flag (0.0 at a true termination, 1.0 otherwise) and `gamma` the
agent's discount, applied here. Shape letters: B batch, A actions, Nq quantiles, K REM heads.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

Array = chex.Array


class TDLoss(NamedTuple):
  """loss: [B] per-example TD loss; td_error_abs: [B] |target − prediction| (for quantiles, the
  mean over all predicted/target pairs); target: [B] the bootstrapped target (its quantile mean)."""
  loss: Array
  td_error_abs: Array
  target: Array


class CQLPenalty(NamedTuple):
  """Per-example [B]: penalty = weight·gap; gap = logsumexp − q_data; logsumexp_a Q(s, a);
  q_data = Q(s, a_data)."""
  penalty: Array
  gap: Array
  logsumexp: Array
  q_data: Array


def huber(x: Array, kappa: float = 1.0) -> Array:
  """Elementwise Huber function: 0.5 x^2 for |x| <= kappa, kappa (|x| - 0.5 kappa) beyond.

  With kappa = 1 this is Dopamine's `tf.losses.huber_loss` and optax's `huber_loss(delta=1)`.
  """
  abs_x = jnp.abs(x)
  quadratic = jnp.minimum(abs_x, kappa)
  return 0.5 * quadratic**2 + kappa * (abs_x - quadratic)


def _check_transition(values_tm1, a_tm1, r_t, discount_t, values_t, rank):
  chex.assert_rank([values_tm1, a_tm1, r_t, discount_t, values_t], [rank, 1, 1, 1, rank])
  chex.assert_type(a_tm1, int)
  chex.assert_equal_shape([values_tm1, values_t])
  chex.assert_equal_shape([a_tm1, r_t, discount_t])
  chex.assert_equal_shape_prefix([values_tm1, a_tm1], 1)


def _greedy_action(q_t_selector: Array) -> Array:
  """argmax over the last axis of [A] values; ties go to the lowest index, as in jnp.argmax."""
  return jnp.argmax(q_t_selector, axis=-1)


def dqn_loss(q_tm1: Array, a_tm1: Array, r_t: Array, discount_t: Array, q_t_target: Array,
             gamma: float, kappa: float = 1.0,
             q_t_online: Optional[Array] = None) -> TDLoss:
  """One-step Q-learning with a Huber TD loss.

  target = r_t + gamma * discount_t * Q_target(s', a*), where a* = argmax_a Q_target(s', a), or
  argmax_a Q_online(s', a) when `q_t_online` is given (double DQN). The target is a constant.

  Args:
    q_tm1: [B, A] online Q(s, .).
    a_tm1: [B] int, actions taken in the data.
    r_t: [B] rewards.
    discount_t: [B] 0.0 at terminations, 1.0 otherwise.
    q_t_target: [B, A] target-network Q(s', .).
    gamma: the agent's discount factor.
    kappa: Huber threshold, in units of Q (return units).
    q_t_online: optional [B, A] online Q(s', .) used only to select a* (double DQN).

  Returns:
    TDLoss with the [B] Huber loss.
  """
  _check_transition(q_tm1, a_tm1, r_t, discount_t, q_t_target, rank=2)
  q_t_selector = q_t_target if q_t_online is None else q_t_online
  chex.assert_equal_shape([q_t_selector, q_t_target])

  def per_example(q_tm1, a_tm1, r_t, discount_t, q_t_target, q_t_selector):
    a_star = _greedy_action(q_t_selector)
    target = r_t + gamma * discount_t * q_t_target[a_star]
    td_error = jax.lax.stop_gradient(target) - q_tm1[a_tm1]
    return huber(td_error, kappa), td_error, target

  loss, td_error, target = jax.vmap(per_example)(
      q_tm1, a_tm1, r_t, discount_t, q_t_target, q_t_selector)
  return TDLoss(loss, jnp.abs(td_error), target)


def quantile_midpoints(num_quantiles: int) -> Array:
  """[Nq] quantile midpoints tau_hat_i = (2 i + 1) / (2 Nq), i = 0..Nq-1 (QR-DQN, Dabney 2018)."""
  return (2.0 * jnp.arange(num_quantiles) + 1.0) / (2.0 * num_quantiles)


def quantile_huber_loss(dist_tm1: Array, a_tm1: Array, r_t: Array, discount_t: Array,
                        dist_t_target: Array, gamma: float, kappa: float = 1.0,
                        dist_t_online: Optional[Array] = None) -> TDLoss:
  """QR-DQN quantile regression with the quantile-Huber loss.

  Target quantiles: z_j = r_t + gamma * discount_t * theta_target(s', a*)_j, with a* the argmax of
  the quantile mean of `dist_t_target` (or of `dist_t_online`: double DQN). For each predicted
  quantile i and target quantile j, u_ij = z_j - theta_i and
    rho_ij = |tau_hat_i - 1{u_ij < 0}| * huber(u_ij, kappa) / kappa.
  The per-example loss sums over i and averages over j, as in Dabney et al. (2018), eq. 10.

  Args:
    dist_tm1: [B, A, Nq] online quantiles of Z(s, .).
    a_tm1: [B] int actions.
    r_t: [B] rewards.
    discount_t: [B] 0.0 at terminations, 1.0 otherwise.
    dist_t_target: [B, A, Nq] target-network quantiles of Z(s', .).
    gamma: the agent's discount factor.
    kappa: Huber threshold (return units); the paper uses 1.
    dist_t_online: optional [B, A, Nq] online quantiles at s', used to select a* (double DQN).

  Returns:
    TDLoss: [B] loss, mean |z_j - theta_i| and mean z_j of each example.
  """
  _check_transition(dist_tm1, a_tm1, r_t, discount_t, dist_t_target, rank=3)
  dist_t_selector = dist_t_target if dist_t_online is None else dist_t_online
  chex.assert_equal_shape([dist_t_selector, dist_t_target])
  tau_hat = quantile_midpoints(dist_tm1.shape[-1])

  def per_example(dist_tm1, a_tm1, r_t, discount_t, dist_t_target, dist_t_selector):
    a_star = _greedy_action(dist_t_selector.mean(axis=-1))
    target = jax.lax.stop_gradient(r_t + gamma * discount_t * dist_t_target[a_star])  # [Nq]
    theta = dist_tm1[a_tm1]  # [Nq]
    u = target[None, :] - theta[:, None]  # [Nq (i, predicted), Nq (j, target)]
    weight = jnp.abs(tau_hat[:, None] - (u < 0.0).astype(u.dtype))
    rho = weight * huber(u, kappa) / kappa
    return rho.mean(axis=1).sum(axis=0), jnp.abs(u).mean(), target.mean()

  return TDLoss(*jax.vmap(per_example)(
      dist_tm1, a_tm1, r_t, discount_t, dist_t_target, dist_t_selector))


def rem_weights(key: chex.PRNGKey, num_heads: int) -> Array:
  """[K] random convex weights: alpha_k ~ U(0, 1), then divided by their sum (REM, Agarwal 2020)."""
  raw = jax.random.uniform(key, (num_heads,))
  return raw / raw.sum()


def rem_loss(q_heads_tm1: Array, a_tm1: Array, r_t: Array, discount_t: Array,
             q_heads_t_target: Array, alpha: Array, gamma: float, kappa: float = 1.0,
             q_heads_t_online: Optional[Array] = None) -> TDLoss:
  """Random Ensemble Mixture: the Huber DQN loss on a random convex mixture of K Q-heads.

  One weight vector `alpha` (from `rem_weights`, drawn once per gradient step) mixes both the
  online and the target heads and is shared across the batch, as in the REM paper's loss. The
  greedy next action is the argmax of the mixed target (or mixed online heads: double DQN).

  Args:
    q_heads_tm1: [B, K, A] online heads at s.
    a_tm1: [B] int actions.
    r_t: [B] rewards.
    discount_t: [B] 0.0 at terminations, 1.0 otherwise.
    q_heads_t_target: [B, K, A] target heads at s'.
    alpha: [K] nonnegative weights summing to 1.
    gamma: the agent's discount factor.
    kappa: Huber threshold (return units).
    q_heads_t_online: optional [B, K, A] online heads at s' (double DQN selection).

  Returns:
    TDLoss as `dqn_loss`.
  """
  _check_transition(q_heads_tm1, a_tm1, r_t, discount_t, q_heads_t_target, rank=3)
  chex.assert_rank(alpha, 1)
  chex.assert_axis_dimension(q_heads_tm1, 1, alpha.shape[0])
  mix = lambda q_heads: jnp.einsum("bka,k->ba", q_heads, alpha)
  q_t_online = None if q_heads_t_online is None else mix(q_heads_t_online)
  return dqn_loss(mix(q_heads_tm1), a_tm1, r_t, discount_t, mix(q_heads_t_target), gamma,
                  kappa, q_t_online)


def cql_penalty(q_tm1: Array, a_tm1: Array, cql_weight: float,
                policy_action: Optional[Array] = None) -> CQLPenalty:
  """Discrete CQL(H) regulariser: cql_weight * (logsumexp_a Q(s, a) - Q(s, a_data)).

  With `policy_action` ([B] int, the greedy action of a fixed policy π) the first term is
  Q(s, π(s)) instead: Eq. 2 with μ = π, conservative evaluation of π (the field `logsumexp` then
  holds Q(s, π(s))).

  The logsumexp runs over all A actions exactly (no sampling is needed in the discrete case).
  For distributional critics pass the quantile mean, Q(s, a) = mean_i theta_i(s, a); for REM pass
  the Q being trained this step (the mixed heads).

  Args:
    q_tm1: [B, A] online Q(s, .).
    a_tm1: [B] int dataset actions.
    cql_weight: alpha in the paper; 0.0 turns the penalty off (the loss is then exactly 0).

  Returns:
    CQLPenalty of [B] arrays.
  """
  chex.assert_rank([q_tm1, a_tm1], [2, 1])
  chex.assert_type(a_tm1, int)
  chex.assert_equal_shape_prefix([q_tm1, a_tm1], 1)
  if policy_action is None:
    logsumexp = jax.nn.logsumexp(q_tm1, axis=-1)
  else:
    logsumexp = jnp.take_along_axis(q_tm1, policy_action[:, None], axis=-1)[:, 0]
  q_data = jnp.take_along_axis(q_tm1, a_tm1[:, None], axis=-1)[:, 0]
  gap = logsumexp - q_data
  return CQLPenalty(cql_weight * gap, gap, logsumexp, q_data)
