"""Numerical checks of the paper's Section 3 theorems on many random finite MDPs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax import tabular as T

S, A, GAMMA = 8, 3, 0.9
SEEDS = range(25)


def _setup(seed, num_transitions=2000, target="random"):
  """A random MDP, behaviour policy, target policy, dataset and its empirical MDP."""
  rng = np.random.default_rng(seed)
  mdp = T.random_mdp(rng, S, A, GAMMA, branching=4)
  beta = T.random_policy(rng, S, A)
  pi = T.random_policy(rng, S, A)
  if target == "near_behaviour":
    # Close to pi_beta, the one-step push-up at actions pi_beta favours (O(eps)) beats the
    # discounted push-down of the future (O(eps^2)), which is how Eq. 2 overshoots point-wise.
    pi = 0.99 * beta + 0.01 * pi
  data = T.sample_dataset(rng, mdp, beta, num_transitions)
  return mdp, beta, pi, data, T.empirical_mdp(data, S, A, GAMMA)


# ---------------------------------------------------------------- datasets and the operator


@pytest.mark.parametrize("seed", range(5))
def test_dataset_is_closed_and_covers_all_actions(seed):
  rng = np.random.default_rng(seed)
  mdp = T.random_mdp(rng, 12, A, GAMMA, branching=2)
  beta = T.random_policy(rng, 12, A, concentration=0.3)
  dist = np.zeros(12)
  dist[:3] = 1.0 / 3  # source states from a corner of the MDP, so D need not be all of S
  data = T.sample_dataset(rng, mdp, beta, 50, state_dist=dist)
  emp = T.empirical_mdp(data, 12, A, GAMMA)
  assert np.all(emp.behaviour[emp.in_data] > 0)
  assert np.all(emp.in_data[data.next_state])
  np.testing.assert_allclose(emp.transition[emp.in_data].sum(-1), 1.0)
  np.testing.assert_allclose(emp.behaviour.sum(-1), 1.0)
  assert np.all(np.abs(data.reward) <= mdp.reward_max)


def test_empirical_operator_converges_to_true_operator():
  rng = np.random.default_rng(0)
  mdp = T.random_mdp(rng, S, A, GAMMA)
  beta = T.random_policy(rng, S, A)
  errs = []
  for n in (500, 50_000):
    emp = T.empirical_mdp(T.sample_dataset(rng, mdp, beta, n), S, A, GAMMA)
    errs.append((T.bellman_error_bound(mdp, emp).mean(), np.abs(emp.behaviour - beta).mean()))
  assert errs[1][0] < 0.3 * errs[0][0]
  assert errs[1][1] < 0.3 * errs[0][1]


# ---------------------------------------------------------------- the closed forms are the argmins


@pytest.mark.parametrize("variant", [T.EQ1, T.EQ2])
def test_closed_form_iteration_matches_linear_solve(variant):
  for seed in range(5):
    _, _, pi, _, emp = _setup(seed)
    mu = T.random_policy(np.random.default_rng(100 + seed), S, A)
    it = T.cql_evaluation(emp, pi, mu, 0.7, variant, method="iterate")
    solved = T.cql_evaluation(emp, pi, mu, 0.7, variant, method="solve")
    np.testing.assert_allclose(it, solved, atol=1e-8)


def _sample_objective(q, q_target, data, pi, mu, alpha, gamma, variant):
  """Eq. 1 / 2 / 4 written directly over the dataset's transitions (no counts, no B^)."""
  s, a, r, s2 = (jnp.asarray(x) for x in data)
  y = r + gamma * (q_target[s2] * pi[s2]).sum(-1)
  bellman = 0.5 * jnp.mean((q[s, a] - y) ** 2)
  if variant == "eq4":
    push_down = jnp.mean(jax.nn.logsumexp(q[s], axis=-1))
  else:
    push_down = jnp.mean((q[s] * mu[s]).sum(-1))
  push_up = jnp.mean(q[s, a]) if variant in (T.EQ2, "eq4") else 0.0
  return alpha * (push_down - push_up) + bellman


@pytest.mark.parametrize("variant", [T.EQ1, T.EQ2])
def test_fixed_point_zeroes_gradient_of_sample_objective(variant):
  with jax.enable_x64(True):
    for seed in range(4):
      _, _, pi, data, emp = _setup(seed, num_transitions=300)
      mu = T.random_policy(np.random.default_rng(200 + seed), S, A)
      q_hat = T.cql_evaluation(emp, pi, mu, 1.3, variant)
      grad = jax.grad(_sample_objective)(jnp.asarray(q_hat), jnp.asarray(q_hat), data,
                                         jnp.asarray(pi), jnp.asarray(mu), 1.3, GAMMA, variant)
      assert np.max(np.abs(grad)) < 1e-9
      # The same objective at a perturbed Q is not stationary, so the check has teeth.
      bumped = jax.grad(_sample_objective)(jnp.asarray(q_hat + 0.01), jnp.asarray(q_hat), data,
                                           jnp.asarray(pi), jnp.asarray(mu), 1.3, GAMMA, variant)
      assert np.max(np.abs(bumped)) > 1e-4


