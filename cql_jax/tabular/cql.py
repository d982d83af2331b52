"""Exact tabular CQL: policy evaluation by Eq. 1 / Eq. 2 and CQL(H) policy learning (Eq. 4).

All Q-functions are [S, A] arrays. Entries at states outside D are held at zero: the objectives
never involve them and closed datasets never bootstrap from them.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.special

from cql_jax.tabular.mdp import EmpiricalMDP, FiniteMDP

EQ1 = "eq1"
EQ2 = "eq2"


def state_values(q: np.ndarray, policy: np.ndarray) -> np.ndarray:
  """[S] V(s) = E_{a ~ policy}[Q(s, a)] for Q, policy [S, A]."""
  return (q * policy).sum(-1)


def backup(transition: np.ndarray, reward: np.ndarray, gamma: float, q: np.ndarray,
           policy: np.ndarray) -> np.ndarray:
  """[S, A] (B^pi Q)(s, a) = r(s, a) + gamma sum_s' P(s'|s, a) V(s'), for any operator (P, r)."""
  return reward + gamma * transition @ state_values(q, policy)


def policy_transition(transition: np.ndarray, policy: np.ndarray) -> np.ndarray:
  """[S*A, S*A] P^pi((s, a), (s', a')) = P(s'|s, a) pi(a'|s'), the matrix in (I - gamma P^pi)^-1."""
  s, a = policy.shape
  return (transition[..., None] * policy[None, None]).reshape(s * a, s * a)


def true_q(mdp: FiniteMDP, policy: np.ndarray) -> np.ndarray:
  """[S, A] Q^pi of the true MDP, by a linear solve."""
  s, a = policy.shape
  lhs = np.eye(s * a) - mdp.gamma * policy_transition(mdp.transition, policy)
  return np.linalg.solve(lhs, mdp.reward.reshape(-1)).reshape(s, a)


def penalty(variant: str, mu: np.ndarray, behaviour: np.ndarray) -> np.ndarray:
  """[S, A] what one CQL step subtracts from B^Q, per unit alpha.

  Setting d/dQ of the Eq. 1 objective to zero gives Q = B^Q - alpha mu/pi^_beta; Eq. 2 also
  maximises E_{pi^_beta}[Q], which adds back alpha: Q = B^Q - alpha (mu/pi^_beta - 1).
  """
  ratio = mu / behaviour
  if variant == EQ1:
    return ratio
  if variant == EQ2:
    return ratio - 1.0
  raise ValueError(f"unknown variant {variant!r}; expected {EQ1!r} or {EQ2!r}")


def cql_evaluation(emp: EmpiricalMDP, policy: np.ndarray, mu: np.ndarray, alpha: float,
                   variant: str = EQ2, method: str = "solve", tol: float = 1e-10,
                   max_iters: int = 100_000) -> np.ndarray:
  """Q^pi-hat := lim_k Q^k for the Eq. 1 or Eq. 2 update, on the data's empirical operator.

  Args:
    emp: the empirical MDP (or `exact_operator` for B^ = B).
    policy: [S, A] pi, the policy being evaluated (used in B^pi).
    mu: [S, A] mu(a|s), the distribution whose Q-values are pushed down.
    alpha: the trade-off factor, >= 0.
    variant: "eq1" or "eq2".
    method: "solve" for (I - gamma P^pi)^-1 (r^ - alpha penalty) on the states of D, or "iterate"
      to run Q <- B^Q - alpha penalty until the sup-norm change is below `tol`.
    tol, max_iters: stopping rule for "iterate".
  Returns:
    [S, A] the fixed point; zero at states outside D.
  """
  d = emp.in_data
  target_shift = np.where(d[:, None], alpha * penalty(variant, mu, emp.behaviour), 0.0)
  if method == "iterate":
    q = np.zeros_like(emp.reward)
    for _ in range(max_iters):
      q_new = np.where(d[:, None],
                       backup(emp.transition, emp.reward, emp.gamma, q, policy) - target_shift, 0.0)
      if np.max(np.abs(q_new - q)) < tol:
        return q_new
      q = q_new
    raise RuntimeError(f"CQL evaluation did not converge in {max_iters} iterations")
  if method != "solve":
    raise ValueError(f"unknown method {method!r}")
  return _solve_on_data(emp, policy, emp.reward - target_shift)


def _solve_on_data(emp: EmpiricalMDP, policy: np.ndarray, vector: np.ndarray) -> np.ndarray:
  """[S, A] (I - gamma P^^pi)^-1 vector restricted to D (closed under P^), zero elsewhere."""
  s, a = policy.shape
  mask = np.repeat(emp.in_data, a)
  p = policy_transition(emp.transition, policy)[np.ix_(mask, mask)]
  out = np.zeros(s * a)
  out[mask] = np.linalg.solve(np.eye(p.shape[0]) - emp.gamma * p, vector.reshape(-1)[mask])
  return out.reshape(s, a)


def softmax_policy(q: np.ndarray) -> np.ndarray:
  """[S, A] pi_Q(a|s) proportional to exp Q(s, a): the mu that maximises CQL(H)'s inner problem."""
  return scipy.special.softmax(q, axis=-1)


class CQLHStep(NamedTuple):
  """One CQL(H) iteration from Q^k.

  q:      [S, A] Q^{k+1}, the CQL(H) iterate.
  plain:  [S, A] B^{pi_k} Q^k, the unpenalised backup of the same iterate (the "Q^{k+1}" that
          Theorem 3.4 compares against).
  policy: [S, A] pi_k = softmax(Q^k), the soft-max policy the backup evaluates.
  mu:     [S, A] mu_k, the distribution the step pushed down: softmax(Q^k) for the lagged closed
          form, softmax(Q^{k+1}) for the exact argmin (the inner maximiser of Eq. 3 at the new Q).
          Either way Q^{k+1} = plain - alpha (mu / pi^_beta - 1).
  """
  q: np.ndarray
  plain: np.ndarray
  policy: np.ndarray
  mu: np.ndarray


def cql_h_step(emp: EmpiricalMDP, q: np.ndarray, alpha: float,
               exact_argmin: bool = False, newton_iters: int = 50) -> CQLHStep:
  """One CQL(H) (Eq. 4) update with the soft-max backup policy pi_k = softmax(Q^k).

  With `exact_argmin=False` this is the closed form the paper's analysis uses (Theorems 3.3, 3.4):
  Q^{k+1} = B^{pi_k} Q^k - alpha (mu_k / pi^_beta - 1) with mu_k = softmax(Q^k) held fixed.
  Iterated, it is not a contraction once alpha / min pi^_beta is large (the penalty reacts to Q^k
  with gain up to alpha / pi^_beta), and on random MDPs it oscillates for alpha as small as 0.3.

  Eq. 4 itself puts logsumexp on the Q being optimised, so its exact argmin solves
  Q = B^Q^k - alpha (softmax(Q) / pi^_beta - 1); `exact_argmin=True` finds that per state by
  Newton's method on the strongly convex per-state objective. It is a proximal step after the
  backup and iterates stably for every alpha we tried.
  """
  policy = softmax_policy(q)
  plain = np.where(emp.in_data[:, None],
                   backup(emp.transition, emp.reward, emp.gamma, q, policy), 0.0)
  if exact_argmin:
    new = _eq4_argmin(plain, emp.behaviour, alpha, newton_iters)
    mu = softmax_policy(new)
  else:
    mu = policy
    new = plain - alpha * penalty(EQ2, mu, emp.behaviour)
  return CQLHStep(q=np.where(emp.in_data[:, None], new, 0.0), plain=plain, policy=policy, mu=mu)


def _eq4_argmin(target: np.ndarray, behaviour: np.ndarray, alpha: float,
                iters: int) -> np.ndarray:
  """[S, A] argmin_Q alpha (logsumexp Q(s,.) - pi^_beta.Q(s,.)) + 1/2 sum_a pi^_beta (Q - target)^2.

  The d^(s) weight is common to every term at s, so each state is solved on its own.
  """
  q = target.copy()
  eye = np.eye(target.shape[-1])
  for _ in range(iters):
    p = softmax_policy(q)
    grad = alpha * (p - behaviour) + behaviour * (q - target)
    if np.max(np.abs(grad)) < 1e-13:
      break
    hess = alpha * (p[..., :, None] * eye - p[..., :, None] * p[..., None, :])
    hess = hess + behaviour[..., :, None] * eye
    q = q - np.linalg.solve(hess, grad[..., None])[..., 0]
  return q


def cql_h(emp: EmpiricalMDP, alpha: float, num_iters: int = 1000, tol: float = 1e-10,
          exact_argmin: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Runs CQL(H) from Q = 0 until the update changes Q by less than `tol` (sup norm).

  Uses Eq. 4's exact argmin by default; see `cql_h_step` for why the lagged form is not.

  Returns:
    (Q [S, A], policy [S, A]): the last iterate and its soft-max policy.
  """
  q = np.zeros_like(emp.reward)
  for _ in range(num_iters):
    step = cql_h_step(emp, q, alpha, exact_argmin)
    done = np.max(np.abs(step.q - q)) < tol
    q = step.q
    if done:
      break
  return q, softmax_policy(q)
