"""Actor-critic CQL on SAC (Kumar et al. 2020, Algorithm 1 with Eq. 4), as one configurable path.

Offline SAC is `cql.weight = 0` (with `num_critics` = E for the ensemble-min baseline); the
Lagrangian α′ is `cql.lagrange = True`; a BC warm-start is `bc_steps > 0` and pure behaviour
cloning `algorithm = "bc"`. The penalty's soft-maximum is chosen by `cql.variant` (CQL(H),
CQL(ρ), the non-IS form, or μ = π) and Eq. 1 is `cql.maximize_data_term = False`.
`policy_evaluation = True` trains only the critic of a fixed policy (conservative OPE);
`max_backup = True` is the max-over-samples target. Everything that may be swept (α, τ, γ,
Polyak rate, learning rates) lives in the state as arrays, so seeds and hyperparameters can be
vmapped over one compiled update.
"""
from __future__ import annotations

from typing import Any, Dict

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cql_jax import hyperparams
from cql_jax.continuous import losses
from cql_jax.continuous import networks
from cql_jax.types import Agent, Transition


def default_config() -> ml_collections.ConfigDict:
  """Hyperparameters of the reference CQL(H) (official/JaxCQL values, ../shared/REFERENCE.md)."""
  c = ml_collections.ConfigDict()
  c.actor_hidden_sizes = (256, 256)
  c.critic_hidden_sizes = (256, 256)
  c.num_critics = 2
  # "bfloat16" runs the critic torso's matmuls (forward and backward) in bf16 with float32
  # accumulation: ~17% faster per step on this CPU (BENCHMARKS.md), but it changes numerics.
  c.critic_matmul_dtype = ml_collections.config_dict.placeholder(str)
  c.actor_lr = 1e-4
  c.critic_lr = 3e-4
  c.alpha_lr = 1e-4            # SAC temperature; public code ties it to the actor lr.
  c.gamma = 0.99
  c.polyak = 5e-3              # target critic ← (1 − polyak)·target + polyak·critic, every step.
  c.auto_entropy = True
  c.init_log_alpha = 0.0
  c.target_entropy = ml_collections.config_dict.placeholder(float)  # None → −|A|.
  c.backup_entropy = True      # subtract α·log π(a'|s') in the Bellman target.
  c.bc_steps = 0               # policy trained by behaviour cloning for this many steps first.
  c.algorithm = "cql"          # "cql"; or "bc": actor trained by BC alone, critic never touched.
  c.policy_evaluation = False  # critic of the fixed actor in the state; actor and α frozen.
  c.max_backup = False         # target max over backup_num_samples a' ~ π(s') of min_E Q'.
  c.backup_num_samples = 10
  c.log_std_min = -5.0
  c.log_std_max = 2.0
  c.cql = ml_collections.ConfigDict()
  c.cql.weight = 5.0           # α of Eq. 4 (a.k.a. min_q_weight); 0 gives offline SAC.
  c.cql.num_samples = 10       # N actions per source: uniform, π(·|s), π(·|s').
  c.cql.temperature = 1.0
  # Soft-maximum term of the penalty, E_s[·] of:
  #   "H":     T·log ∫ exp(Q/T) da, importance-sampled from uniform, π(s) and π(s') (Eq. 4).
  #   "rho":   T·log E_{a~π(s)}[exp(Q/T)], ρ = the current (previous-iterate) policy, no IS.
  #   "nonis": T·logsumexp of raw Q over uniform, data, π(s), π(s') (public min_q_version=2).
  #   "pi":    E_{a~π(s)}[Q], μ = π exactly (Eq. 1/2 as written; for policy evaluation).
  c.cql.variant = "H"
  c.cql.maximize_data_term = True  # False: Eq. 1 (no −E_D[Q] term), a point-wise lower bound.
  c.cql.subtract_log_num_samples = False  # keep public code's offset so its τ values port.
  c.cql.lagrange = False       # learn α′ by dual descent so the gap approaches target_gap.
  c.cql.target_gap = 5.0       # τ of the Lagrangian version.
  c.cql.init_log_alpha_prime = 0.0
  c.cql.alpha_prime_lr = 3e-4
  c.cql.alpha_prime_max = 1e6
  return c