def test_cql_h_exact_argmin_zeroes_gradient_of_eq4():
  with jax.enable_x64(True):
    for seed in range(4):
      _, _, _, data, emp = _setup(seed, num_transitions=300)
      q = np.random.default_rng(seed).normal(size=(S, A))
      step = T.cql_h_step(emp, q, alpha=2.0, exact_argmin=True)
      grad = jax.grad(_sample_objective)(jnp.asarray(step.q), jnp.asarray(q), data,
                                         jnp.asarray(step.policy), None, 2.0, GAMMA, "eq4")
      assert np.max(np.abs(grad)) < 1e-9
      # The lagged closed form (mu fixed at softmax(Q^k)) is not Eq. 4's exact argmin.
      lagged = T.cql_h_step(emp, q, alpha=2.0).q
      assert np.max(np.abs(lagged - step.q)) > 1e-3


# ---------------------------------------------------------------- Theorem 3.1 (Eq. 1)


def test_theorem_3_1_exact_operator_any_alpha_is_pointwise_lower_bound():
  for seed in SEEDS:
    mdp, beta, pi, _, _ = _setup(seed, num_transitions=1)
    exact = T.exact_operator(mdp, beta)
    q_pi = T.true_q(mdp, pi)
    np.testing.assert_allclose(T.cql_evaluation(exact, pi, pi, 0.0, T.EQ1), q_pi, atol=1e-9)
    for alpha in (1e-3, 0.1, 10.0):
      assert np.all(T.cql_evaluation(exact, pi, pi, alpha, T.EQ1) < q_pi)


def test_theorem_3_1_with_sampling_error():
  exact_positive = 0
  for seed in SEEDS:
    mdp, _, pi, _, emp = _setup(seed)
    mu = pi
    th = T.theorem_3_1(mdp, emp, pi, mu)
    q_pi = T.true_q(mdp, pi)
    d = emp.in_data
    assert 0.0 <= th.alpha_exact <= th.alpha_threshold
    # Above the theorem's threshold: a point-wise lower bound at every s in D and every action.
    for scale in (1.0, 1.5, 4.0):
      q_hat = T.cql_evaluation(emp, pi, mu, scale * th.alpha_threshold, T.EQ1)
      assert np.all(q_hat[d] <= q_pi[d] + 1e-9)
    # The theorem's inequality itself, at any alpha, including ones below the threshold.
    for alpha in (0.0, 0.3 * th.alpha_threshold, 2.0 * th.alpha_threshold):
      q_hat = T.cql_evaluation(emp, pi, mu, alpha, T.EQ1)
      rhs = q_pi - alpha * th.conservatism + th.sampling_slack
      assert np.all(q_hat[d] <= rhs[d] + 1e-9)
    # The realised threshold is tight: just below it the bound fails somewhere.
    if th.alpha_exact > 0:
      exact_positive += 1
      q_hat = T.cql_evaluation(emp, pi, mu, 0.98 * th.alpha_exact, T.EQ1)
      assert np.any(q_hat[d] > q_pi[d])
  # Sampling error usually does make the unpenalised estimate overshoot somewhere.
  assert exact_positive >= len(SEEDS) // 2


# ---------------------------------------------------------------- Theorem 3.2 (Eq. 2)


def test_theorem_3_2_exact_operator_bounds_values_not_q():
  overshoots = 0
  for seed in SEEDS:
    mdp, beta, pi, _, _ = _setup(seed, num_transitions=1, target="near_behaviour")
    exact = T.exact_operator(mdp, beta)
    q_pi = T.true_q(mdp, pi)
    for alpha in (1e-3, 0.1, 10.0):
      q_hat = T.cql_evaluation(exact, pi, pi, alpha, T.EQ2)
      assert np.all(T.state_values(q_hat, pi) <= T.state_values(q_pi, pi) + 1e-12)
    # Not point-wise: some action that pi^_beta favours over pi is over-estimated.
    q_hat = T.cql_evaluation(exact, pi, pi, 1.0, T.EQ2)
    over = q_hat > q_pi + 1e-9
    if over.any():
      overshoots += 1
      assert np.all(pi[over] < beta[over])
  assert overshoots >= 0.6 * len(SEEDS)


