"""Discrete CQL agent: DQN, QR-DQN or REM critic plus the CQL(H) penalty, one code path.

The baselines are the same agent with `cql.weight = 0.0` (cql_jax.discrete.variants). As in
cql_jax.continuous.agent, the agent is module-level pure functions over a frozen `Spec` of the
static choices (computed once by `make_spec`), bound by `make_discrete_agent` with
functools.partial; the losses live in cql_jax.discrete.losses and the networks in
cql_jax.discrete.networks. The CQL weight, γ, the target update period and the learning rate
live in the state as arrays, so runs that differ in them share one compiled update. The penalty
is an exact logsumexp over the A actions, cheap enough to be always compiled in: a zero weight
(the baselines) still logs the gap, and may be swept.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from cql_jax import hyperparams
from cql_jax.discrete import losses
from cql_jax.discrete import networks
from cql_jax.types import Agent, Transition

LOSSES = ("dqn", "qrdqn", "rem")
# Every sweepable key; all but "lr" live in state.hparams.
SWEEPABLE = ("cql.weight", "gamma", "target_update_period", "lr")
STATE_HPARAMS = ("cql.weight", "gamma", "target_update_period")
_DTYPES = {"target_update_period": jnp.int32}


def default_config() -> ml_collections.ConfigDict:
  """Paper/batch_rl Atari settings for QR-DQN + CQL."""
  config = ml_collections.ConfigDict()
  config.loss = "qrdqn"  # one of LOSSES
  config.cql = ml_collections.ConfigDict()
  # CQL alpha. The official README uses 4.0 with 1% data and 1.0 with 10%; 0.0 is the baseline.
  config.cql.weight = 1.0
  config.num_quantiles = 200  # Nq, qrdqn only
  config.num_heads = 200  # K, rem only
  config.gamma = 0.99
  # Adam for every loss (batch_rl's QR-DQN/REM setting; its DQN used RMSProp, which we skip).
  config.lr = 5e-5
  config.adam_eps = 3.125e-4  # = 0.01 / 32
  # In gradient steps: 8000 agent steps at update_period 4 in the original runs.
  config.target_update_period = 2000
  config.kappa = 1.0  # Huber threshold, return units
  config.double_dqn = False
  config.torso = "cnn"  # "cnn" (uint8 [84, 84, 4] frames) | "mlp" (float vectors)
  config.hidden_sizes = (256, 256)  # mlp torso only
  config.epsilon = 0.001  # act() exploration rate when not deterministic (paper's eval epsilon)
  return config


class DiscreteAgentState(flax.struct.PyTreeNode):
  """Train state; every field is an array pytree so the state can be scanned and vmapped.

  params:        online network parameters.
  target_params: a copy of `params`, refreshed every `target_update_period` gradient steps.
  opt_state:     Adam state (optax.inject_hyperparams: the learning rate is an array in it).
  hparams:       {"cql.weight": float32, "gamma": float32, "target_update_period": int32},
                 each shape=(); the sweepable scalars the update reads.
  step:          shape=(), dtype=int32; gradient steps taken so far.
  """
  params: Any
  target_params: Any
  opt_state: Any
  hparams: Dict[str, jax.Array]
  step: jax.Array


@dataclasses.dataclass(frozen=True)
class Spec:
  """The static choices of one discrete agent, computed once from its config by `make_spec`."""
  network: networks.DiscreteQNetwork
  optimizer: optax.GradientTransformation
  loss: str                      # one of LOSSES
  num_heads: int                 # K, rem only
  double_dqn: bool
  kappa: float
  epsilon: float
  num_actions: int
  obs_shape: Tuple[int, ...]
  obs_dtype: Any
  defaults: Tuple[Tuple[str, Any], ...]  # config value of every SWEEPABLE key.
  sweepable: Tuple[str, ...] = SWEEPABLE


def make_spec(config: ml_collections.ConfigDict, obs_shape: Sequence[int], num_actions: int) -> Spec:
  """Validates `config` (see default_config) and settles its static choices."""
  if config.loss not in LOSSES:
    raise ValueError(f"unknown loss {config.loss!r}; expected one of {LOSSES}")
  if config.target_update_period < 1:
    raise ValueError("target_update_period must be >= 1")
  optimizer = optax.inject_hyperparams(optax.adam, static_args=("eps",))(
      learning_rate=config.lr, eps=config.adam_eps)
  return Spec(network=networks.make_q_network(config, num_actions), optimizer=optimizer,
              loss=config.loss, num_heads=int(config.num_heads),
              double_dqn=bool(config.double_dqn), kappa=float(config.kappa),
              epsilon=float(config.epsilon), num_actions=int(num_actions),
              obs_shape=tuple(obs_shape),
              obs_dtype=jnp.uint8 if config.torso == "cnn" else jnp.float32,
              defaults=hyperparams.config_values(config, SWEEPABLE))


def init(spec: Spec, key, hparams=None) -> DiscreteAgentState:
  """A fresh state; hparams: optional {key in SWEEPABLE: scalar} overriding the config."""
  hp = hyperparams.resolve(dict(spec.defaults), spec.sweepable, hparams, _DTYPES)
  params = spec.network.init(key, jnp.zeros((1, *spec.obs_shape), spec.obs_dtype))
  # A separate copy, not the same arrays: the training loop donates the state, and a buffer
  # held twice in one donated argument is rejected.
  target_params = jax.tree.map(jnp.copy, params)
  opt_state = hyperparams.with_learning_rate(spec.optimizer.init(params), hp.pop("lr"))
  return DiscreteAgentState(params=params, target_params=target_params, opt_state=opt_state,
                            hparams=hp, step=jnp.zeros((), jnp.int32))


def td_loss(spec: Spec, params, target_params, gamma, batch: Transition, key):
  """The configured TD loss, and the Q [B, A] at s that the penalty acts on."""
  action = batch.action.astype(jnp.int32)
  out_tm1 = spec.network.apply(params, batch.obs)
  out_t = spec.network.apply(target_params, batch.next_obs)
  # Double DQN picks a* with the online net; its gradient must not flow through that choice.
  out_t_online = (jax.lax.stop_gradient(spec.network.apply(params, batch.next_obs))
                  if spec.double_dqn else None)
  args = (action, batch.reward, batch.discount)
  if spec.loss == "dqn":
    td = losses.dqn_loss(out_tm1, *args, out_t, gamma, spec.kappa, out_t_online)
    return td, out_tm1
  if spec.loss == "qrdqn":
    td = losses.quantile_huber_loss(out_tm1, *args, out_t, gamma, spec.kappa, out_t_online)
    return td, out_tm1.mean(axis=-1)
  alpha = losses.rem_weights(key, spec.num_heads)
  td = losses.rem_loss(out_tm1, *args, out_t, alpha, gamma, spec.kappa, out_t_online)
  # The penalty acts on the Q being fitted this step: the same random mixture.
  return td, jnp.einsum("bka,k->ba", out_tm1, alpha)


def critic_loss(spec: Spec, params, state: DiscreteAgentState, batch: Transition, key):
  """Mean TD loss + mean CQL(H) penalty, and the metrics, by name."""
  hp = state.hparams
  td, q_tm1 = td_loss(spec, params, state.target_params, hp["gamma"], batch, key)
  cql = losses.cql_penalty(q_tm1, batch.action.astype(jnp.int32), hp["cql.weight"])
  mean_td = td.loss.mean()
  loss = mean_td + cql.penalty.mean()
  metrics = {"critic/td_error_abs": td.td_error_abs.mean(), "critic/target_mean": td.target.mean(),
             "cql/penalty": cql.penalty.mean(), "cql/gap": cql.gap.mean(),
             "cql/logsumexp": cql.logsumexp.mean(), "cql/q_data": cql.q_data.mean(),
             "critic/td_loss": mean_td, "critic/loss": loss, "critic/q_mean": q_tm1.mean()}
  return loss, metrics


def update(spec: Spec, state: DiscreteAgentState, batch: Transition, key):
  """One Adam step; the target network is synced every target_update_period steps."""
  grads, metrics = jax.grad(critic_loss, argnums=1, has_aux=True)(
      spec, state.params, state, batch, key)
  updates, opt_state = spec.optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  step = state.step + 1
  # The period is data (a state array), so one compiled update serves every step and period.
  period = state.hparams["target_update_period"]
  target_params = optax.periodic_update(params, state.target_params, step, period)
  metrics = {**metrics, "critic/grad_norm": optax.global_norm(grads),
             "critic/target_synced": (step % period == 0).astype(jnp.float32)}
  return state.replace(params=params, target_params=target_params, opt_state=opt_state,
                       step=step), metrics


def act(spec: Spec, state: DiscreteAgentState, obs, key, deterministic=True):
  """obs [B, *obs_shape] -> [B] int32: greedy, or ε-greedy when not deterministic."""
  q = networks.mean_q(spec.network.apply(state.params, obs), spec.loss)
  greedy = jnp.argmax(q, axis=-1).astype(jnp.int32)
  explore_key, action_key = jax.random.split(key)
  explore = jax.random.uniform(explore_key, greedy.shape) < spec.epsilon
  random_action = jax.random.randint(action_key, greedy.shape, 0, spec.num_actions, jnp.int32)
  # `deterministic` may be a Python bool or a traced one; where() serves both.
  explore = jnp.logical_and(explore, jnp.logical_not(deterministic))
  return jnp.where(explore, random_action, greedy)


def make_discrete_agent(config: ml_collections.ConfigDict, obs_shape: Sequence[int],
                        num_actions: int) -> Agent:
  """Builds (init, update, act) for a discrete-action offline agent.

  Args:
    config: see `default_config`. The keys in SWEEPABLE are read from the state (init's
      hparams may override them); everything else is static structure.
    obs_shape: one observation's shape, e.g. (84, 84, 4) for the CNN or (O,) for the MLP.
    num_actions: A.

  Returns:
    `cql_jax.types.Agent`: init(key, hparams=None) -> state; update(state, batch, key) ->
    (state, metrics) with batch a Transition (obs [B, *obs_shape], action [B] int, reward [B],
    discount [B], next_obs [B, *obs_shape]); act(state, obs [B, *obs_shape], key,
    deterministic) -> [B] int32.
  """
  spec = make_spec(config, obs_shape, num_actions)
  return Agent(init=functools.partial(init, spec), update=functools.partial(update, spec),
               act=functools.partial(act, spec), sweepable=spec.sweepable)