class CQLState(flax.struct.PyTreeNode):
  """Immutable train state. All leaves are arrays (vmappable, checkpointable).

  critic_params leaves carry a leading axis E (the stacked ensemble). hparams holds the scalars
  of STATE_HPARAMS (dotted config keys: "cql.weight", "cql.target_gap", "gamma", "polyak"), shape
  (), float32; the learning rates live in the *_opt states (optax.inject_hyperparams).
  """
  actor_params: Any
  actor_opt: Any
  critic_params: Any
  critic_opt: Any
  target_critic_params: Any
  log_alpha: jax.Array
  alpha_opt: Any
  log_alpha_prime: jax.Array
  alpha_prime_opt: Any
  hparams: Dict[str, jax.Array]
  step: jax.Array


VARIANTS = ("H", "rho", "nonis", "pi")


# Scalars read from state.hparams by the update (always present, so every config's state has
# the same structure); learning rates live in the optimiser states instead.
STATE_HPARAMS = ("cql.weight", "cql.target_gap", "gamma", "polyak")


def _sweepable(cfg, train_critic: bool, train_actor: bool, use_penalty: bool) -> tuple:
  """The dotted keys init accepts: only those the compiled update actually reads."""
  keys = []
  if train_critic:
    keys += ["gamma", "polyak", "critic_lr"]
    if use_penalty:
      keys += ["cql.weight"]
    if use_penalty and cfg.cql.lagrange:
      keys += ["cql.target_gap", "cql.alpha_prime_lr"]
  if train_actor:
    keys += ["actor_lr"]
    if cfg.auto_entropy:
      keys += ["alpha_lr"]
  return tuple(keys)


def _adam(lr):
  return hyperparams.adam(lr)


