"""Actor-critic CQL on SAC (Kumar et al. 2020, Algorithm 1 with Eq. 4), as one configurable path.

Offline SAC is `cql.weight = 0` (with `num_critics` = E for the ensemble-min baseline); the
Lagrangian α′ is `cql.lagrange = True`; a BC warm-start is `bc_steps > 0` and pure behaviour
cloning `algorithm = "bc"`. The penalty's soft-maximum is chosen by `cql.variant` (CQL(H),
CQL(ρ), the non-IS form, or μ = π) and Eq. 1 is `cql.maximize_data_term = False`.
`policy_evaluation = True` trains only the critic of a fixed policy (conservative OPE);
`max_backup = True` is the max-over-samples target.

The agent is module-level pure functions over a frozen `Spec` of the static choices, computed
once from the config by `make_spec`; `make_cql_agent` binds them with functools.partial. The
maths lives in cql_jax.continuous.losses. Everything that may be swept (α, τ, γ, Polyak rate,
learning rates) lives in the state as arrays, so seeds and hyperparameters can be vmapped over
one compiled update.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, NamedTuple, Optional, Tuple

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

VARIANTS = losses.SOFT_MAXIMA
# Scalars the update reads from state.hparams (always present, so every config's state has the
# same structure); the learning rates live in the optimiser states.
STATE_HPARAMS = ("cql.weight", "cql.target_gap", "gamma", "polyak")
LEARNING_RATES = ("actor_lr", "critic_lr", "alpha_lr", "cql.alpha_prime_lr")


def default_config() -> ml_collections.ConfigDict:
  """Hyperparameters of the reference CQL(H): the official code's and JaxCQL's values.

  Like every public CQL code (official deterministic_backup, JaxCQL/CORL backup_entropy=False),
  the Bellman target has no entropy term; online SAC turns it on explicitly.
  """
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
  c.backup_entropy = False     # True: subtract α·log π(a'|s') in the Bellman target (SAC's).
  c.bc_steps = 0               # policy trained by behaviour cloning for this many steps first.
  c.algorithm = "cql"          # "cql"; or "bc": actor trained by BC alone, critic never touched.
  c.policy_evaluation = False  # critic of the fixed actor in the state; actor and α frozen.
  # Which policy a policy-evaluation critic values: "sample" (the stochastic actor, a' ~ π) or
  # "mode" (tanh of its mean: the deterministic policy that evaluation runs by default).
  c.evaluated_action = "sample"
  c.max_backup = False         # target max over backup_num_samples a' ~ π(s') of min_E Q'.
  c.backup_num_samples = 10
  c.log_std_min = -5.0
  c.log_std_max = 2.0
  c.cql = ml_collections.ConfigDict()
  c.cql.weight = 5.0           # α of Eq. 4 (a.k.a. min_q_weight); 0 gives offline SAC.
  c.cql.num_samples = 10       # N actions per source: uniform, π(·|s), π(·|s').
  c.cql.temperature = 1.0
  # Soft-maximum term of the penalty, E_s[·] of (cql_jax.continuous.losses.soft_maximum):
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
  # Cal-QL (Nakamoto et al. 2023): the penalty's Q-values at the policy's actions (π(s) and
  # π(s') samples) are bounded below by the transition's Monte-Carlo return-to-go, so the critic
  # is never pushed below the behaviour policy's value. Batches must carry `mc_return`
  # (cql_jax.types.ReturnTransition; the runner attaches it, cql_jax.data.returns).
  c.cql.calibrated = False
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


@dataclasses.dataclass(frozen=True)
class Spec:
  """The static choices of one agent, computed once from its config by `make_spec`.

  Changing any of these means compiling a new update; the sweepable values are in the state.
  """
  actor: networks.TanhGaussianActor
  critic: networks.CriticEnsemble
  actor_tx: optax.GradientTransformation
  critic_tx: optax.GradientTransformation
  alpha_tx: optax.GradientTransformation
  alpha_prime_tx: optax.GradientTransformation
  obs_dim: int
  action_dim: int
  action_scale: Tuple[float, ...]     # [A] (high − low) / 2, environment units.
  action_offset: Tuple[float, ...]    # [A] (high + low) / 2.
  train_critic: bool                  # False for algorithm = "bc".
  train_actor: bool                   # False for policy evaluation.
  bc_only: bool                       # algorithm = "bc": the actor's loss is BC alone.
  bc_steps: int
  use_penalty: bool                   # cql.weight != 0 or cql.lagrange: penalty compiled in.
  lagrange: bool
  alpha_prime_max: float
  soft_maximum: str                   # cql.variant, one of VARIANTS.
  num_samples: int                    # N proposals per source.
  temperature: float
  subtract_log_num_samples: bool
  maximize_data_term: bool
  calibrated: bool                    # Cal-QL: policy-action Q bounded below by batch.mc_return.
  max_backup: bool
  evaluated_mode: bool                # policy evaluation of tanh(mean) rather than of samples.
  backup_num_samples: int
  backup_entropy: bool
  auto_entropy: bool
  target_entropy: float
  init_log_alpha: float
  init_log_alpha_prime: float
  defaults: Tuple[Tuple[str, Any], ...]  # config value of every STATE_HPARAMS / LEARNING_RATES key.
  sweepable: Tuple[str, ...]


def _check_config(cfg: ml_collections.ConfigDict) -> None:
  if cfg.algorithm not in ("cql", "bc"):
    raise ValueError(f"algorithm must be 'cql' or 'bc', got {cfg.algorithm!r}")
  if cfg.cql.variant not in VARIANTS:
    raise ValueError(f"cql.variant must be one of {VARIANTS}, got {cfg.cql.variant!r}")
  if cfg.algorithm == "bc" and cfg.policy_evaluation:
    raise ValueError("policy_evaluation trains a critic; it cannot be combined with algorithm='bc'")
  if cfg.evaluated_action not in ("sample", "mode"):
    raise ValueError(f"evaluated_action must be 'sample' or 'mode', got {cfg.evaluated_action!r}")
  if cfg.evaluated_action == "mode" and not cfg.policy_evaluation:
    raise ValueError("evaluated_action='mode' only applies to policy evaluation "
                     "(policy_evaluation=True); CQL and SAC back up sampled actions.")
  penalised = bool(cfg.cql.lagrange) or float(cfg.cql.weight) != 0.0
  if cfg.evaluated_action == "mode" and (cfg.max_backup or (penalised and cfg.cql.variant != "pi")):
    raise ValueError("evaluated_action='mode' values one action per state: it needs "
                     "max_backup=False and, with a penalty, cql.variant='pi' "
                     "(variants.policy_evaluation_config sets both).")
  if cfg.cql.calibrated and not penalised:
    raise ValueError("cql.calibrated=True bounds the CQL penalty's Q-values, but this config has "
                     "no penalty (cql.weight=0 and cql.lagrange=False); set a CQL weight.")


def _action_bounds(action_low, action_high) -> Tuple[np.ndarray, np.ndarray]:
  low, high = np.asarray(action_low, np.float32), np.asarray(action_high, np.float32)
  if low.ndim != 1 or low.shape != high.shape:
    raise ValueError(f"action bounds must be 1-D and equal in shape, got {low.shape} "
                     f"and {high.shape}")
  if not np.all(np.isfinite(low)) or not np.all(np.isfinite(high)):
    raise ValueError("the continuous CQL agent needs a bounded Box action space; got infinite "
                     "bounds. Pass finite action_low/action_high.")
  return low, high


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


def make_spec(config: ml_collections.ConfigDict, obs_dim: int, action_low, action_high) -> Spec:
  """Validates `config` (see default_config) and settles its static choices."""
  cfg = config
  _check_config(cfg)
  low, high = _action_bounds(action_low, action_high)
  action_dim = int(low.shape[0])
  train_critic, train_actor = cfg.algorithm != "bc", not cfg.policy_evaluation
  use_penalty = bool(cfg.cql.lagrange) or float(cfg.cql.weight) != 0.0
  matmul_dtype = None if cfg.critic_matmul_dtype is None else jnp.dtype(cfg.critic_matmul_dtype)
  return Spec(
      actor=networks.TanhGaussianActor(action_dim, tuple(cfg.actor_hidden_sizes),
                                       cfg.log_std_min, cfg.log_std_max),
      critic=networks.CriticEnsemble(int(cfg.num_critics), tuple(cfg.critic_hidden_sizes),
                                     matmul_dtype=matmul_dtype),
      actor_tx=hyperparams.adam(cfg.actor_lr), critic_tx=hyperparams.adam(cfg.critic_lr),
      alpha_tx=hyperparams.adam(cfg.alpha_lr),
      alpha_prime_tx=hyperparams.adam(cfg.cql.alpha_prime_lr),
      obs_dim=int(obs_dim), action_dim=action_dim,
      action_scale=tuple(float(x) for x in (high - low) / 2.0),
      action_offset=tuple(float(x) for x in (high + low) / 2.0),
      train_critic=train_critic, train_actor=train_actor, bc_only=cfg.algorithm == "bc",
      bc_steps=int(cfg.bc_steps), use_penalty=use_penalty, lagrange=bool(cfg.cql.lagrange),
      alpha_prime_max=float(cfg.cql.alpha_prime_max), soft_maximum=cfg.cql.variant,
      num_samples=int(cfg.cql.num_samples), temperature=float(cfg.cql.temperature),
      subtract_log_num_samples=bool(cfg.cql.subtract_log_num_samples),
      maximize_data_term=bool(cfg.cql.maximize_data_term),
      calibrated=bool(cfg.cql.get("calibrated", False)), max_backup=bool(cfg.max_backup),
      evaluated_mode=cfg.evaluated_action == "mode",
      backup_num_samples=int(cfg.backup_num_samples), backup_entropy=bool(cfg.backup_entropy),
      auto_entropy=bool(cfg.auto_entropy),
      target_entropy=(-float(action_dim) if cfg.target_entropy is None
                      else float(cfg.target_entropy)),
      init_log_alpha=float(cfg.init_log_alpha),
      init_log_alpha_prime=float(cfg.cql.init_log_alpha_prime),
      defaults=hyperparams.config_values(cfg, STATE_HPARAMS + LEARNING_RATES),
      sweepable=_sweepable(cfg, train_critic, train_actor, use_penalty))


def init(spec: Spec, key, hparams=None) -> CQLState:
  """A fresh state; hparams: optional {key in spec.sweepable: scalar} overriding the config."""
  hp = hyperparams.resolve(dict(spec.defaults), spec.sweepable, hparams, {})
  actor_key, critic_key = jax.random.split(key)
  obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
  actor_params = spec.actor.init(actor_key, obs)
  critic_params = spec.critic.init(critic_key, obs, jnp.zeros((1, 1, spec.action_dim), jnp.float32))
  log_alpha = jnp.asarray(spec.init_log_alpha, jnp.float32)
  log_alpha_prime = jnp.asarray(spec.init_log_alpha_prime, jnp.float32)
  opt = lambda tx, params, lr_key: hyperparams.with_learning_rate(tx.init(params), hp[lr_key])
  return CQLState(
      actor_params=actor_params, actor_opt=opt(spec.actor_tx, actor_params, "actor_lr"),
      critic_params=critic_params, critic_opt=opt(spec.critic_tx, critic_params, "critic_lr"),
      target_critic_params=jax.tree.map(jnp.copy, critic_params),  # distinct buffers: donation
      log_alpha=log_alpha, alpha_opt=opt(spec.alpha_tx, log_alpha, "alpha_lr"),
      log_alpha_prime=log_alpha_prime,
      alpha_prime_opt=opt(spec.alpha_prime_tx, log_alpha_prime, "cql.alpha_prime_lr"),
      hparams={k: hp[k] for k in STATE_HPARAMS},
      step=jnp.zeros((), jnp.int32))


def policy_samples(spec: Spec, actor_params, obs, key, num_samples: int):
  """obs [B, O] -> (actions [B, N, A] in (-1, 1), log π [B, N]), reparameterised."""
  mean, log_std = spec.actor.apply(actor_params, obs)
  return networks.sample_tanh_gaussian(mean, log_std, key, num_samples)


def evaluated_actions(spec: Spec, actor_params, obs, key, num_samples: int):
  """The actions of the policy being valued: samples of π, or (evaluated_mode) its mode.

  Returns (actions [B, N, A], log π [B, N]); for the mode N is 1 and log π is zeros (unused:
  a policy-evaluation backup has no entropy term).
  """
  if not spec.evaluated_mode:
    return policy_samples(spec, actor_params, obs, key, num_samples)
  del key
  mean, _ = spec.actor.apply(actor_params, obs)
  return jnp.tanh(mean)[:, None, :], jnp.zeros(mean.shape[:1] + (1,), mean.dtype)


def td_target(spec: Spec, state: CQLState, batch: Transition, key):
  """The Bellman target [B] from the target critics at a' ~ π(·|s'), gradients stopped."""
  entropy_alpha = jnp.exp(state.log_alpha)
  gamma = state.hparams["gamma"]
  if spec.max_backup:
    a_t, log_pi_t = policy_samples(spec, state.actor_params, batch.next_obs, key,
                                   spec.backup_num_samples)
    q_t = spec.critic.apply(state.target_critic_params, batch.next_obs, a_t)    # [E, B, N]
    return losses.max_backup_td_target(q_t, batch.reward, batch.discount, gamma,
                                       log_pi_t if spec.backup_entropy else None, entropy_alpha)
  a_t, log_pi_t = evaluated_actions(spec, state.actor_params, batch.next_obs, key, 1)
  q_t = spec.critic.apply(state.target_critic_params, batch.next_obs, a_t)[..., 0]  # [E, B]
  return losses.soft_td_target(q_t, batch.reward, batch.discount, gamma,
                               log_pi_t[:, 0] if spec.backup_entropy else None, entropy_alpha)


def proposal_actions(spec: Spec, actor_params, batch: Transition, rand_key, pi_key, pi_next_key):
  """Actions the critic scores at s: the data action first, then the penalty's proposals.

  Returns (actions [B, 1+M, A], log_density [B, M] or None). "H" and "nonis" draw N uniform
  actions, N from π(·|s) and N from π(·|s') (scored at s: a third proposal that covers where
  the policy goes), M = 3N, with their densities; "rho" and "pi" need only N samples of π(·|s)
  (ρ = μ = the current actor, the previous iterate relative to the actor step that follows).
  Without a penalty only the data action is scored.
  """
  data_action = batch.action[:, None, :]
  if not spec.use_penalty:
    return data_action, None
  n, dim = spec.num_samples, spec.action_dim
  pi_a, pi_logp = evaluated_actions(spec, actor_params, batch.obs, pi_key, n)
  if spec.soft_maximum not in ("H", "nonis"):
    del rand_key, pi_next_key
    return jnp.concatenate([data_action, jax.lax.stop_gradient(pi_a)], axis=1), None
  batch_size = batch.obs.shape[0]
  rand = jax.random.uniform(rand_key, (batch_size, n, dim), minval=-1., maxval=1.)
  rand_log_density = jnp.full((batch_size, n), -dim * jnp.log(2.0))
  pi_next_a, pi_next_logp = policy_samples(spec, actor_params, batch.next_obs, pi_next_key, n)
  proposals = jax.lax.stop_gradient(jnp.concatenate([rand, pi_a, pi_next_a], axis=1))
  log_density = jnp.concatenate([rand_log_density, pi_logp, pi_next_logp], axis=1)
  return jnp.concatenate([data_action, proposals], axis=1), log_density


def policy_columns(spec: Spec) -> np.ndarray:
  """[1+M] bool: which of proposal_actions' columns are samples of the policy (Cal-QL bounds
  these): the N π(s) and N π(s') samples of "H"/"nonis", the N π(s) samples of "rho"/"pi"."""
  n = spec.num_samples
  if spec.soft_maximum in ("H", "nonis"):
    return np.asarray([False] * (1 + n) + [True] * (2 * n))
  return np.asarray([False] + [True] * n)


class CriticTerms(NamedTuple):
  """What the critic loss computed, for the metrics: q_tm1 [E, B] at the data action,
  bellman [E] per-critic MSE, soft_max [E, B], gap [E], penalty (None without a penalty)."""
  q_tm1: jax.Array
  bellman: jax.Array
  soft_max: Optional[jax.Array]
  gap: jax.Array
  penalty: Optional[losses.Penalty]
  bounded_fraction: Optional[jax.Array] = None  # Cal-QL: share of policy Q-values below the bound.


def alpha_prime(spec: Spec, log_alpha_prime):
  """α′ = exp(log α′) clipped to [0, alpha_prime_max]; None without the Lagrangian."""
  if not spec.lagrange:
    return None
  return jnp.clip(jnp.exp(log_alpha_prime), 0.0, spec.alpha_prime_max)


def critic_loss(spec: Spec, critic_params, state: CQLState, batch: Transition, actions,
                log_density, target):
  """Σ_E Bellman error + the CQL penalty. actions [B, 1+M, A] (data first); target [B]."""
  q_all = spec.critic.apply(critic_params, batch.obs, actions)                 # [E, B, 1(+M)]
  q_tm1 = q_all[..., 0]
  bellman = losses.bellman_error(q_tm1, target)
  loss = jnp.sum(bellman)
  if not spec.use_penalty:
    return loss, CriticTerms(q_tm1, bellman, None, jnp.zeros((q_all.shape[0],)), None)
  bounded_fraction = None
  if spec.calibrated:
    columns = policy_columns(spec)
    below = q_all[..., columns] < jax.lax.stop_gradient(batch.mc_return)[None, :, None]
    bounded_fraction = jnp.mean(below.astype(jnp.float32))
    q_all = losses.calibrate(q_all, batch.mc_return, columns)
  soft_max = losses.soft_maximum(q_all, log_density, spec.soft_maximum, spec.temperature,
                                 spec.subtract_log_num_samples)
  gap = losses.cql_gap(soft_max, q_tm1, spec.maximize_data_term)
  hp = state.hparams
  penalty = losses.cql_penalty(gap, hp["cql.weight"], alpha_prime(spec, state.log_alpha_prime),
                               hp["cql.target_gap"])
  return loss + penalty.critic, CriticTerms(q_tm1, bellman, soft_max, gap, penalty,
                                            bounded_fraction)


def critic_metrics(spec: Spec, state: CQLState, loss, terms: CriticTerms, target, grads) -> dict:
  """The critic step's metrics, by name."""
  metrics = {"critic/bellman_error": jnp.mean(terms.bellman), "critic/q_data": jnp.mean(terms.q_tm1),
             "critic/target": jnp.mean(target), "critic/loss": loss,
             "critic/grad_norm": optax.global_norm(grads)}
  if spec.use_penalty:
    metrics.update({"cql/soft_max_q": jnp.mean(terms.soft_max), "cql/q_data": jnp.mean(terms.q_tm1),
                    "cql/gap": jnp.mean(terms.gap), "cql/penalty": terms.penalty.critic})
  if spec.use_penalty and spec.calibrated:
    metrics["cql/bounded_fraction"] = terms.bounded_fraction
  if spec.use_penalty and spec.lagrange:
    metrics.update({"cql/alpha_prime": alpha_prime(spec, state.log_alpha_prime),
                    "cql/alpha_prime_loss": terms.penalty.dual})
  return metrics


def critic_step(spec: Spec, state: CQLState, batch: Transition, key):
  """One Adam step on the critics. Returns (state, metrics, gap [E] for the dual step)."""
  target_key, rand_key, pi_key, pi_next_key = jax.random.split(key, 4)
  target = td_target(spec, state, batch, target_key)
  actions, log_density = proposal_actions(spec, state.actor_params, batch, rand_key, pi_key,
                                          pi_next_key)
  (loss, terms), grads = jax.value_and_grad(critic_loss, argnums=1, has_aux=True)(
      spec, state.critic_params, state, batch, actions, log_density, target)
  updates, critic_opt = spec.critic_tx.update(grads, state.critic_opt, state.critic_params)
  state = state.replace(critic_params=optax.apply_updates(state.critic_params, updates),
                        critic_opt=critic_opt)
  return state, critic_metrics(spec, state, loss, terms, target, grads), terms.gap


def dual_step(spec: Spec, state: CQLState, gap) -> CQLState:
  """One Adam step on log α′ (dual descent on the Lagrangian); gap [E] is held constant."""
  def dual_loss(log_alpha_prime):
    return losses.cql_penalty(jax.lax.stop_gradient(gap), state.hparams["cql.weight"],
                              alpha_prime(spec, log_alpha_prime),
                              state.hparams["cql.target_gap"]).dual
  grad = jax.grad(dual_loss)(state.log_alpha_prime)
  updates, alpha_prime_opt = spec.alpha_prime_tx.update(grad, state.alpha_prime_opt)
  return state.replace(log_alpha_prime=optax.apply_updates(state.log_alpha_prime, updates),
                       alpha_prime_opt=alpha_prime_opt)


class ActorTerms(NamedTuple):
  """log_pi [B] of the policy sample; q_pi [B] min_E Q there (None for BC alone);
  log_pi_data [B] of the dataset action (None without BC)."""
  log_pi: jax.Array
  q_pi: Optional[jax.Array]
  log_pi_data: Optional[jax.Array]


def actor_loss(spec: Spec, actor_params, state: CQLState, batch: Transition, key):
  """SAC's policy loss, BC's, or BC for the first bc_steps steps and SAC after."""
  entropy_alpha = jnp.exp(state.log_alpha)
  mean, log_std = spec.actor.apply(actor_params, batch.obs)
  a, log_pi = networks.sample_tanh_gaussian(mean, log_std, key, 1)
  log_pi = log_pi[:, 0]
  log_pi_data = None
  if spec.bc_only or spec.bc_steps > 0:
    log_pi_data = networks.tanh_gaussian_log_prob_of_action(
        mean, log_std, batch.action[:, None, :])[:, 0]
  if spec.bc_only:
    # No critic exists to score a: skip its forward pass entirely.
    return losses.bc_actor_loss(log_pi_data, log_pi, entropy_alpha), ActorTerms(log_pi, None,
                                                                               log_pi_data)
  q_pi = spec.critic.apply(state.critic_params, batch.obs, a)[..., 0]            # [E, B]
  loss = losses.sac_actor_loss(q_pi, log_pi, entropy_alpha)
  if spec.bc_steps > 0:
    bc_loss = losses.bc_actor_loss(log_pi_data, log_pi, entropy_alpha)
    loss = jnp.where(state.step < spec.bc_steps, bc_loss, loss)
  return loss, ActorTerms(log_pi, jnp.min(q_pi, axis=0), log_pi_data)


def actor_step(spec: Spec, state: CQLState, batch: Transition, key):
  """One Adam step on the actor. Returns (state, metrics, log π [B] for the temperature)."""
  (loss, terms), grads = jax.value_and_grad(actor_loss, argnums=1, has_aux=True)(
      spec, state.actor_params, state, batch, key)
  updates, actor_opt = spec.actor_tx.update(grads, state.actor_opt, state.actor_params)
  state = state.replace(actor_params=optax.apply_updates(state.actor_params, updates),
                        actor_opt=actor_opt)
  metrics = {"actor/loss": loss, "actor/entropy": -jnp.mean(terms.log_pi)}
  if terms.q_pi is not None:
    metrics["actor/q_pi"] = jnp.mean(terms.q_pi)
  if terms.log_pi_data is not None:
    metrics["actor/log_prob_data"] = jnp.mean(terms.log_pi_data)
  return state, metrics, terms.log_pi


def temperature_step(spec: Spec, state: CQLState, log_pi):
  """SAC's automatic entropy tuning: one Adam step on log α (when auto_entropy)."""
  metrics = {"alpha/value": jnp.exp(state.log_alpha)}
  if not spec.auto_entropy:
    return state, metrics
  loss, grad = jax.value_and_grad(losses.temperature_loss)(state.log_alpha, log_pi,
                                                           spec.target_entropy)
  updates, alpha_opt = spec.alpha_tx.update(grad, state.alpha_opt)
  state = state.replace(log_alpha=optax.apply_updates(state.log_alpha, updates),
                        alpha_opt=alpha_opt)
  return state, {**metrics, "alpha/loss": loss}


def update(spec: Spec, state: CQLState, batch: Transition, key):
  """One gradient step on critic, α′, actor and temperature; Polyak target update."""
  critic_key, actor_key = jax.random.split(key)
  metrics = {}
  # Modes are settled in the spec: a frozen part is not differentiated at all.
  if spec.train_critic:
    state, metrics, gap = critic_step(spec, state, batch, critic_key)
    if spec.lagrange:
      state = dual_step(spec, state, gap)
  if spec.train_actor:
    state, actor_metrics, log_pi = actor_step(spec, state, batch, actor_key)
    state, alpha_metrics = temperature_step(spec, state, log_pi)
    metrics = {**metrics, **actor_metrics, **alpha_metrics}
  if spec.train_critic:
    state = state.replace(target_critic_params=optax.incremental_update(
        state.critic_params, state.target_critic_params, state.hparams["polyak"]))
  return state.replace(step=state.step + 1), metrics


def act(spec: Spec, state: CQLState, obs, key, deterministic: bool = True):
  """obs [B, O] -> actions [B, A] in the environment's bounds (tanh(mean) if deterministic)."""
  mean, log_std = spec.actor.apply(state.actor_params, obs)
  if deterministic:
    a = jnp.tanh(mean)
  else:
    a = networks.sample_tanh_gaussian(mean, log_std, key, 1)[0][:, 0]
  offset = jnp.asarray(np.asarray(spec.action_offset, np.float32))
  return offset + jnp.asarray(np.asarray(spec.action_scale, np.float32)) * a


def values(spec: Spec, state: CQLState, batch: Transition, key, deterministic: bool = True):
  """Per-transition critic statistics for offline model selection (cql_jax.selection).

  Returns a dict of [B] arrays: "q_data" (mean over the E critics of Q(s, a) at the data
  action), "td_error" (mean over critics of (Q(s, a) − target)², the agent's own Bellman target),
  "v" (min_E Q(s, π(s)): the critic's value of the policy at s, with π's mode when
  `deterministic`, as evaluation acts) and, when the penalty is compiled in, "gap" (the
  penalty's soft-maximum at s minus Q(s, a), averaged over critics). Empty for BC, which trains
  no critic.
  """
  if not spec.train_critic:
    return {}
  target_key, v_key, rand_key, pi_key, pi_next_key = jax.random.split(key, 5)
  target = td_target(spec, state, batch, target_key)
  actions, log_density = proposal_actions(spec, state.actor_params, batch, rand_key, pi_key,
                                          pi_next_key)
  q_all = spec.critic.apply(state.critic_params, batch.obs, actions)             # [E, B, 1(+M)]
  q_tm1 = q_all[..., 0]
  mean, log_std = spec.actor.apply(state.actor_params, batch.obs)
  a_pi = (jnp.tanh(mean) if deterministic
          else networks.sample_tanh_gaussian(mean, log_std, v_key, 1)[0][:, 0])
  v = jnp.min(spec.critic.apply(state.critic_params, batch.obs, a_pi[:, None, :])[..., 0], axis=0)
  out = {"q_data": jnp.mean(q_tm1, axis=0), "td_error": jnp.mean((q_tm1 - target) ** 2, axis=0),
         "v": v}
  if spec.use_penalty:
    soft_max = losses.soft_maximum(q_all, log_density, spec.soft_maximum, spec.temperature,
                                   spec.subtract_log_num_samples)
    out["gap"] = jnp.mean(soft_max - q_tm1, axis=0)
  return out


def make_cql_agent(config: ml_collections.ConfigDict, obs_dim: int, action_low, action_high) -> Agent:
  """The CQL agent's pure (init, update, act) for observations [O] and Box actions.

  action_low, action_high: [A] bounds of the environment's action space. The networks work in
  [-1, 1]^A; `act` maps back to these bounds, and datasets must be scaled into [-1, 1] first
  (cql_jax.data.buffer.scale_actions).
  """
  spec = make_spec(config, obs_dim, action_low, action_high)
  return Agent(init=functools.partial(init, spec), update=functools.partial(update, spec),
               act=functools.partial(act, spec), sweepable=spec.sweepable,
               values=functools.partial(values, spec))
