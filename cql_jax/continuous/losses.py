"""Pure loss maths for actor-critic CQL. No parameters, no networks: arrays in, arrays out.

Naming follows rlax's time suffixes, as in cql_jax.discrete.losses: `_tm1` is the transition's
start state s (and the data action a), `_t` the next state s'; `r_t` the reward, `discount_t`
the dataset's flag (0.0 at a true termination, 1.0 otherwise) and `gamma` the agent's discount,
applied here. Shape letters: B batch, M or N sampled actions per state, E critics.
Losses return arrays (or a NamedTuple of arrays); the agent names and logs the metrics.
"""
from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

Array = chex.Array

# The soft-maximum term of the penalty (Eq. 3's max over μ), by variant name; see soft_maximum.
SOFT_MAXIMA = ("H", "rho", "nonis", "pi")


def soft_td_target(q_t, r_t, discount_t, gamma, log_pi_t=None, entropy_alpha=0.0):
  """Bellman target r + γ·d·(min_E Q'(s', a') − α·log π(a'|s')).

  q_t: [E, B] target-critic values at (s', a' ~ π(·|s')); the min over the E critics is the
    clipped double-Q estimate. log_pi_t: [B] or None (no entropy term, i.e. the
    "deterministic backup"). r_t, discount_t: [B]; discount_t is 0 at terminations.
  Returns the target [B], with gradients stopped.
  """
  chex.assert_rank([q_t, r_t, discount_t], [2, 1, 1])
  v_t = jnp.min(q_t, axis=0)
  if log_pi_t is not None:
    v_t = v_t - entropy_alpha * log_pi_t
  return jax.lax.stop_gradient(r_t + gamma * discount_t * v_t)


def max_backup_td_target(q_t, r_t, discount_t, gamma, log_pi_t=None, entropy_alpha=0.0):
  """Max-backup Bellman target r + γ·d·max_N (min_E Q'(s', a'_n) − α·log π(a'_n|s')).

  As JaxCQL: the minimum over critics first, then the maximum over the N policy samples
  a'_n ~ π(·|s'); the entropy term is that of the chosen (argmax) action.
  q_t: [E, B, N] target-critic values; log_pi_t: [B, N] or None (deterministic backup).
  r_t, discount_t: [B]. Returns the target [B], with gradients stopped.
  """
  chex.assert_rank([q_t, r_t, discount_t], [3, 1, 1])
  min_q_t = jnp.min(q_t, axis=0)                                        # [B, N]
  best = jnp.argmax(min_q_t, axis=-1)                                   # [B]
  v_t = jnp.take_along_axis(min_q_t, best[:, None], axis=-1)[:, 0]
  if log_pi_t is not None:
    chex.assert_equal_shape([min_q_t, log_pi_t])
    v_t = v_t - entropy_alpha * jnp.take_along_axis(log_pi_t, best[:, None], axis=-1)[:, 0]
  return jax.lax.stop_gradient(r_t + gamma * discount_t * v_t)


def bellman_error(q_tm1, target_tm1):
  """Mean squared Bellman error of each critic.

  q_tm1: [E, B] Q(s, a) at the data action; target_tm1: [B]. Public CQL code uses the plain MSE
  (no 1/2), so its α values (5, 10) carry over unchanged; the paper's 1/2 would halve the
  effective α. Returns [E]; the critic loss is their sum.
  """
  chex.assert_rank([q_tm1, target_tm1], [2, 1])
  return jnp.mean((q_tm1 - target_tm1[None]) ** 2, axis=-1)


def importance_sampled_logsumexp(q_tm1_sampled, log_density, temperature=1.0,
                                  subtract_log_num_samples=False):
  """Estimate T·log ∫ exp(Q(s, a)/T) da from M actions a_m ~ p_m with known log p_m(a_m).

  ∫ exp(Q/T) da = E_m[exp(Q(a_m)/T) / p_m(a_m)], so the estimate is
  T·(logsumexp_m(Q/T − log p_m) − log M). Public CQL code drops the constant log M; pass
  `subtract_log_num_samples=True` for the consistent estimator (same gradients, other offset).

  q_tm1_sampled: [E, B, M]; log_density: [B, M] (broadcast over E). Returns [E, B].
  """
  chex.assert_rank([q_tm1_sampled, log_density], [3, 2])
  x = q_tm1_sampled / temperature - jax.lax.stop_gradient(log_density)[None]
  lse = jax.nn.logsumexp(x, axis=-1)
  if subtract_log_num_samples:
    lse = lse - jnp.log(q_tm1_sampled.shape[-1])
  return temperature * lse