def make_cql_agent(config: ml_collections.ConfigDict, obs_dim: int, action_low, action_high) -> Agent:
  """Builds the CQL agent's pure (init, update, act) for observations [O] and Box actions.

  action_low, action_high: [A] bounds of the environment's action space. The networks work in
  [-1, 1]^A; `act` maps back to these bounds, and datasets must be scaled into [-1, 1] first
  (cql_jax.data.buffer.scale_actions).
  """
  action_low = np.asarray(action_low, np.float32)
  action_high = np.asarray(action_high, np.float32)
  if action_low.ndim != 1 or action_low.shape != action_high.shape:
    raise ValueError(f"action bounds must be 1-D and equal in shape, got {action_low.shape} "
                     f"and {action_high.shape}")
  if not np.all(np.isfinite(action_low)) or not np.all(np.isfinite(action_high)):
    raise ValueError("the continuous CQL agent needs a bounded Box action space; got infinite "
                     "bounds. Pass finite action_low/action_high.")
  action_dim = int(action_low.shape[0])
  cfg = config
  if cfg.algorithm not in ("cql", "bc"):
    raise ValueError(f"algorithm must be 'cql' or 'bc', got {cfg.algorithm!r}")
  if cfg.cql.variant not in VARIANTS:
    raise ValueError(f"cql.variant must be one of {VARIANTS}, got {cfg.cql.variant!r}")
  if cfg.algorithm == "bc" and cfg.policy_evaluation:
    raise ValueError("policy_evaluation trains a critic; it cannot be combined with algorithm='bc'")
  num_samples = int(cfg.cql.num_samples)
  train_critic = cfg.algorithm != "bc"
  train_actor = not cfg.policy_evaluation
  use_penalty = bool(cfg.cql.lagrange) or float(cfg.cql.weight) != 0.0
  target_entropy = (-float(action_dim) if cfg.target_entropy is None else float(cfg.target_entropy))

  actor = networks.TanhGaussianActor(action_dim, tuple(cfg.actor_hidden_sizes),
                                     cfg.log_std_min, cfg.log_std_max)
  critic = networks.CriticEnsemble(
      int(cfg.num_critics), tuple(cfg.critic_hidden_sizes),
      matmul_dtype=None if cfg.critic_matmul_dtype is None else jnp.dtype(cfg.critic_matmul_dtype))
  actor_tx, critic_tx = _adam(cfg.actor_lr), _adam(cfg.critic_lr)
  alpha_tx, alpha_prime_tx = _adam(cfg.alpha_lr), _adam(cfg.cql.alpha_prime_lr)

  sweepable = _sweepable(cfg, train_critic, train_actor, use_penalty)

  def init(key, hparams=None) -> CQLState:
    """A fresh state; hparams: optional {dotted key in `sweepable`: scalar} overriding the config."""
    hp = hyperparams.resolve(cfg, sweepable, hparams, {})
    value = lambda k: hp[k] if k in hp else jnp.asarray(hyperparams.config_value(cfg, k), jnp.float32)
    actor_key, critic_key = jax.random.split(key)
    obs = jnp.zeros((1, obs_dim), jnp.float32)
    actor_params = actor.init(actor_key, obs)
    critic_params = critic.init(critic_key, obs, jnp.zeros((1, 1, action_dim), jnp.float32))
    log_alpha = jnp.asarray(cfg.init_log_alpha, jnp.float32)
    log_alpha_prime = jnp.asarray(cfg.cql.init_log_alpha_prime, jnp.float32)
    opt = lambda tx, params, lr_key: hyperparams.with_learning_rate(tx.init(params), value(lr_key))
    return CQLState(
        actor_params=actor_params, actor_opt=opt(actor_tx, actor_params, "actor_lr"),
        critic_params=critic_params, critic_opt=opt(critic_tx, critic_params, "critic_lr"),
        target_critic_params=jax.tree.map(jnp.copy, critic_params),  # distinct buffers: donation
        log_alpha=log_alpha, alpha_opt=opt(alpha_tx, log_alpha, "alpha_lr"),
        log_alpha_prime=log_alpha_prime,
        alpha_prime_opt=opt(alpha_prime_tx, log_alpha_prime, "cql.alpha_prime_lr"),
        hparams={k: value(k) for k in STATE_HPARAMS},
        step=jnp.zeros((), jnp.int32))

  def policy_samples(actor_params, obs, key, n):
    mean, log_std = actor.apply(actor_params, obs)
    return networks.sample_tanh_gaussian(mean, log_std, key, n)

  def update_critic(state: CQLState, batch: Transition, key):
    target_key, rand_key, pi_key, pi_next_key = jax.random.split(key, 4)
    hp = state.hparams
    entropy_alpha = jnp.exp(state.log_alpha)

    if cfg.max_backup:
      next_action, next_log_prob = policy_samples(state.actor_params, batch.next_obs, target_key,
                                                  int(cfg.backup_num_samples))
      next_q = critic.apply(state.target_critic_params, batch.next_obs, next_action)  # [E, B, N]
      target = losses.max_backup_td_target(
          next_q, batch.reward, batch.discount, hp["gamma"],
          next_log_prob if cfg.backup_entropy else None, entropy_alpha)
    else:
      next_action, next_log_prob = policy_samples(state.actor_params, batch.next_obs, target_key, 1)
      next_q = critic.apply(state.target_critic_params, batch.next_obs, next_action)[..., 0]
      target = losses.soft_td_target(
          next_q, batch.reward, batch.discount, hp["gamma"],
          next_log_prob[:, 0] if cfg.backup_entropy else None, entropy_alpha)

    log_density = None
    if use_penalty and cfg.cql.variant in ("H", "nonis"):
      batch_size = batch.obs.shape[0]
      rand = jax.random.uniform(rand_key, (batch_size, num_samples, action_dim), minval=-1., maxval=1.)
      rand_log_density = jnp.full((batch_size, num_samples), -action_dim * jnp.log(2.0))
      pi_a, pi_logp = policy_samples(state.actor_params, batch.obs, pi_key, num_samples)
      # Actions from π(·|s') are scored at s: a third proposal that covers where the policy goes.
      pi_next_a, pi_next_logp = policy_samples(state.actor_params, batch.next_obs, pi_next_key, num_samples)
      proposals = jax.lax.stop_gradient(jnp.concatenate([rand, pi_a, pi_next_a], axis=1))
      log_density = jnp.concatenate([rand_log_density, pi_logp, pi_next_logp], axis=1)
      actions = jnp.concatenate([batch.action[:, None, :], proposals], axis=1)   # [B, 1+3N, A]
    elif use_penalty:
      # "rho" and "pi" need only samples of the policy at s: ρ = μ = the current actor, which
      # is the previous iterate π̂^{k−1} relative to the actor step that follows.
      del rand_key, pi_next_key
      pi_a, _ = policy_samples(state.actor_params, batch.obs, pi_key, num_samples)
      actions = jnp.concatenate([batch.action[:, None, :], jax.lax.stop_gradient(pi_a)], axis=1)
    else:
      actions = batch.action[:, None, :]
    alpha_prime = (jnp.clip(jnp.exp(state.log_alpha_prime), 0.0, cfg.cql.alpha_prime_max)
                   if cfg.cql.lagrange else None)

    def soft_maximum(q_all, log_density):
      """q_all: [E, B, 1+M] with the data action first -> [E, B] for the configured variant."""
      variant, temp = cfg.cql.variant, cfg.cql.temperature
      if variant == "H":
        return losses.importance_sampled_logsumexp(
            q_all[..., 1:], log_density, temp, cfg.cql.subtract_log_num_samples)
      if variant == "nonis":
        # Raw Q (no densities) over all 3N+1 actions, the data action included, as public code.
        return losses.importance_sampled_logsumexp(
            q_all, jnp.zeros(q_all.shape[1:]), temp, cfg.cql.subtract_log_num_samples)
      if variant == "rho":
        return losses.policy_logmeanexp(q_all[..., 1:], temp)
      return jnp.mean(q_all[..., 1:], axis=-1)                                   # "pi"

    def loss_fn(critic_params):
      q_all = critic.apply(critic_params, batch.obs, actions)                   # [E, B, 1(+3N)]
      q_data = q_all[..., 0]
      loss, info = losses.bellman_error(q_data, target)
      gap = jnp.zeros((q_all.shape[0],))
      if use_penalty:
        soft_max_q = soft_maximum(q_all, log_density)
        gap, gap_info = losses.cql_gap(soft_max_q, q_data, cfg.cql.maximize_data_term)
        penalty, _, pen_info = losses.cql_penalty(gap, hp["cql.weight"], alpha_prime, hp["cql.target_gap"])
        loss = loss + penalty
        info = {**info, **gap_info, **pen_info}
      return loss, (info, gap)

    (loss, (info, gap)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic_params)
    updates, critic_opt = critic_tx.update(grads, state.critic_opt, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)
    info = {**info, "critic/loss": loss, "critic/grad_norm": optax.global_norm(grads)}

    log_alpha_prime, alpha_prime_opt = state.log_alpha_prime, state.alpha_prime_opt
    if cfg.cql.lagrange:
      def dual_fn(log_ap):
        ap = jnp.clip(jnp.exp(log_ap), 0.0, cfg.cql.alpha_prime_max)
        return losses.cql_penalty(jax.lax.stop_gradient(gap), hp["cql.weight"], ap, hp["cql.target_gap"])[1]
      dual_grad = jax.grad(dual_fn)(state.log_alpha_prime)
      upd, alpha_prime_opt = alpha_prime_tx.update(dual_grad, state.alpha_prime_opt)
      log_alpha_prime = optax.apply_updates(state.log_alpha_prime, upd)

    return state.replace(critic_params=critic_params, critic_opt=critic_opt,
                         log_alpha_prime=log_alpha_prime, alpha_prime_opt=alpha_prime_opt), info

  def update_actor(state: CQLState, batch: Transition, key):
    entropy_alpha = jnp.exp(state.log_alpha)

    def loss_fn(actor_params):
      mean, log_std = actor.apply(actor_params, batch.obs)
      a, log_prob = networks.sample_tanh_gaussian(mean, log_std, key, 1)
      log_prob = log_prob[:, 0]
      if cfg.algorithm == "bc":
        # No critic exists to score a: skip its forward pass entirely.
        log_prob_data = networks.tanh_gaussian_log_prob_of_action(
            mean, log_std, batch.action[:, None, :])[:, 0]
        bc_loss, info = losses.bc_actor_loss(log_prob_data, log_prob, entropy_alpha)
        return bc_loss, ({**info, "actor/entropy": -jnp.mean(log_prob)}, log_prob)
      q_pi = critic.apply(state.critic_params, batch.obs, a)[..., 0]           # [E, B]
      sac_loss, info = losses.sac_actor_loss(q_pi, log_prob, entropy_alpha)
      if cfg.bc_steps > 0:
        log_prob_data = networks.tanh_gaussian_log_prob_of_action(
            mean, log_std, batch.action[:, None, :])[:, 0]
        bc_loss, bc_info = losses.bc_actor_loss(log_prob_data, log_prob, entropy_alpha)
        in_bc = state.step < cfg.bc_steps
        sac_loss = jnp.where(in_bc, bc_loss, sac_loss)
        info = {**info, "actor/loss": sac_loss, "actor/log_prob_data": bc_info["actor/log_prob_data"]}
      return sac_loss, (info, log_prob)

    (_, (info, log_prob)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor_params)
    updates, actor_opt = actor_tx.update(grads, state.actor_opt, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)
    state = state.replace(actor_params=actor_params, actor_opt=actor_opt)

    alpha_info = {"alpha/value": entropy_alpha}
    if cfg.auto_entropy:
      (_, alpha_info), g = jax.value_and_grad(losses.temperature_loss, has_aux=True)(
          state.log_alpha, log_prob, target_entropy)
      upd, alpha_opt = alpha_tx.update(g, state.alpha_opt)
      state = state.replace(log_alpha=optax.apply_updates(state.log_alpha, upd), alpha_opt=alpha_opt)
    return state, {**info, **alpha_info}

  def update(state: CQLState, batch: Transition, key):
    """One gradient step on critic, actor, temperature and α′; Polyak target update."""
    critic_key, actor_key = jax.random.split(key)
    critic_info, actor_info = {}, {}
    # Modes are settled here, at build time: a frozen part is not differentiated at all.
    if train_critic:
      state, critic_info = update_critic(state, batch, critic_key)
    if train_actor:
      state, actor_info = update_actor(state, batch, actor_key)
    if train_critic:
      rate = state.hparams["polyak"]
      target = jax.tree.map(lambda t, p: (1.0 - rate) * t + rate * p,
                            state.target_critic_params, state.critic_params)
      state = state.replace(target_critic_params=target)
    return state.replace(step=state.step + 1), {**critic_info, **actor_info}

  scale = jnp.asarray((action_high - action_low) / 2.0)
  offset = jnp.asarray((action_high + action_low) / 2.0)

  def act(state: CQLState, obs, key, deterministic: bool = True):
    """obs [B, O] -> actions [B, A] in the environment's bounds (tanh(mean) if deterministic)."""
    mean, log_std = actor.apply(state.actor_params, obs)
    if deterministic:
      a = jnp.tanh(mean)
    else:
      a = networks.sample_tanh_gaussian(mean, log_std, key, 1)[0][:, 0]
    return offset + scale * a

  return Agent(init=init, update=update, act=act, sweepable=sweepable)
