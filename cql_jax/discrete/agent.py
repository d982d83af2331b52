"""Discrete CQL agent: DQN, QR-DQN or REM critic plus the CQL(H) penalty, one code path.

The baselines are the same agent with `cql.weight = 0.0`. The agent holds no maths: the losses
live in `cql_jax.discrete.losses` and the networks in `cql_jax.discrete.networks`.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from cql_jax import hyperparams
from cql_jax.discrete import losses
from cql_jax.discrete import networks
from cql_jax.types import Agent, Transition


def default_discrete_config() -> ml_collections.ConfigDict:
  """Paper/batch_rl Atari settings (REFERENCE.md section 2) for QR-DQN + CQL."""
  config = ml_collections.ConfigDict()
  config.loss = "qrdqn"  # "dqn" | "qrdqn" | "rem"
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


# Every sweepable key; all but "lr" live in state.hparams.
SWEEPABLE = ("cql.weight", "gamma", "target_update_period", "lr")
_DTYPES = {"target_update_period": jnp.int32}


def make_discrete_agent(config: ml_collections.ConfigDict, obs_shape: Sequence[int],
                        num_actions: int) -> Agent:
  """Builds (init, update, act) for a discrete-action offline agent.

  Args:
    config: see `default_discrete_config`. The keys in SWEEPABLE are read from the state (init's
      hparams may override them); everything else is static structure.
    obs_shape: one observation's shape, e.g. (84, 84, 4) for the CNN or (O,) for the MLP.
    num_actions: A.

  Returns:
    `cql_jax.types.Agent`: init(key) -> state; update(state, batch, key) -> (state, metrics)
    with batch a Transition (obs [B, *obs_shape], action [B] int, reward [B], discount [B],
    next_obs [B, *obs_shape]); act(state, obs [B, *obs_shape], key, deterministic) -> [B] int32.
  """
  if config.loss not in ("dqn", "qrdqn", "rem"):
    raise ValueError(f"unknown loss {config.loss!r}")
  if config.target_update_period < 1:
    raise ValueError("target_update_period must be >= 1")
  network = networks.make_q_network(config, num_actions)
  optimizer = optax.inject_hyperparams(optax.adam, static_args=("eps",))(
      learning_rate=config.lr, eps=config.adam_eps)
  obs_dtype = jnp.uint8 if config.torso == "cnn" else jnp.float32
  kappa = float(config.kappa)

  def init(key, hparams=None):
    """A fresh state; hparams: optional {key in SWEEPABLE: scalar} overriding the config."""
    hp = hyperparams.resolve(config, SWEEPABLE, hparams, _DTYPES)
    params = network.init(key, jnp.zeros((1, *obs_shape), obs_dtype))
    # A separate copy, not the same arrays: the training loop donates the state, and a buffer
    # held twice in one donated argument is rejected.
    target_params = jax.tree.map(jnp.copy, params)
    opt_state = hyperparams.with_learning_rate(optimizer.init(params), hp.pop("lr"))
    return DiscreteAgentState(params=params, target_params=target_params, opt_state=opt_state,
                              hparams=hp, step=jnp.zeros((), jnp.int32))

  def critic_loss(params, target_params, hp, batch: Transition, key):
    gamma, weight = hp["gamma"], hp["cql.weight"]
    action = batch.action.astype(jnp.int32)
    out_tm1 = network.apply(params, batch.obs)
    out_t = network.apply(target_params, batch.next_obs)
    # Double DQN picks a* with the online net; its gradient must not flow through that choice.
    out_t_online = (jax.lax.stop_gradient(network.apply(params, batch.next_obs))
                    if config.double_dqn else None)
    args = (action, batch.reward, batch.discount)
    if config.loss == "dqn":
      td, info = losses.dqn_loss(out_tm1, *args, out_t, gamma, kappa, out_t_online)
      q_tm1 = out_tm1
    elif config.loss == "qrdqn":
      td, info = losses.quantile_huber_loss(out_tm1, *args, out_t, gamma, kappa, out_t_online)
      q_tm1 = out_tm1.mean(axis=-1)
    else:
      alpha = losses.rem_weights(key, config.num_heads)
      td, info = losses.rem_loss(out_tm1, *args, out_t, alpha, gamma, kappa, out_t_online)
      # The penalty acts on the Q being fitted this step: the same random mixture.
      q_tm1 = jnp.einsum("bka,k->ba", out_tm1, alpha)
    penalty, cql_info = losses.cql_penalty(q_tm1, action, weight)
    td_loss = td.mean()
    loss = td_loss + penalty.mean()
    info = {**info, **cql_info, "critic/td_loss": td_loss, "critic/loss": loss,
            "critic/q_mean": q_tm1.mean()}
    return loss, info

  def update(state: DiscreteAgentState, batch: Transition, key):
    grads, info = jax.grad(critic_loss, has_aux=True)(
        state.params, state.target_params, state.hparams, batch, key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    step = state.step + 1
    # A per-step switch as data, not control flow: one compiled update serves every step.
    sync = (step % state.hparams["target_update_period"]) == 0
    target_params = jax.tree.map(lambda new, old: jnp.where(sync, new, old), params,
                                 state.target_params)
    metrics = {**info, "critic/grad_norm": optax.global_norm(grads),
               "critic/target_synced": sync.astype(jnp.float32)}
    return state.replace(params=params, target_params=target_params, opt_state=opt_state,
                         step=step), metrics

  def act(state: DiscreteAgentState, obs, key, deterministic=True):
    q = networks.mean_q(network.apply(state.params, obs), config.loss)
    greedy = jnp.argmax(q, axis=-1).astype(jnp.int32)
    explore_key, action_key = jax.random.split(key)
    explore = jax.random.uniform(explore_key, greedy.shape) < config.epsilon
    random_action = jax.random.randint(action_key, greedy.shape, 0, num_actions, jnp.int32)
    # `deterministic` may be a Python bool or a traced one; where() serves both.
    explore = jnp.logical_and(explore, jnp.logical_not(deterministic))
    return jnp.where(explore, random_action, greedy)

  return Agent(init=init, update=update, act=act, sweepable=SWEEPABLE)