def test_theorem_3_2_with_sampling_error():
  for seed in SEEDS:
    mdp, _, pi, _, emp = _setup(seed)
    th = T.theorem_3_2(mdp, emp, pi)
    d = emp.in_data
    v_pi = T.state_values(T.true_q(mdp, pi), pi)
    assert np.all(th.divergence[d] >= 0)
    assert 0.0 <= th.alpha_exact <= th.alpha_threshold
    for scale in (1.0, 3.0):
      q_hat = T.cql_evaluation(emp, pi, pi, scale * th.alpha_threshold, T.EQ2)
      assert np.all(T.state_values(q_hat, pi)[d] <= v_pi[d] + 1e-9)
    q_hat = T.cql_evaluation(emp, pi, pi, 1.01 * th.alpha_exact, T.EQ2)
    assert np.all(T.state_values(q_hat, pi)[d] <= v_pi[d] + 1e-9)
    if th.alpha_exact > 0:
      q_hat = T.cql_evaluation(emp, pi, pi, 0.98 * th.alpha_exact, T.EQ2)
      assert np.any(T.state_values(q_hat, pi)[d] > v_pi[d])


def test_eq2_is_tighter_than_eq1_in_value():
  for seed in range(10):
    mdp, beta, pi, _, _ = _setup(seed, num_transitions=1)
    exact = T.exact_operator(mdp, beta)
    v_pi = T.state_values(T.true_q(mdp, pi), pi)
    v1 = T.state_values(T.cql_evaluation(exact, pi, pi, 1.0, T.EQ1), pi)
    v2 = T.state_values(T.cql_evaluation(exact, pi, pi, 1.0, T.EQ2), pi)
    assert np.all(v1 < v2) and np.all(v2 <= v_pi + 1e-12)


# ---------------------------------------------------------------- Theorem 3.4 (gap expansion)


def _np_softmax(x):
  z = np.exp(x - x.max())
  return z / z.sum()


def _per_state_eq4_objective(targets, weights, q_k_state, alpha, exact_argmin):
  """Eq. 4 at one state s, written from the paper: returns f(Q_s) and its gradient in Q_s [A].

  targets [M], weights [M], and the actions of M terms: the squared Bellman errors
  1/2 (Q(s, a_m) - y_m)^2 with weights that sum to 1 (1/n(s) each for the data's transitions,
  pi_beta(a|s) P(s'|s, a) for the exact operator), and the push-up E_m[Q(s, a_m)] over the same
  terms. The push-down is logsumexp_a Q(s, a) (exact argmin) or E_{mu_k}[Q(s, .)] with mu_k =
  softmax(Q^k(s, .)) held fixed (the lagged form the paper's analysis uses).
  """
  actions, y = targets
  mu_k = _np_softmax(q_k_state)

  def f(q):
    push_down = (q.max() + np.log(np.exp(q - q.max()).sum())) if exact_argmin else mu_k @ q
    bellman = 0.5 * np.sum(weights * (q[actions] - y) ** 2)
    return alpha * (push_down - np.sum(weights * q[actions])) + bellman

  def grad(q):
    g = alpha * (_np_softmax(q) if exact_argmin else mu_k)
    np.add.at(g, actions, -alpha * weights + weights * (q[actions] - y))
    return g
  return f, grad


def _independent_cql_step(terms, q_k, alpha, exact_argmin):
  """Q^{k+1} [S, A] (alpha = 0: the plain backup) by numerically minimising Eq. 4 per state."""
  from scipy import optimize
  out = np.zeros_like(q_k)
  for s, (actions, y, weights) in terms.items():
    f, grad = _per_state_eq4_objective((actions, y), weights, q_k[s], alpha, exact_argmin)
    start = np.zeros(q_k.shape[1])
    np.add.at(start, actions, weights * y)
    start = start / np.maximum(np.bincount(actions, weights, q_k.shape[1]), 1e-300)
    res = optimize.minimize(f, start, jac=grad, method="BFGS", options={"gtol": 1e-11})
    out[s] = res.x
  return out


def _bellman_terms(q_k, mdp, beta, data, use_exact_operator):
  """{s: (actions [M], targets y_m = r + gamma V^k(s'), weights [M])} over the states of D, with
  V^k(s') = E_{softmax(Q^k)}[Q^k(s', .)], from the dataset's transitions (or the true MDP)."""
  v_k = np.array([_np_softmax(row) @ row for row in q_k])
  terms = {}
  if use_exact_operator:
    for s in range(S):
      acts, ys, ws = [], [], []
      for a in range(A):
        for s2 in range(S):
          if mdp.transition[s, a, s2] > 0:
            acts.append(a)
            ys.append(mdp.reward[s, a] + GAMMA * v_k[s2])
            ws.append(beta[s, a] * mdp.transition[s, a, s2])
      terms[s] = (np.array(acts), np.array(ys), np.array(ws))
    return terms
  for s in np.unique(data.state):
    idx = np.flatnonzero(data.state == s)
    terms[int(s)] = (data.action[idx], data.reward[idx] + GAMMA * v_k[data.next_state[idx]],
                     np.full(idx.size, 1.0 / idx.size))
  return terms


