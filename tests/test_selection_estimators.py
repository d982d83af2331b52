"""FQE and the conservative estimate against exact policy values on a tabular MDP.

A random 6-state, 3-action MDP with one-hot observations; data from a uniformly random behaviour
policy; the policies valued are the greedy policies of randomly initialised Q-networks. Their
true values come from the Bellman equation solved by NumPy, V^π = (I − γ P_π)^{-1} R_π, averaged
over the dataset's start states. FQE (policy evaluation with the penalty off) must land within
a stated tolerance of it, and the conservative estimate (penalty on, Eq. 2 with μ = π) below it,
at the fixed point Eq. 2 has in the tabular case: setting the loss's gradient in Q(s, a) to zero
gives Q̂ = B^π Q̂ − α (μ(a|s) / β̂(a|s) − 1) with β̂ the data's action frequencies, so for a
deterministic π, V̂ = (I − γ P̂_π)^{-1} (R_π − α (1 / β̂(π(s)|s) − 1)) on the data's empirical P̂.
"""
import jax
import numpy as np
import pytest

from cql_jax import selection
from cql_jax.discrete import agent as discrete_agent
from cql_jax.types import OfflineDataset

S, A, GAMMA = 6, 3, 0.9
# FQE values each policy under its own discount (a sweep over γ): the three policies' γ.
FQE_GAMMAS = (0.9, 0.8, 0.7)
V_MAX = 1.0 / (1.0 - GAMMA)   # rewards lie in [0, 1]
ALPHA = 1.0
# Both estimates' error bound: 3% of the value range. Measured on this MDP: FQE within 0.6% of
# the true value, the conservative estimate within 2.5% of its closed form.
TOLERANCE = 0.03 * V_MAX


@pytest.fixture(scope="module")
def mdp():
  rng = np.random.default_rng(0)
  p = rng.dirichlet(np.ones(S), size=(S, A))           # [S, A, S']
  r = rng.uniform(0.0, 1.0, size=(S, A))
  obs, actions, rewards = [], [], []
  num_episodes, length = 300, 20
  for _ in range(num_episodes):
    s = rng.integers(S)
    states = [s]
    for _ in range(length):
      a = rng.integers(A)
      actions.append(a)
      rewards.append(r[s, a])
      s = rng.choice(S, p=p[s, a])
      states.append(s)
    obs.append(np.eye(S, dtype=np.float32)[states])
  truncations = np.tile(np.r_[np.zeros(length - 1, bool), True], num_episodes)
  dataset = OfflineDataset.from_arrays(
      np.concatenate(obs), np.asarray(actions), np.asarray(rewards, np.float32),
      np.zeros(num_episodes * length, bool), truncations, num_actions=A)
  return p, r, dataset


def config():
  c = discrete_agent.default_config()
  c.torso, c.loss, c.hidden_sizes = "mlp", "dqn", (32, 32)
  c.gamma, c.lr, c.target_update_period = GAMMA, 1e-3, 100
  c.cql.weight = ALPHA
  return c


@pytest.fixture(scope="module")
def policies(mdp):
  """Three random greedy policies: their network params [3] and their actions per state."""
  _, _, dataset = mdp
  agent = discrete_agent.make_discrete_agent(config(), (S,), A)
  states = jax.vmap(agent.init)(jax.random.split(jax.random.key(7), 3))
  net = discrete_agent.make_spec(config(), (S,), A).network
  actions = [np.argmax(np.asarray(net.apply(jax.tree.map(lambda x: x[i], states.params),
                                            np.eye(S, dtype=np.float32))), axis=1)
             for i in range(3)]
  return states.params, actions


def true_values(mdp, actions, gammas=(GAMMA,) * 3):
  p, r, dataset = mdp
  starts = np.argmax(dataset.initial_obs, axis=1)
  out = []
  for pi, gamma in zip(actions, gammas):
    p_pi, r_pi = p[np.arange(S), pi], r[np.arange(S), pi]
    v = np.linalg.solve(np.eye(S) - gamma * p_pi, r_pi)
    out.append(v[starts].mean())
  return np.asarray(out)


@pytest.fixture(scope="module")
def estimates(mdp, policies):
  _, _, dataset = mdp
  params, _ = policies
  run = lambda penalty, hparams=None: selection.policy_values(
      config(), dataset, params, penalty=penalty, num_steps=8000, batch_size=256, seed=3,
      hparams=hparams)
  return run(False, {"gamma": FQE_GAMMAS}), run(True)


def test_policies_differ(policies):
  _, actions = policies
  assert len({tuple(a) for a in actions}) == 3


def test_fqe_converges_to_the_true_value(mdp, policies, estimates):
  """Each policy's FQE critic, one program, converges to its true value under its own γ."""
  truth = true_values(mdp, policies[1], FQE_GAMMAS)
  assert not np.allclose(truth, true_values(mdp, policies[1]), atol=TOLERANCE)  # γ matters
  fqe, _ = estimates
  np.testing.assert_allclose(fqe["v_initial"], truth, atol=TOLERANCE)
  # And it ranks the three policies as their true values do.
  assert list(np.argsort(fqe["v_initial"])) == list(np.argsort(truth))


