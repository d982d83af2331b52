"""Paper variants and baselines: new losses against NumPy twins, and each mode's agent contract."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax.continuous import losses
from cql_jax import train
from cql_jax.continuous import agent as cql
from cql_jax.continuous import variants
from cql_jax.types import Transition

import numpy_cql

RNG = np.random.default_rng(1)
E, B, N = 3, 4, 6
OBS_DIM, ACTION_DIM = 3, 2


def np_logsumexp(x):
  m = max(x)
  return m + math.log(sum(math.exp(v - m) for v in x))


# ----------------------------------------------------------------------------- losses


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_policy_logmeanexp_matches_numpy(temperature):
  q = RNG.normal(size=(E, B, N)).astype(np.float32) * 3
  got = losses.policy_logmeanexp(q, temperature)
  assert got.shape == (E, B)
  for e in range(E):
    for b in range(B):
      want = temperature * math.log(sum(math.exp(q[e, b, n] / temperature) for n in range(N)) / N)
      np.testing.assert_allclose(got[e, b], want, rtol=1e-5, atol=1e-6)


def test_policy_logmeanexp_gradient_is_self_normalised_weighted_average():
  # d/dQ_n of log mean exp Q = exp(Q_n) / Σ_m exp(Q_m): the exponentially weighted average.
  q = RNG.normal(size=(1, 1, N)).astype(np.float32)
  grad = jax.grad(lambda x: losses.policy_logmeanexp(x).sum())(jnp.asarray(q))
  weights = [math.exp(v) for v in q[0, 0]]
  want = [w / sum(weights) for w in weights]
  np.testing.assert_allclose(grad[0, 0], want, rtol=1e-5)


def test_policy_logmeanexp_lies_between_mean_and_max():
  q = RNG.normal(size=(E, B, N)).astype(np.float32)
  got = np.asarray(losses.policy_logmeanexp(q))
  assert np.all(got >= q.mean(-1) - 1e-6) and np.all(got <= q.max(-1) + 1e-6)


@pytest.mark.parametrize("maximize", [True, False])
def test_cql_gap_with_and_without_data_term_matches_numpy(maximize):
  soft = RNG.normal(size=(E, B)).astype(np.float32)
  q_data = RNG.normal(size=(E, B)).astype(np.float32)
  gap = losses.cql_gap(soft, q_data, maximize)
  want = [sum(soft[e, b] - (q_data[e, b] if maximize else 0.0) for b in range(B)) / B
          for e in range(E)]
  np.testing.assert_allclose(gap, want, rtol=1e-5)


@pytest.mark.parametrize("with_entropy", [False, True])
def test_max_backup_target_matches_numpy(with_entropy):
  next_q = RNG.normal(size=(E, B, N)).astype(np.float32)
  logp = RNG.normal(size=(B, N)).astype(np.float32)
  reward = RNG.normal(size=B).astype(np.float32)
  discount = np.array([1, 0, 1, 1], np.float32)
  alpha, gamma = 0.2, 0.9
  got = losses.max_backup_td_target(next_q, reward, discount, gamma,
                                    logp if with_entropy else None, alpha)
  for b in range(B):
    mins = [min(next_q[e, b, n] for e in range(E)) for n in range(N)]   # min over critics first
    best = max(range(N), key=lambda n: mins[n])                          # then max over samples
    v = mins[best] - (alpha * logp[b, best] if with_entropy else 0.0)
    np.testing.assert_allclose(got[b], reward[b] + gamma * discount[b] * v, rtol=1e-5)


def test_max_backup_rejects_wrong_rank():
  with pytest.raises(AssertionError):
    losses.max_backup_td_target(np.zeros((E, B)), np.zeros(B), np.ones(B), 0.9)


# ----------------------------------------------------------------------------- agents


def tiny_config(name="cql_h", **overrides):
  base = cql.default_config()
  base.actor_hidden_sizes = (16, 16)
  base.critic_hidden_sizes = (16, 16)
  base.cql.num_samples = 4
  base.actor_lr = 3e-3
  config = variants.variant_config(name, base)
  for k, v in overrides.items():
    config[k] = v
  return config


def tiny_data(size=64):
  """Actions are a fixed function of the state, so a policy can learn to imitate them."""
  obs = RNG.normal(size=(size, OBS_DIM)).astype(np.float32)
  action = np.tanh(obs[:, :ACTION_DIM] * 1.5).astype(np.float32) * 0.8
  return Transition(obs=jnp.asarray(obs), action=jnp.asarray(action),
                    reward=jnp.asarray(RNG.normal(size=size).astype(np.float32)),
                    discount=jnp.ones(size, jnp.float32),
                    next_obs=jnp.asarray(RNG.normal(size=(size, OBS_DIM)).astype(np.float32)))


def make(config):
  low, high = -np.ones(ACTION_DIM), np.ones(ACTION_DIM)
  return cql.make_cql_agent(config, OBS_DIM, low, high)


@pytest.fixture(scope="module")
def data():
  return tiny_data()


def run_steps(agent, state, data, num_steps, seed):
  chunk = train.compile_chunk(agent, batch_size=16, num_steps=num_steps)
  return chunk(state, data, jax.random.key(seed))


@pytest.mark.parametrize("name,overrides", [
    ("cql_rho", {}), ("cql_nonis", {}), ("cql_h", {"max_backup": True, "backup_num_samples": 3}),
])
def test_each_variant_trains_with_finite_metrics(data, name, overrides):
  agent = make(tiny_config(name, **overrides))
  state = agent.init(jax.random.key(0))
  new, metrics = jax.jit(agent.update)(state, data, jax.random.key(1))
  for k, v in metrics.items():
    assert np.all(np.isfinite(np.asarray(v))), k
  assert "cql/gap" in metrics and int(new.step) == 1


def test_eq1_gap_is_soft_max_alone_and_eq4_gap_subtracts_data_q(data):
  # Same init and key: the Eq. 1 "gap" is E[soft-max]; the Eq. 4 gap subtracts E_D[Q].
  eq1 = make(tiny_config("cql_eq1"))
  eq4 = make(tiny_config("cql_h"))
  s = eq1.init(jax.random.key(3))
  _, m1 = jax.jit(eq1.update)(s, data, jax.random.key(4))
  _, m4 = jax.jit(eq4.update)(s, data, jax.random.key(5))
  np.testing.assert_allclose(m1["cql/gap"], m1["cql/soft_max_q"], rtol=1e-5)
  np.testing.assert_allclose(m4["cql/gap"], m4["cql/soft_max_q"] - m4["cql/q_data"], rtol=1e-4,
                             atol=1e-5)
  assert abs(float(m4["cql/q_data"])) > 1e-4   # else the two gaps could not be told apart
  # And against NumPy, from the critic's raw outputs at the same proposals (same keys).
  want1 = numpy_cql.critic_step_terms(tiny_config("cql_eq1"), jax.device_get(s), data, 4)
  want4 = numpy_cql.critic_step_terms(tiny_config("cql_h"), jax.device_get(s), data, 5)
  np.testing.assert_allclose(m1["cql/gap"], want1["cql/soft_max_q"], rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(m4["cql/gap"], want4["cql/soft_max_q"] - want4["cql/q_data"],
                             rtol=2e-4, atol=2e-5)
  for name in ("cql/penalty", "critic/loss"):
    np.testing.assert_allclose(m1[name], want1[name], rtol=2e-4, atol=2e-5, err_msg=name)
    np.testing.assert_allclose(m4[name], want4[name], rtol=2e-4, atol=2e-5, err_msg=name)


@pytest.fixture(scope="module")
def evaluation_run(data):
  source = make(tiny_config("bc"))
  source_state = source.init(jax.random.key(10))
  source_state, _ = run_steps(source, source_state, data, 20, seed=11)
  config = variants.policy_evaluation_config(tiny_config("cql_h"))
  agent = make(config)
  state = variants.policy_evaluation_state(agent.init(jax.random.key(12)),
                                           source_state.actor_params)
  before = jax.device_get(state)
  after, metrics = run_steps(agent, state, data, 50, seed=13)
  return source_state, before, jax.device_get(after), metrics


def test_policy_evaluation_never_updates_actor_or_temperature(evaluation_run):
  source_state, before, after, _ = evaluation_run
  for x, y, z in zip(jax.tree.leaves(before.actor_params), jax.tree.leaves(after.actor_params),
                     jax.tree.leaves(jax.device_get(source_state.actor_params))):
    np.testing.assert_array_equal(x, y)       # bit-identical after 50 updates
    np.testing.assert_array_equal(y, z)       # and it is the given policy
  np.testing.assert_array_equal(before.log_alpha, after.log_alpha)
  assert int(after.step) == 50


def test_policy_evaluation_trains_the_critic(evaluation_run):
  _, before, after, metrics = evaluation_run
  changed = [not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(before.critic_params),
                                                      jax.tree.leaves(after.critic_params))]
  assert all(changed)
  assert "actor/loss" not in metrics and "critic/loss" in metrics


def test_policy_evaluation_state_rejects_other_architecture():
  agent = make(variants.policy_evaluation_config(tiny_config()))
  other = make(tiny_config(actor_hidden_sizes=(8,)))
  with pytest.raises(ValueError, match="actor_hidden_sizes"):
    variants.policy_evaluation_state(agent.init(jax.random.key(0)),
                                     other.init(jax.random.key(1)).actor_params)


@pytest.mark.parametrize("num_critics", [4, 10])
def test_ensembles_have_stacked_shapes_and_train(data, num_critics):
  agent = make(tiny_config(f"ensemble_{num_critics}"))
  state = agent.init(jax.random.key(20))
  for leaf in jax.tree.leaves(state.critic_params):
    assert leaf.shape[0] == num_critics
  kernel = state.critic_params["params"]["critics"]["obs_in"]["kernel"]
  assert kernel.shape == (num_critics, OBS_DIM, 16)
  # Members start different (split init keys), so the min over E is not a no-op.
  assert not np.allclose(kernel[0], kernel[1])
  new, metrics = jax.jit(agent.update)(state, data, jax.random.key(21))
  assert np.isfinite(float(metrics["critic/loss"]))
  for leaf in jax.tree.leaves(new.critic_params):
    assert leaf.shape[0] == num_critics
  assert "cql/gap" not in metrics    # weight 0: offline SAC, no penalty computed


def test_bc_learns_to_imitate_and_leaves_critic_alone(data):
  agent = make(tiny_config("bc"))
  state = agent.init(jax.random.key(30))
  critic_before = jax.device_get(state.critic_params)
  chunk = train.compile_chunk(agent, batch_size=32, num_steps=100)
  state, first = chunk(state, data, jax.random.key(31))
  state, last = chunk(state, data, jax.random.key(32))
  start = float(np.asarray(first["actor/log_prob_data"])[:10].mean())
  end = float(np.asarray(last["actor/log_prob_data"])[-10:].mean())
  assert end > start + 1.0, (start, end)
  for x, y in zip(jax.tree.leaves(critic_before), jax.tree.leaves(state.critic_params)):
    np.testing.assert_array_equal(x, np.asarray(y))
  assert not any(k.startswith("critic/") for k in last)


def test_variant_configs_leave_their_base_untouched():
  base = cql.default_config()
  for name in variants.NAMES + ("ensemble_4",):
    variants.variant_config(name, base)
  variants.policy_evaluation_config(base, maximize_data_term=False)
  assert base.to_dict() == cql.default_config().to_dict()


def test_unknown_variant_raises():
  config = tiny_config()
  config.cql.variant = "bogus"
  with pytest.raises(ValueError, match="cql.variant"):
    make(config)


# ----------------------------------------------------------------------------- experiment helpers


def test_pendulum_state_round_trips_through_the_env():
  import gymnasium as gym
  from cql_jax.envs import pendulum as pendulum_env
  theta = np.array([-3.0, -0.4, 0.0, 1.2, 3.1])
  obs = np.stack([np.cos(theta), np.sin(theta), np.linspace(-6, 6, 5)], axis=-1)
  np.testing.assert_allclose(pendulum_env.pendulum_state_from_obs(obs)[:, 0], theta, atol=1e-12)
  env = gym.make("Pendulum-v1").unwrapped
  env.reset(seed=0)
  for o in obs:
    pendulum_env.set_pendulum_state(env, o)
    np.testing.assert_allclose(env._get_obs(), o, atol=1e-6)   # pylint: disable=protected-access
    # Zero torque from rest-free state: the next velocity follows θ̈ = 15 sin θ (dt 0.05).
    next_obs = env.step(np.zeros(1, np.float32))[0]
    want_vel = np.clip(o[2] + 0.05 * 15.0 * np.sin(np.arctan2(o[1], o[0])), -8, 8)
    np.testing.assert_allclose(next_obs[2], want_vel, rtol=1e-5, atol=1e-5)
  env.close()


def test_write_section_replaces_only_its_section(tmp_path):
  from experiments import results_md
  path = tmp_path / "R.md"
  path.write_text("## A\n\nold a\n\n## B\n\nkeep b\n")
  results_md.write_section(str(path), "## A", "new a")
  results_md.write_section(str(path), "## C", "c")
  text = path.read_text()
  assert "old a" not in text and "new a" in text and "keep b" in text
  assert text.index("## A") < text.index("## B") < text.index("## C")


def test_policy_evaluation_config_is_eq2_unless_asked():
  base = tiny_config("cql_h", num_critics=2, max_backup=True)
  base.cql.lagrange = True
  conservative = variants.policy_evaluation_config(base)
  assert (conservative.num_critics, conservative.max_backup, conservative.cql.variant,
          conservative.cql.lagrange, conservative.cql.weight) == (1, False, "pi", False, 5.0)
  fqe = variants.policy_evaluation_config(base, penalty=False, evaluated_action="mode")
  assert fqe.cql.weight == 0.0 and fqe.evaluated_action == "mode"
  assert "cql/gap" not in jax.jit(make(fqe).update)(make(fqe).init(jax.random.key(0)),
                                                     tiny_data(16), jax.random.key(1))[1]
  kept = variants.policy_evaluation_config(base, num_critics=2, max_backup=True)
  assert (kept.num_critics, kept.max_backup) == (2, True)


def test_evaluated_mode_is_refused_where_it_has_no_meaning():
  with pytest.raises(ValueError, match="only applies to policy evaluation"):
    make(tiny_config("cql_h", evaluated_action="mode"))
  pe = variants.policy_evaluation_config(tiny_config("cql_h"), evaluated_action="mode")
  pe.cql.variant = "H"
  with pytest.raises(ValueError, match="cql.variant='pi'"):
    make(pe)
  with pytest.raises(ValueError, match="'sample' or 'mode'"):
    make(tiny_config("cql_h", evaluated_action="median"))