@pytest.mark.parametrize("exact_argmin", [False, True])
@pytest.mark.parametrize("use_exact_operator", [False, True])
def test_theorem_3_4_cql_h_steps_expand_the_gap(use_exact_operator, exact_argmin):
  """Each CQL(H) step widens E_beta[Q] - E_mu[Q] over the plain backup's, at every s in D.

  Both iterates are found here by minimising Eq. 4 numerically from the data's transitions (or
  the true MDP), not by cql_h_step's closed forms, and the gaps are taken by hand.
  """
  for seed in range(10):
    mdp, beta, _, data, emp = _setup(seed)
    if use_exact_operator:
      emp = T.exact_operator(mdp, beta)
    for alpha in (0.01, 1.0, 10.0):
      q = np.zeros((S, A))
      for _ in range(30):
        step = T.cql_h_step(emp, q, alpha, exact_argmin)
        expansion = T.gap_expansion(emp, step.q, step.plain, step.mu)
        chi2 = (step.mu ** 2 / emp.behaviour).sum(-1) - 1.0
        np.testing.assert_allclose(expansion, alpha * chi2, rtol=1e-8, atol=1e-10)
        assert np.all(expansion[emp.in_data] > 0)
        q = step.q
  for seed in range(3):
    mdp, beta, _, data, _ = _setup(seed)
    behaviour = beta if use_exact_operator else None
    for alpha in (0.01, 1.0, 10.0):
      q = np.zeros((S, A))
      for _ in range(6):
        terms = _bellman_terms(q, mdp, beta, data, use_exact_operator)
        q_cql = _independent_cql_step(terms, q, alpha, exact_argmin)
        q_plain = _independent_cql_step(terms, q, 0.0, exact_argmin)
        emp = T.exact_operator(mdp, beta) if use_exact_operator else T.empirical_mdp(data, S, A, GAMMA)
        step = T.cql_h_step(emp, q, alpha, exact_argmin)
        states = sorted(terms)
        scale = 1.0 + np.abs(q_cql[states]).max()
        np.testing.assert_allclose(step.q[states], q_cql[states], atol=1e-6 * scale)
        np.testing.assert_allclose(step.plain[states], q_plain[states], atol=1e-6 * scale)
        for s in states:
          actions, _, weights = terms[s]
          b = behaviour[s] if behaviour is not None else np.bincount(actions, minlength=A) / actions.size
          mu = _np_softmax(q_cql[s] if exact_argmin else q[s])
          gap_cql, gap_plain = b @ q_cql[s] - mu @ q_cql[s], b @ q_plain[s] - mu @ q_plain[s]
          assert gap_cql > gap_plain, (seed, alpha, s)
          # The proof's closed form: the widening is alpha * chi^2(mu || pi_beta).
          np.testing.assert_allclose(gap_cql - gap_plain, alpha * (np.sum(mu ** 2 / b) - 1.0),
                                     rtol=1e-5, atol=1e-6 * scale)
        q = q_cql


def test_cql_h_converges_and_moves_policy_towards_behaviour():
  kl = {alpha: [] for alpha in (0.0, 1.0, 10.0)}
  for seed in range(8):
    _, _, _, _, emp = _setup(seed)
    for alpha in kl:
      q, policy = T.cql_h(emp, alpha, num_iters=3000, tol=1e-9)
      step = T.cql_h_step(emp, q, alpha, exact_argmin=True)
      assert np.max(np.abs(step.q - q)) < 1e-8
      kl[alpha].append(np.sum(policy * np.log(policy / emp.behaviour), -1).mean())
  assert np.mean(kl[0.0]) > np.mean(kl[1.0]) > np.mean(kl[10.0])


# ---------------------------------------------------------------- more data, smaller alpha


def test_required_alpha_shrinks_with_dataset_size():
  sizes = (300, 3000, 30_000)
  thr31 = np.zeros((10, len(sizes)))
  thr32 = np.zeros_like(thr31)
  for seed in range(10):
    for j, n in enumerate(sizes):
      mdp, _, pi, _, emp = _setup(seed, num_transitions=n)
      thr31[seed, j] = T.theorem_3_1(mdp, emp, pi, pi).alpha_threshold
      thr32[seed, j] = T.theorem_3_2(mdp, emp, pi).alpha_threshold
  for thr in (thr31, thr32):
    med = np.median(thr, axis=0)
    assert med[0] > med[1] > med[2]
    # Roughly the 1/sqrt|D| rate of the theorems: 100x the data, well under half the alpha.
    assert med[2] < 0.3 * med[0]
