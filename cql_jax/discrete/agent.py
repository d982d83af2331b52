"""Discrete CQL agent: DQN, QR-DQN or REM critic plus the CQL(H) penalty, one code path.

The baselines are the same agent with `cql.weight = 0.0` (cql_jax.discrete.variants), and
behaviour cloning is the loss "bc": the DQN head's outputs are the logits of a softmax policy
fitted to the data's actions by cross-entropy, and the greedy action is its mode. As in
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

VALUE_LOSSES = ("dqn", "qrdqn", "rem")
LOSSES = VALUE_LOSSES + ("bc",)
# Every sweepable key; all but "lr" live in state.hparams.
SWEEPABLE = ("cql.weight", "gamma", "target_update_period", "lr")
STATE_HPARAMS = ("cql.weight", "gamma", "target_update_period")
_DTYPES = {"target_update_period": jnp.int32}


def default_config() -> ml_collections.ConfigDict:
  """Paper/batch_rl Atari settings for QR-DQN + CQL."""
  config = ml_collections.ConfigDict()
  config.loss = "qrdqn"  # one of LOSSES ("bc": behaviour cloning, no critic)
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
  # Value a fixed policy instead of improving one: the greedy policy of state.policy_params (a
  # network of this architecture, frozen) gives a' in the target, and the penalty's first term
  # is Q(s, π(s)) (μ = π, Eq. 2). cql.weight = 0 makes it Fitted Q Evaluation.
  config.policy_evaluation = False
  return config


class DiscreteAgentState(flax.struct.PyTreeNode):
  """Train state; every field is an array pytree so the state can be scanned and vmapped.

  params:        online network parameters.
  target_params: a copy of `params`, refreshed every `target_update_period` gradient steps.
  opt_state:     Adam state (optax.inject_hyperparams: the learning rate is an array in it).
  hparams:       {"cql.weight": float32, "gamma": float32, "target_update_period": int32},
                 each shape=(); the sweepable scalars the update reads.
  step:          shape=(), dtype=int32; gradient steps taken so far.
  policy_params: policy evaluation only: the frozen network whose greedy action is the policy
                 being valued (cql_jax.discrete.variants.policy_evaluation_state); else None.
  """
  params: Any
  target_params: Any
  opt_state: Any
  hparams: Dict[str, jax.Array]
  step: jax.Array
  policy_params: Any = None


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
  policy_evaluation: bool
  defaults: Tuple[Tuple[str, Any], ...]  # config value of every SWEEPABLE key.
  sweepable: Tuple[str, ...] = SWEEPABLE


def make_spec(config: ml_collections.ConfigDict, obs_shape: Sequence[int], num_actions: int) -> Spec:
  """Validates `config` (see default_config) and settles its static choices."""
  if config.loss not in LOSSES:
    raise ValueError(f"unknown loss {config.loss!r}; expected one of {LOSSES}")
  if config.target_update_period < 1:
    raise ValueError("target_update_period must be >= 1")
  if config.loss == "bc" and config.get("policy_evaluation", False):
    raise ValueError("policy_evaluation needs a critic; loss 'bc' has none")
  optimizer = optax.inject_hyperparams(optax.adam, static_args=("eps",))(
      learning_rate=config.lr, eps=config.adam_eps)
  return Spec(network=networks.make_q_network(config, num_actions), optimizer=optimizer,
              loss=config.loss, num_heads=int(config.num_heads),
              double_dqn=bool(config.double_dqn), kappa=float(config.kappa),
              epsilon=float(config.epsilon), num_actions=int(num_actions),
              obs_shape=tuple(obs_shape),
              obs_dtype=jnp.uint8 if config.torso == "cnn" else jnp.float32,
              policy_evaluation=bool(config.get("policy_evaluation", False)),
              defaults=hyperparams.config_values(config, SWEEPABLE))


def init(spec: Spec, key, hparams=None) -> DiscreteAgentState:
  """A fresh state; hparams: optional {key in SWEEPABLE: scalar} overriding the config."""
  hp = hyperparams.resolve(dict(spec.defaults), spec.sweepable, hparams, _DTYPES)
  params = spec.network.init(key, jnp.zeros((1, *spec.obs_shape), spec.obs_dtype))
  # A separate copy, not the same arrays: the training loop donates the state, and a buffer
  # held twice in one donated argument is rejected.
  target_params = jax.tree.map(jnp.copy, params)
  opt_state = hyperparams.with_learning_rate(spec.optimizer.init(params), hp.pop("lr"))
  # Policy evaluation values the frozen policy_params (set by variants.policy_evaluation_state);
  # a copy of the initial network holds the place so the state's structure is fixed at init.
  policy_params = jax.tree.map(jnp.copy, params) if spec.policy_evaluation else None
  return DiscreteAgentState(params=params, target_params=target_params, opt_state=opt_state,
                            hparams=hp, step=jnp.zeros((), jnp.int32), policy_params=policy_params)


def greedy(spec: Spec, params, obs):
  """[B] int32 argmax_a of the network's mean Q(s, a) (quantile mean, head mean)."""
  return jnp.argmax(networks.mean_q(spec.network.apply(params, obs), spec.loss),
                    axis=-1).astype(jnp.int32)