def conservative_fixed_point(mdp, actions):
  _, r, dataset = mdp
  t = dataset.transitions
  s, a, s2 = (np.argmax(t.obs, 1), np.asarray(t.action), np.argmax(t.next_obs, 1))
  counts = np.zeros((S, A))
  np.add.at(counts, (s, a), 1)
  beta = counts / counts.sum(axis=1, keepdims=True)
  p_hat = np.zeros((S, A, S))
  np.add.at(p_hat, (s, a, s2), 1)
  p_hat /= counts[..., None]
  starts = np.argmax(dataset.initial_obs, axis=1)
  out = []
  for pi in actions:
    rows = np.arange(S)
    shifted = r[rows, pi] - ALPHA * (1.0 / beta[rows, pi] - 1.0)
    out.append(np.linalg.solve(np.eye(S) - GAMMA * p_hat[rows, pi], shifted)[starts].mean())
  return np.asarray(out)


def test_conservative_estimate_is_eq2s_fixed_point_below_the_true_value(mdp, policies, estimates):
  truth = true_values(mdp, policies[1])
  _, conservative = estimates
  assert np.all(conservative["v_initial"] < truth - TOLERANCE), (conservative["v_initial"], truth)
  np.testing.assert_allclose(conservative["v_initial"], conservative_fixed_point(mdp, policies[1]),
                             atol=TOLERANCE)


# ---------------------------------------------------------------------------
# Continuous actions: a problem whose value has a closed form given the policy.
# ---------------------------------------------------------------------------
# s ~ U[-1, 1] at every step whatever the action, r(s, a) = −(a − s)², so for any policy
# V^π(s) = r(s, π(s)) + γ/(1 − γ) · E_{s'}[r(s', π(s'))], the expectation by quadrature.

C_GAMMA = 0.9


@pytest.fixture(scope="module")
def bandit():
  rng = np.random.default_rng(1)
  num_episodes, length = 200, 10
  obs = rng.uniform(-1, 1, size=(num_episodes, length + 1, 1)).astype(np.float32)
  actions = rng.uniform(-1, 1, size=(num_episodes, length, 1)).astype(np.float32)
  rewards = -(actions[..., 0] - obs[:, :-1, 0]) ** 2
  truncations = np.tile(np.r_[np.zeros(length - 1, bool), True], num_episodes)
  return OfflineDataset.from_arrays(
      obs.reshape(-1, 1), actions.reshape(-1, 1), rewards.reshape(-1).astype(np.float32),
      np.zeros(num_episodes * length, bool), truncations, action_low=[-1.0], action_high=[1.0])


def continuous_config():
  from cql_jax.continuous import agent as cql
  c = cql.default_config()
  c.actor_hidden_sizes = c.critic_hidden_sizes = (32, 32)
  c.gamma, c.critic_lr, c.polyak = C_GAMMA, 1e-3, 0.05
  c.cql.weight = 1.0
  return c


def test_continuous_fqe_and_conservative_estimates(bandit):
  from cql_jax.continuous import agent as cql
  config = continuous_config()
  spec = cql.make_spec(config, 1, [-1.0], [1.0])
  actors = jax.vmap(lambda k: spec.actor.init(k, np.zeros((1, 1), np.float32)))(
      jax.random.split(jax.random.key(5), 3))
  # Distinct policies: the mean head's bias shifts each one's action (true values −3.3, −6.2, −11.5).
  actors["params"]["mean"]["bias"] = np.asarray([[0.0], [0.6], [-1.5]], np.float32)
  grid = np.linspace(-1, 1, 2001, dtype=np.float32)[:, None]
  starts = bandit.initial_obs
  truth = []
  for i in range(3):
    params = jax.tree.map(lambda x: x[i], actors)
    mode = lambda s: np.tanh(np.asarray(spec.actor.apply(params, s)[0]))[:, 0]
    reward = lambda s: -(mode(s) - s[:, 0]) ** 2
    mean_reward = np.trapezoid(reward(grid), grid[:, 0]) / 2.0
    truth.append(np.mean(reward(starts) + C_GAMMA / (1 - C_GAMMA) * mean_reward))
  truth = np.asarray(truth)
  run = lambda penalty: selection.policy_values(config, bandit, actors, penalty=penalty,
                                                num_steps=6000, batch_size=256, seed=2)
  fqe, conservative = run(False), run(True)
  # Values here span about [−4/(1 − γ), 0] = [−40, 0]: 3% of that range.
  # Measured: errors 0.002, 0.13, 0.47.
  np.testing.assert_allclose(fqe["v_initial"], truth, atol=0.03 * 4 / (1 - C_GAMMA))
  assert list(np.argsort(fqe["v_initial"])) == list(np.argsort(truth))
  assert np.all(conservative["v_initial"] < truth), (conservative["v_initial"], truth)
