"""Pure loss maths for actor-critic CQL. No parameters, no networks: arrays in, (loss, info) out.

Shape letters: B batch, M or N sampled actions per state, E critics.
Every function's `info` is a flat dict of scalar arrays for logging.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def soft_td_target(next_q, reward, discount, gamma, next_log_prob=None, entropy_alpha=0.0):
  """Bellman target r + γ·d·(min_E Q'(s', a') − α·log π(a'|s')).

  next_q: [E, B] target-critic values at (s', a' ~ π(·|s')); the min over the E critics
    is the clipped double-Q estimate. next_log_prob: [B] or None (no entropy term, i.e. the
    "deterministic backup"). reward, discount: [B]; discount is 0 at terminations.
  Returns the target [B], with gradients stopped.
  """
  chex.assert_rank([next_q, reward, discount], [2, 1, 1])
  v_next = jnp.min(next_q, axis=0)
  if next_log_prob is not None:
    v_next = v_next - entropy_alpha * next_log_prob
  return jax.lax.stop_gradient(reward + gamma * discount * v_next)


def max_backup_td_target(next_q, reward, discount, gamma, next_log_prob=None,
                         entropy_alpha=0.0):
  """Max-backup Bellman target r + γ·d·max_N (min_E Q'(s', a'_n) − α·log π(a'_n|s')).

  As JaxCQL: the minimum over critics first, then the maximum over the N policy samples
  a'_n ~ π(·|s'); the entropy term is that of the chosen (argmax) action.
  next_q: [E, B, N] target-critic values; next_log_prob: [B, N] or None (deterministic backup).
  reward, discount: [B]. Returns the target [B], with gradients stopped.
  """
  chex.assert_rank([next_q, reward, discount], [3, 1, 1])
  min_q = jnp.min(next_q, axis=0)                                       # [B, N]
  best = jnp.argmax(min_q, axis=-1)                                     # [B]
  v_next = jnp.take_along_axis(min_q, best[:, None], axis=-1)[:, 0]
  if next_log_prob is not None:
    chex.assert_equal_shape([min_q, next_log_prob])
    v_next = v_next - entropy_alpha * jnp.take_along_axis(next_log_prob, best[:, None], axis=-1)[:, 0]
  return jax.lax.stop_gradient(reward + gamma * discount * v_next)


def bellman_error(q_pred, target):
  """Mean squared Bellman error of every critic, summed over critics.

  q_pred: [E, B]; target: [B]. Public CQL code uses the plain MSE (no 1/2), so its α values
  (5, 10) carry over unchanged; the paper's 1/2 would halve the effective α.
  Returns (loss, info).
  """
  chex.assert_rank([q_pred, target], [2, 1])
  per_critic = jnp.mean((q_pred - target[None]) ** 2, axis=-1)       # [E]
  return jnp.sum(per_critic), {
      "critic/bellman_error": jnp.mean(per_critic),
      "critic/q_data": jnp.mean(q_pred),
      "critic/target": jnp.mean(target),
  }


def importance_sampled_logsumexp(q_samples, log_density, temperature=1.0,
                                  subtract_log_num_samples=False):
  """Estimate T·log ∫ exp(Q(s, a)/T) da from M actions a_m ~ p_m with known log p_m(a_m).

  ∫ exp(Q/T) da = E_m[exp(Q(a_m)/T) / p_m(a_m)], so the estimate is
  T·(logsumexp_m(Q/T − log p_m) − log M). Public CQL code drops the constant log M; pass
  `subtract_log_num_samples=True` for the consistent estimator (same gradients, other offset).

  q_samples: [E, B, M]; log_density: [B, M] (broadcast over E). Returns [E, B].
  """
  chex.assert_rank([q_samples, log_density], [3, 2])
  x = q_samples / temperature - jax.lax.stop_gradient(log_density)[None]
  lse = jax.nn.logsumexp(x, axis=-1)
  if subtract_log_num_samples:
    lse = lse - jnp.log(q_samples.shape[-1])
  return temperature * lse


def policy_logmeanexp(q_samples, temperature=1.0):
  """CQL(ρ) soft-maximum: T·log E_{a~ρ}[exp(Q(s, a)/T)] from N samples a_n ~ ρ(·|s).

  With R(μ) = −KL(μ‖ρ) in Eq. 3, max_μ E_μ[Q] − KL(μ‖ρ) = log E_ρ[exp Q] (attained at
  μ ∝ ρ·exp Q), so this is the exact value of the inner maximisation, estimated with the
  sampling distribution ρ itself: no importance weights, and log N is subtracted so that the
  estimate is a log-*mean*-exp (consistent; its offset matters for a Lagrangian target gap).
  Its gradient in Q is the self-normalised weight softmax_n(Q_n/T), i.e. the "exponentially
  weighted average of Q" of the paper's Section 3.2.

  q_samples: [E, B, N] Q at the N sampled actions. Returns [E, B].
  """
  chex.assert_rank(q_samples, 3)
  lse = jax.nn.logsumexp(q_samples / temperature, axis=-1)
  return temperature * (lse - jnp.log(q_samples.shape[-1]))


def cql_gap(soft_max_q, q_data, maximize_data_term=True):
  """CQL penalty before weighting: E_s[soft-max_a Q(s,a)] − E_{s,a~D}[Q(s,a)] (Eq. 2–4).

  With maximize_data_term=False the data term is dropped and the "gap" is E_s[soft-max_a Q],
  the minimise-only penalty of Eq. 1, which lower-bounds Q point-wise but more loosely.
  soft_max_q, q_data: [E, B]. Returns (gap [E], info).
  """
  chex.assert_rank([soft_max_q, q_data], [2, 2])
  chex.assert_equal_shape([soft_max_q, q_data])
  gap = jnp.mean(soft_max_q - q_data if maximize_data_term else soft_max_q, axis=-1)
  return gap, {
      "cql/soft_max_q": jnp.mean(soft_max_q),
      "cql/q_data": jnp.mean(q_data),
      "cql/gap": jnp.mean(gap),
  }


def cql_penalty(gap, cql_weight, alpha_prime=None, target_gap=0.0):
  """Weighted penalty added to the critic loss, and the Lagrangian dual loss.

  gap: [E]. With alpha_prime None, the penalty is w·Σ_E gap (fixed α = w).
  With a Lagrange multiplier α′ ≥ 0 (scalar), the critic minimises α′·w·Σ_E (gap − τ) and α′
  minimises −α′·w·mean_E(gap − τ) (dual ascent): α′ grows while the gap exceeds τ and shrinks
  when it is below, as in JaxCQL/CORL.
  Returns (critic_penalty, dual_loss, info); dual_loss is 0 without a multiplier.
  """
  chex.assert_rank(gap, 1)
  if alpha_prime is None:
    penalty = cql_weight * jnp.sum(gap)
    return penalty, jnp.zeros(()), {"cql/penalty": penalty}
  excess = gap - target_gap
  penalty = jax.lax.stop_gradient(alpha_prime) * cql_weight * jnp.sum(excess)
  dual_loss = -alpha_prime * cql_weight * jnp.mean(jax.lax.stop_gradient(excess))
  return penalty, dual_loss, {"cql/penalty": penalty, "cql/alpha_prime": alpha_prime,
                              "cql/alpha_prime_loss": dual_loss}


def sac_actor_loss(q_pi, log_prob, entropy_alpha):
  """SAC policy loss E_s[α·log π(a|s) − min_E Q(s, a)], a ~ π(·|s) reparameterised.

  q_pi: [E, B]; log_prob: [B]. Returns (loss, info).
  """
  chex.assert_rank([q_pi, log_prob], [2, 1])
  q = jnp.min(q_pi, axis=0)
  loss = jnp.mean(entropy_alpha * log_prob - q)
  return loss, {"actor/loss": loss, "actor/q_pi": jnp.mean(q), "actor/entropy": -jnp.mean(log_prob)}


def bc_actor_loss(log_prob_data, log_prob, entropy_alpha):
  """Behaviour-cloning warm-start loss E_s[α·log π(a~π|s) − log π(a_D|s)].

  log_prob_data: [B] log-density of the dataset action; log_prob: [B] of a policy sample.
  Returns (loss, info).
  """
  chex.assert_rank([log_prob_data, log_prob], [1, 1])
  loss = jnp.mean(entropy_alpha * log_prob - log_prob_data)
  return loss, {"actor/loss": loss, "actor/log_prob_data": jnp.mean(log_prob_data)}


def temperature_loss(log_alpha, log_prob, target_entropy):
  """SAC automatic entropy tuning: −log α · E[log π + H_target], log π stopped.

  log_alpha: scalar; log_prob: [B]. Gradient descent raises α when the policy's entropy
  −E[log π] is below the target and lowers it otherwise.
  """
  chex.assert_rank([log_alpha, log_prob], [0, 1])
  loss = -log_alpha * jnp.mean(jax.lax.stop_gradient(log_prob) + target_entropy)
  return loss, {"alpha/loss": loss, "alpha/value": jnp.exp(log_alpha)}