def policy_logmeanexp(q_tm1_sampled, temperature=1.0):
  """CQL(ρ) soft-maximum: T·log E_{a~ρ}[exp(Q(s, a)/T)] from N samples a_n ~ ρ(·|s).

  With R(μ) = −KL(μ‖ρ) in Eq. 3, max_μ E_μ[Q] − KL(μ‖ρ) = log E_ρ[exp Q] (attained at
  μ ∝ ρ·exp Q), so this is the exact value of the inner maximisation, estimated with the
  sampling distribution ρ itself: no importance weights, and log N is subtracted so that the
  estimate is a log-*mean*-exp (consistent; its offset matters for a Lagrangian target gap).
  Its gradient in Q is the self-normalised weight softmax_n(Q_n/T), i.e. the "exponentially
  weighted average of Q" of the paper's Section 3.2.

  q_tm1_sampled: [E, B, N] Q at the N sampled actions. Returns [E, B].
  """
  chex.assert_rank(q_tm1_sampled, 3)
  lse = jax.nn.logsumexp(q_tm1_sampled / temperature, axis=-1)
  return temperature * (lse - jnp.log(q_tm1_sampled.shape[-1]))


def soft_maximum(q_tm1_all, log_density_tm1, variant: str, temperature=1.0,
                 subtract_log_num_samples=False):
  """The penalty's soft-maximum over actions at s, for each of the SOFT_MAXIMA variants.

    "H":     T·log ∫ exp(Q/T) da, importance-sampled from the proposals (Eq. 4).
    "nonis": T·logsumexp of raw Q over every action, the data action included (public code's
             min_q_version=2; no densities).
    "rho":   T·log E_{a~π(s)}[exp(Q/T)], ρ = the current policy (no importance weights).
    "pi":    E_{a~π(s)}[Q], μ = π exactly (Eq. 1/2 as written; for policy evaluation).

  q_tm1_all: [E, B, 1+M] Q at the data action (first) and the M sampled actions.
  log_density_tm1: [B, M] proposal log-densities ("H"), or None (other variants).
  Returns [E, B].
  """
  chex.assert_rank(q_tm1_all, 3)
  if variant == "H":
    return importance_sampled_logsumexp(q_tm1_all[..., 1:], log_density_tm1, temperature,
                                        subtract_log_num_samples)
  if variant == "nonis":
    return importance_sampled_logsumexp(q_tm1_all, jnp.zeros(q_tm1_all.shape[1:]), temperature,
                                        subtract_log_num_samples)
  if variant == "rho":
    return policy_logmeanexp(q_tm1_all[..., 1:], temperature)
  if variant == "pi":
    return jnp.mean(q_tm1_all[..., 1:], axis=-1)
  raise ValueError(f"unknown soft-maximum variant {variant!r}; expected one of {SOFT_MAXIMA}")


def calibrate(q_tm1_all, lower_bound_tm1, bounded):
  """Cal-QL: max(Q(s, a), V_ref(s)) at the sampled actions marked `bounded`, Q elsewhere.

  Nakamoto et al. (2023) bound from below the Q-values that the penalty pushes down at the
  policy's actions (samples of π(s) and π(s′)) by a reference value of the behaviour policy, the
  Monte-Carlo return-to-go of the data transition. Values already above the bound are unchanged
  (and keep their gradient); values below it become the constant bound, so the penalty stops
  pushing them down. The bound applies before any importance weight: log-densities are
  subtracted afterwards, inside the soft-maximum.

  q_tm1_all: [E, B, K] Q at K actions per state; lower_bound_tm1: [B]; bounded: [K] bool, the
  columns to bound (the data action and uniform samples are not). Returns [E, B, K].
  """
  chex.assert_rank([q_tm1_all, lower_bound_tm1, bounded], [3, 1, 1])
  chex.assert_equal(q_tm1_all.shape[1], lower_bound_tm1.shape[0])
  chex.assert_equal(q_tm1_all.shape[2], bounded.shape[0])
  bound = jax.lax.stop_gradient(lower_bound_tm1)[None, :, None]
  return jnp.where(bounded[None, None, :], jnp.maximum(q_tm1_all, bound), q_tm1_all)