def _policy_selector(spec: Spec, state: DiscreteAgentState, obs, like):
  """A selector for the losses' a* = argmax (the double-DQN slot) that picks π(s') of the frozen
  policy: its one-hot, broadcast to the shape of the target output `like`. None when the agent
  is not evaluating a fixed policy."""
  if not spec.policy_evaluation:
    return None
  one_hot = jax.nn.one_hot(greedy(spec, state.policy_params, obs), spec.num_actions)
  if spec.loss == "qrdqn":
    one_hot = one_hot[..., None]                  # [B, A, 1]: the quantile mean is the one-hot
  elif spec.loss == "rem":
    one_hot = one_hot[:, None, :]                 # [B, 1, A]: any convex mix of heads keeps it
  return jnp.broadcast_to(one_hot, like.shape)


def td_loss(spec: Spec, params, state: DiscreteAgentState, batch: Transition, key):
  """The configured TD loss, and the Q [B, A] at s that the penalty acts on."""
  gamma = state.hparams["gamma"]
  action = batch.action.astype(jnp.int32)
  out_tm1 = spec.network.apply(params, batch.obs)
  out_t = spec.network.apply(state.target_params, batch.next_obs)
  # Double DQN picks a* with the online net; its gradient must not flow through that choice.
  # Policy evaluation picks it with the frozen policy instead.
  out_t_online = _policy_selector(spec, state, batch.next_obs, out_t)
  if out_t_online is None and spec.double_dqn:
    out_t_online = jax.lax.stop_gradient(spec.network.apply(params, batch.next_obs))
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


def _penalty(spec: Spec, state: DiscreteAgentState, q_tm1, batch: Transition):
  """CQL(H)'s logsumexp penalty, or with policy evaluation μ = π: Q(s, π(s)) − Q(s, a)."""
  policy_action = (greedy(spec, state.policy_params, batch.obs) if spec.policy_evaluation
                   else None)
  return losses.cql_penalty(q_tm1, batch.action.astype(jnp.int32), state.hparams["cql.weight"],
                            policy_action)


def bc_loss(spec: Spec, params, batch: Transition):
  """Mean cross-entropy of the softmax over the network's outputs against the data's actions."""
  logits = spec.network.apply(params, batch.obs)
  action = batch.action.astype(jnp.int32)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, action).mean()
  accuracy = (jnp.argmax(logits, axis=-1) == action).astype(jnp.float32).mean()
  return loss, {"bc/loss": loss, "bc/accuracy": accuracy, "critic/loss": loss}


def critic_loss(spec: Spec, params, state: DiscreteAgentState, batch: Transition, key):
  """Mean TD loss + mean CQL(H) penalty, and the metrics, by name (BC: its cross-entropy)."""
  if spec.loss == "bc":
    return bc_loss(spec, params, batch)
  td, q_tm1 = td_loss(spec, params, state, batch, key)
  cql = _penalty(spec, state, q_tm1, batch)
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
  greedy_action = greedy(spec, state.params, obs)
  explore_key, action_key = jax.random.split(key)
  explore = jax.random.uniform(explore_key, greedy_action.shape) < spec.epsilon
  random_action = jax.random.randint(action_key, greedy_action.shape, 0, spec.num_actions,
                                     jnp.int32)
  # `deterministic` may be a Python bool or a traced one; where() serves both.
  explore = jnp.logical_and(explore, jnp.logical_not(deterministic))
  return jnp.where(explore, random_action, greedy_action)


def values(spec: Spec, state: DiscreteAgentState, batch: Transition, key, deterministic=True):
  """Per-transition critic statistics for offline model selection (cql_jax.selection).

  Returns [B] arrays: "q_data" Q(s, a) (quantile mean; REM: the step's random mixture), "td_error"
  (target − Q(s, a))² with the agent's own target, "v" Q(s, π(s)) for the greedy policy (of
  state.policy_params under policy evaluation) and "gap" the penalty's term (logsumexp_a Q(s, a)
  − Q(s, a), or Q(s, π(s)) − Q(s, a) under policy evaluation). `deterministic` is accepted for
  the Agent contract; the greedy policy is what evaluation runs (ε only adds noise).
  """
  del deterministic
  if spec.loss == "bc":
    return {}  # no critic to report on (cql_jax.statistics skips such agents).
  td, q_tm1 = td_loss(spec, state.params, state, batch, key)
  cql = _penalty(spec, state, q_tm1, batch)
  policy = state.policy_params if spec.policy_evaluation else state.params
  v = jnp.take_along_axis(q_tm1, greedy(spec, policy, batch.obs)[:, None], axis=-1)[:, 0]
  return {"q_data": cql.q_data, "td_error": (td.target - cql.q_data) ** 2, "v": v,
          "gap": cql.gap}


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
               act=functools.partial(act, spec), sweepable=spec.sweepable,
               values=functools.partial(values, spec))
