"""NumPy recomputation of one continuous CQL(H) critic step's quantities, for agent-level tests.

Only the networks' forward passes (actor mean/log-std, critic Q-values) and the random draws
come from JAX, with the keys the agent's update derives from its key; the proposals' actions
and log-densities, the importance-sampled logsumexp, the gap, the penalty, the Bellman target
and the loss are computed here in float64 from the paper's formulas.
"""
import jax
import numpy as np

from cql_jax.continuous import networks


def _tanh_gaussian(mean, log_std, noise):
  """mean, log_std [B, A]; noise [B, N, A] -> (actions [B, N, A], log-density [B, N])."""
  std = np.exp(log_std)[:, None]
  u = mean[:, None] + std * noise
  gauss = -0.5 * ((u - mean[:, None]) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
  return np.tanh(u), np.sum(gauss - np.log1p(-np.tanh(u) ** 2), axis=-1)


def _logsumexp(x, axis):
  m = x.max(axis=axis, keepdims=True)
  return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def critic_step_terms(config, state, batch, update_seed: int) -> dict:
  """Expected critic metrics of agent.update(state, batch, jax.random.key(update_seed)) for a
  CQL(H) config (variant "H", fixed α, deterministic backup; Cal-QL's bound with
  cql.calibrated, then batch carries mc_return), by metric name."""
  assert config.cql.variant == "H" and not config.cql.lagrange and not config.backup_entropy
  obs, next_obs = np.asarray(batch.obs), np.asarray(batch.next_obs)
  size, dim, n = obs.shape[0], batch.action.shape[-1], config.cql.num_samples
  actor = networks.TanhGaussianActor(dim, tuple(config.actor_hidden_sizes), config.log_std_min,
                                     config.log_std_max)
  critic = networks.CriticEnsemble(config.num_critics, tuple(config.critic_hidden_sizes))
  f64 = lambda x: np.asarray(x, np.float64)
  # The agent's key schedule: update splits (critic, actor); the critic splits 4 ways.
  critic_key, _ = jax.random.split(jax.random.key(update_seed))
  target_key, rand_key, pi_key, pi_next_key = jax.random.split(critic_key, 4)
  mean, log_std = (f64(x) for x in actor.apply(state.actor_params, obs))
  mean_t, log_std_t = (f64(x) for x in actor.apply(state.actor_params, next_obs))

  a_t, _ = _tanh_gaussian(mean_t, log_std_t, f64(jax.random.normal(target_key, (size, 1, dim))))
  q_t = f64(critic.apply(state.target_critic_params, next_obs, a_t.astype(np.float32)))[..., 0]
  target = f64(batch.reward) + config.gamma * f64(batch.discount) * q_t.min(axis=0)

  rand = f64(jax.random.uniform(rand_key, (size, n, dim), minval=-1.0, maxval=1.0))
  pi_a, pi_logp = _tanh_gaussian(mean, log_std, f64(jax.random.normal(pi_key, (size, n, dim))))
  nx_a, nx_logp = _tanh_gaussian(mean_t, log_std_t,
                                 f64(jax.random.normal(pi_next_key, (size, n, dim))))
  actions = np.concatenate([f64(batch.action)[:, None], rand, pi_a, nx_a], axis=1)
  log_density = np.concatenate([np.full((size, n), -dim * np.log(2.0)), pi_logp, nx_logp], axis=1)
  q = f64(critic.apply(state.critic_params, obs, actions.astype(np.float32)))  # [E, B, 1+3N]
  extra = {}
  if config.cql.get("calibrated", False):
    # Cal-QL: every π(s) and π(s') sample's Q (columns 1+N onwards), not the data action's or a
    # uniform sample's, becomes max(Q, return-to-go of the transition), written out by loop.
    mc = f64(batch.mc_return)
    below = 0
    for e in range(q.shape[0]):
      for b in range(size):
        for k in range(1 + n, 1 + 3 * n):
          if q[e, b, k] < mc[b]:
            below += 1
            q[e, b, k] = mc[b]
    extra["cql/bounded_fraction"] = below / (q.shape[0] * size * 2 * n)

  temp = config.cql.temperature
  soft_max = temp * _logsumexp(q[..., 1:] / temp - log_density[None], axis=-1)    # [E, B]
  q_data = q[..., 0]
  gap = (soft_max - q_data if config.cql.maximize_data_term else soft_max).mean(axis=-1)  # [E]
  penalty = config.cql.weight * gap.sum()
  bellman = ((q_data - target[None]) ** 2).mean(axis=-1)                         # [E]
  return {"cql/soft_max_q": soft_max.mean(), "cql/q_data": q_data.mean(), "cql/gap": gap.mean(),
          "cql/penalty": penalty, "critic/bellman_error": bellman.mean(),
          "critic/target": target.mean(), "critic/loss": bellman.sum() + penalty, **extra}
