"""The discrete agents of the paper's Atari experiments as configurations of the one agent.

    cql_dqn    DQN critic + CQL(H) (the exact logsumexp over actions).
    cql_qrdqn  QR-DQN critic + CQL(H), the paper's Atari CQL (penalty on the quantile mean).
    cql_rem    REM critic + CQL(H) (penalty on the step's random mixture of heads).
    dqn, qrdqn, rem  the batch_rl baselines: the same critics with cql.weight = 0.
    bc         behaviour cloning: the DQN head's outputs as a softmax policy's logits, fitted
               to the data's actions by cross-entropy (no critic, no penalty).

As in cql_jax.continuous.variants, a variant only sets structure (the critic's loss) and the
penalty's weight; sizes, learning rate and the rest come from `base`.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections

from cql_jax.discrete import agent as discrete

BASELINES = discrete.VALUE_LOSSES + ("bc",)
NAMES = tuple(f"cql_{loss}" for loss in discrete.VALUE_LOSSES) + BASELINES


def variant_config(name: str, base: Optional[ml_collections.ConfigDict] = None, *,
                   cql_weight: Optional[float] = None) -> ml_collections.ConfigDict:
  """A copy of `base` (default: discrete.default_config()) set up as the named variant.

  name: one of NAMES. cql_weight: α of a cql_* variant (default: base's cql.weight); the
  baselines always get 0.
  """
  if name not in NAMES:
    raise ValueError(f"unknown discrete variant {name!r}; choose from {NAMES}")
  config = (discrete.default_config() if base is None else base).copy_and_resolve_references()
  config.loss = name[len("cql_"):] if name.startswith("cql_") else name
  if name in BASELINES:
    config.cql.weight = 0.0
  elif cql_weight is not None:
    config.cql.weight = float(cql_weight)
  return config


def policy_evaluation_config(base: Optional[ml_collections.ConfigDict] = None, *,
                             penalty: bool = True) -> ml_collections.ConfigDict:
  """The critic of a fixed greedy policy π on the dataset (same critic loss as `base`).

  penalty=True: conservative evaluation, Eq. 2 with μ = π (base's cql.weight); False: Fitted Q
  Evaluation (cql.weight = 0). The target bootstraps Q'(s', π(s')); double DQN does not apply;
  DQN and REM critics regress with the squared error (see below).
  """
  config = (discrete.default_config() if base is None else base).copy_and_resolve_references()
  config.policy_evaluation = True
  config.double_dqn = False
  if config.loss != "qrdqn":
    # The squared error of Eq. 2 (a Huber threshold no TD error reaches): with Huber's bounded
    # gradient, any α above about β(π(s)|s) / (1 − β(π(s)|s)) outweighs the backup and pushes
    # Q(s, π(s)) to −∞ (measured: −1e6 at α = 1 on a 3-action MDP). QR-DQN keeps its quantile
    # loss, so its conservative estimate needs a small α.
    config.kappa = 1e6
  if not penalty:
    config.cql.weight = 0.0
  return config


def policy_evaluation_state(state: discrete.DiscreteAgentState, policy_params
                            ) -> discrete.DiscreteAgentState:
  """`state` (a policy-evaluation agent's init) valuing the greedy policy of `policy_params`
  (e.g. another run's `state.params`, same architecture), copied so donation never frees them."""
  want = [jnp.shape(x) for x in jax.tree.leaves(state.params)]
  got = [jnp.shape(x) for x in jax.tree.leaves(policy_params)]
  if jax.tree.structure(state.params) != jax.tree.structure(policy_params) or want != got:
    raise ValueError("policy_params do not match this agent's network (check loss, torso and "
                     f"hidden_sizes): {got} vs {want}")
  return state.replace(policy_params=jax.tree.map(jnp.array, policy_params))