def cql_gap(soft_max_tm1, q_tm1, maximize_data_term=True):
  """CQL penalty before weighting: E_s[soft-max_a Q(s,a)] − E_{s,a~D}[Q(s,a)] (Eq. 2–4).

  With maximize_data_term=False the data term is dropped and the "gap" is E_s[soft-max_a Q],
  the minimise-only penalty of Eq. 1, which lower-bounds Q point-wise but more loosely.
  soft_max_tm1, q_tm1: [E, B]. Returns the gap [E].
  """
  chex.assert_rank([soft_max_tm1, q_tm1], [2, 2])
  chex.assert_equal_shape([soft_max_tm1, q_tm1])
  return jnp.mean(soft_max_tm1 - q_tm1 if maximize_data_term else soft_max_tm1, axis=-1)


class Penalty(NamedTuple):
  """critic: [] the term added to the critic loss; dual: [] the α′ loss (0 without α′)."""
  critic: Array
  dual: Array


def cql_penalty(gap, cql_weight, alpha_prime=None, target_gap=0.0) -> Penalty:
  """Weighted penalty added to the critic loss, and the Lagrangian dual loss.

  gap: [E]. With alpha_prime None, the penalty is w·Σ_E gap (fixed α = w).
  With a Lagrange multiplier α′ ≥ 0 (scalar), the critic minimises α′·w·Σ_E (gap − τ) and α′
  minimises −α′·w·mean_E(gap − τ) (dual ascent): α′ grows while the gap exceeds τ and shrinks
  when it is below, as in JaxCQL/CORL.
  """
  chex.assert_rank(gap, 1)
  if alpha_prime is None:
    return Penalty(cql_weight * jnp.sum(gap), jnp.zeros(()))
  excess = gap - target_gap
  penalty = jax.lax.stop_gradient(alpha_prime) * cql_weight * jnp.sum(excess)
  dual_loss = -alpha_prime * cql_weight * jnp.mean(jax.lax.stop_gradient(excess))
  return Penalty(penalty, dual_loss)


def sac_actor_loss(q_pi_tm1, log_pi_tm1, entropy_alpha):
  """SAC policy loss E_s[α·log π(a|s) − min_E Q(s, a)], a ~ π(·|s) reparameterised.

  q_pi_tm1: [E, B] Q at the policy's sample; log_pi_tm1: [B]. Returns the loss [].
  """
  chex.assert_rank([q_pi_tm1, log_pi_tm1], [2, 1])
  return jnp.mean(entropy_alpha * log_pi_tm1 - jnp.min(q_pi_tm1, axis=0))


def bc_actor_loss(log_pi_data_tm1, log_pi_tm1, entropy_alpha):
  """Behaviour-cloning warm-start loss E_s[α·log π(a~π|s) − log π(a_D|s)].

  log_pi_data_tm1: [B] log-density of the dataset action; log_pi_tm1: [B] of a policy sample.
  Returns the loss [].
  """
  chex.assert_rank([log_pi_data_tm1, log_pi_tm1], [1, 1])
  return jnp.mean(entropy_alpha * log_pi_tm1 - log_pi_data_tm1)


def temperature_loss(log_alpha, log_pi_tm1, target_entropy):
  """SAC automatic entropy tuning: −log α · E[log π + H_target], log π stopped.

  log_alpha: []; log_pi_tm1: [B]. Gradient descent raises α when the policy's entropy
  −E[log π] is below the target and lowers it otherwise. Returns the loss [].
  """
  chex.assert_rank([log_alpha, log_pi_tm1], [0, 1])
  return -log_alpha * jnp.mean(jax.lax.stop_gradient(log_pi_tm1) + target_entropy)
