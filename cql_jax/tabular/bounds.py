"""The quantities in Theorems 3.1, 3.2 and 3.4, computed from a known MDP and a dataset.

Sampling error. The paper bounds |B^pi-hat - B^pi|(s, a) by C_{r,T,delta} R_max / ((1-gamma)
sqrt|D(s,a)|) with an unknown concentration constant. Here the true MDP is known, so we use the
*realised* error of this dataset instead:

  eps(s, a) = |r^(s,a) - r(s,a)| + gamma * V_max * ||P^(.|s,a) - P(.|s,a)||_1,
  V_max = R_max / (1 - gamma),

which is exactly sup |(B^ - B) Q|(s, a) over all Q with |Q| <= V_max (the sup is attained by
V = V_max sign(P^ - P)), the role the paper's constant plays. It shrinks like 1/sqrt n(s, a).

Propagation matrix. The paper writes the bounds with (I - gamma P^pi)^-1 of the true MDP. Applied
to the fixed point this needs |Q^-hat| <= V_max, which fails once alpha is large. Expanding around
the true Q^pi instead gives an exact identity,

  Q^-hat - Q^pi = (I - gamma P^^pi)^-1 [ (B^ - B) Q^pi - alpha * penalty ],

with P^ the data's transition matrix; since |Q^pi| <= V_max, |(B^ - B) Q^pi| <= eps holds for
every alpha. So the thresholds below use (I - gamma P^^pi)^-1. `alpha_paper_form` reports the
threshold with the true P^pi for comparison.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cql_jax.tabular.cql import (EQ1, EQ2, backup, penalty, policy_transition, state_values,
                                 true_q, _solve_on_data)
from cql_jax.tabular.mdp import EmpiricalMDP, FiniteMDP


def bellman_error_bound(mdp: FiniteMDP, emp: EmpiricalMDP) -> np.ndarray:
  """[S, A] eps(s, a), the realised sup-error of B^ over |Q| <= V_max (see module doc); 0 off D."""
  reward_err = np.abs(emp.reward - mdp.reward)
  transition_err = np.abs(emp.transition - mdp.transition).sum(-1)
  eps = reward_err + mdp.gamma * mdp.value_max * transition_err
  return np.where(emp.in_data[:, None], eps, 0.0)


def bellman_error(mdp: FiniteMDP, emp: EmpiricalMDP, q: np.ndarray,
                  policy: np.ndarray) -> np.ndarray:
  """[S, A] the signed realised error (B^pi-hat Q - B^pi Q)(s, a); 0 off D."""
  diff = (backup(emp.transition, emp.reward, emp.gamma, q, policy)
          - backup(mdp.transition, mdp.reward, mdp.gamma, q, policy))
  return np.where(emp.in_data[:, None], diff, 0.0)


def _safe_max_ratio(num: np.ndarray, den: np.ndarray, mask: np.ndarray) -> float:
  """max over mask of num/den, floored at 0 (alpha >= 0); inf where num > 0 but den == 0."""
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = np.where(den > 0, num / den, np.where(num > 0, np.inf, 0.0))
  return float(max(0.0, np.max(np.where(mask, ratio, 0.0))))


class Theorem31(NamedTuple):
  """Theorem 3.1 (Eq. 1) for one (MDP, dataset, pi, mu).

  conservatism:     [S, A] (I - gamma P^^pi)^-1 (mu / pi^_beta): how far one unit of alpha pushes
                    Q^-hat down.
  sampling_slack:   [S, A] (I - gamma P^^pi)^-1 eps: the most sampling error can push it up.
  alpha_threshold:  the theorem's alpha: max_{s in D, a} slack / conservatism. Above it,
                    Q^-hat <= Q^pi at every s in D and every a.
  alpha_exact:      the smallest alpha that actually gives Q^-hat <= Q^pi on D for this dataset.
  alpha_paper_form: the threshold with the true P^pi in both propagation matrices, as printed.
  """
  conservatism: np.ndarray
  sampling_slack: np.ndarray
  alpha_threshold: float
  alpha_exact: float
  alpha_paper_form: float


def theorem_3_1(mdp: FiniteMDP, emp: EmpiricalMDP, policy: np.ndarray,
                mu: np.ndarray) -> Theorem31:
  """Theorem 3.1's bound pieces for Eq. 1 with penalty mu/pi^_beta (supp mu in supp pi^_beta)."""
  mask = np.broadcast_to(emp.in_data[:, None], policy.shape)
  m = np.where(mask, penalty(EQ1, mu, emp.behaviour), 0.0)
  cons = _solve_on_data(emp, policy, m)
  slack = _solve_on_data(emp, policy, bellman_error_bound(mdp, emp))
  q_pi = true_q(mdp, policy)
  # Q^-hat(alpha) - Q^pi = (I - gP^)^-1 (B^ - B) Q^pi - alpha * cons, exactly (module docstring).
  excess_at_zero = _solve_on_data(emp, policy, bellman_error(mdp, emp, q_pi, policy))
  s, a = policy.shape
  inv_true = np.linalg.inv(np.eye(s * a) - mdp.gamma * policy_transition(mdp.transition, policy))
  paper_cons = (inv_true @ m.reshape(-1)).reshape(s, a)
  paper_slack = (inv_true @ bellman_error_bound(mdp, emp).reshape(-1)).reshape(s, a)
  return Theorem31(conservatism=cons, sampling_slack=slack,
                   alpha_threshold=_safe_max_ratio(slack, cons, mask),
                   alpha_exact=_safe_max_ratio(excess_at_zero, cons, mask),
                   alpha_paper_form=_safe_max_ratio(paper_slack, paper_cons, mask))


class Theorem32(NamedTuple):
  """Theorem 3.2 (Eq. 2, mu = pi) for one (MDP, dataset, pi).

  divergence:      [S] sum_a pi(a|s) (pi(a|s)/pi^_beta(a|s) - 1) >= 0, the per-state conservatism.
  state_error:     [S] sum_a pi(a|s) eps(s, a), the realised sampling error at s.
  alpha_threshold: the theorem's sufficient alpha, max_{s in D} state_error / divergence; above it
                   V^-hat <= V^pi at every s in D.
  alpha_exact:     the smallest alpha that gives V^-hat <= V^pi on D for this dataset.
  """
  divergence: np.ndarray
  state_error: np.ndarray
  alpha_threshold: float
  alpha_exact: float


def theorem_3_2(mdp: FiniteMDP, emp: EmpiricalMDP, policy: np.ndarray) -> Theorem32:
  """Theorem 3.2's pieces. V^-hat - V^pi = (I - gamma P^_pi)^-1 (pi.(B^-B)Q^pi - alpha div)."""
  d = emp.in_data
  div = np.where(d, state_values(penalty(EQ2, policy, emp.behaviour), policy), 0.0)
  err = state_values(bellman_error_bound(mdp, emp), policy)
  # Work in [S] space: P^_pi(s, s') = sum_a pi(a|s) P^(s'|s, a), restricted to D.
  p_states = np.einsum("sa,sat->st", policy, emp.transition)[np.ix_(d, d)]
  inv = np.linalg.inv(np.eye(p_states.shape[0]) - mdp.gamma * p_states)
  realised = state_values(bellman_error(mdp, emp, true_q(mdp, policy), policy), policy)[d]
  return Theorem32(divergence=div, state_error=err,
                   alpha_threshold=_safe_max_ratio(err, div, d),
                   alpha_exact=_safe_max_ratio(inv @ realised, inv @ div[d],
                                               np.ones(d.sum(), bool)))


def gap(q: np.ndarray, behaviour: np.ndarray, mu: np.ndarray) -> np.ndarray:
  """[S] E_{pi_beta}[Q(s, .)] - E_mu[Q(s, .)], the in- vs out-of-distribution gap of Theorem 3.4."""
  return state_values(q, behaviour) - state_values(q, mu)


def gap_expansion(emp: EmpiricalMDP, q_cql: np.ndarray, q_plain: np.ndarray, mu: np.ndarray,
                  behaviour: np.ndarray | None = None) -> np.ndarray:
  """[S] gap(Q^-hat^{k+1}) - gap(Q^{k+1}) for a CQL step versus the unpenalised step (Theorem 3.4).

  With behaviour = pi^_beta (the default) and the closed-form step this equals
  alpha * (sum_a mu^2 / pi^_beta - 1) = alpha * chi^2(mu || pi^_beta) >= 0, zero only if
  mu = pi^_beta.
  """
  behaviour = emp.behaviour if behaviour is None else behaviour
  return np.where(emp.in_data, gap(q_cql, behaviour, mu) - gap(q_plain, behaviour, mu), 0.0)
