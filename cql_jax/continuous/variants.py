"""The paper's variants and baselines as configurations of the one CQL agent (no agent copies).

    cql_h      CQL(H), Eq. 4: importance-sampled log ∫ exp Q over uniform and policy proposals.
    cql_rho    CQL(ρ), ρ = previous policy: log E_{a~π}[exp Q], no importance weights.
    cql_nonis  the non-IS logsumexp of public code (min_q_version=2).
    cql_eq1    CQL(H)'s soft-maximum minimised alone (Eq. 1: no data-maximisation term).
    sac        offline SAC: cql.weight = 0, min over the E critics.
    ensemble_E offline SAC with E critics in the stacked ensemble (Table 4's Ensemble(E)).
    bc         behaviour cloning: the actor trained by the BC loss only; no critic updates.

Conservative policy evaluation (Section 3.1, μ = π) and Fitted Q Evaluation are
`policy_evaluation_config` (penalty on / off) plus a state whose actor comes from another run
(`policy_evaluation_state`).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections

from cql_jax.continuous import agent as cql

NAMES = ("cql_h", "cql_rho", "cql_nonis", "cql_eq1", "sac", "bc")


def variant_config(name: str, base: Optional[ml_collections.ConfigDict] = None
                   ) -> ml_collections.ConfigDict:
  """A copy of `base` (default: cql.default_config()) set up as the named variant.

  name: one of NAMES, or "ensemble_<E>" for offline SAC with E critics.
  """
  config = (cql.default_config() if base is None else base).copy_and_resolve_references()
  if name == "cql_h":
    config.cql.variant = "H"
  elif name == "cql_rho":
    config.cql.variant = "rho"
  elif name == "cql_nonis":
    config.cql.variant = "nonis"
  elif name == "cql_eq1":
    config.cql.variant = "H"
    config.cql.maximize_data_term = False
  elif name == "sac":
    config.cql.weight = 0.0
    config.cql.lagrange = False
  elif name.startswith("ensemble_"):
    config.cql.weight = 0.0
    config.cql.lagrange = False
    config.num_critics = int(name.split("_", 1)[1])
  elif name == "bc":
    config.algorithm = "bc"
  else:
    raise ValueError(f"unknown variant {name!r}; choose from {NAMES} or 'ensemble_<E>'")
  return config


def policy_evaluation_config(base: Optional[ml_collections.ConfigDict] = None, *,
                             maximize_data_term: bool = True, penalty: bool = True,
                             evaluated_action: str = "sample", num_critics: int = 1,
                             max_backup: bool = False) -> ml_collections.ConfigDict:
  """The critic of a fixed policy π, trained on the dataset (the actor and temperature frozen).

  penalty=True is the paper's conservative policy evaluation (Section 3.1, μ = π): the
  penalty's first term is E_{a~π}[Q(s, a)] (variant "pi"), Eq. 2 by default or Eq. 1 with
  maximize_data_term=False, with base's α (cql.weight; Lagrange off). penalty=False is Fitted Q
  Evaluation: cql.weight = 0, the plain Bellman backup of π.
  Either way the backup has no entropy bonus (Q estimates the return of π itself) and, unless
  asked, one critic and a single-sample target: the min over two target critics (num_critics=2)
  or the max over sampled actions (max_backup=True) add pessimism or optimism beyond Eq. 2, so
  they are opt-in rather than inherited from base.
  evaluated_action: "sample" values the stochastic actor, "mode" the deterministic policy
    tanh(mean) that evaluation runs (config.eval_deterministic).
  """
  config = (cql.default_config() if base is None else base).copy_and_resolve_references()
  config.policy_evaluation = True
  config.algorithm = "cql"
  config.backup_entropy = False
  config.bc_steps = 0
  config.num_critics = num_critics
  config.max_backup = max_backup
  config.evaluated_action = evaluated_action
  config.cql.variant = "pi"
  config.cql.lagrange = False
  config.cql.maximize_data_term = maximize_data_term
  if not penalty:
    config.cql.weight = 0.0
  return config


def policy_evaluation_state(state: cql.CQLState, actor_params,
                            log_alpha: Optional[jax.Array] = None) -> cql.CQLState:
  """A fresh state of a policy-evaluation agent whose (frozen) actor is `actor_params`.

  state: agent.init(key) of an agent built from policy_evaluation_config (unstacked).
  actor_params: the policy to evaluate, e.g. `other_state.actor_params` of a BC or CQL run
    (or a restored checkpoint); its architecture must match the config's actor.
  log_alpha: only matters with backup_entropy=True; defaults to the state's own.
  """
  want = jax.tree.structure(state.actor_params)
  got = jax.tree.structure(actor_params)
  shapes_want = [x.shape for x in jax.tree.leaves(state.actor_params)]
  shapes_got = [jnp.shape(x) for x in jax.tree.leaves(actor_params)]
  if want != got or shapes_want != shapes_got:
    raise ValueError("actor_params do not match this agent's actor (check actor_hidden_sizes): "
                     f"{shapes_got} vs {shapes_want}")
  # Copies, so that donating the new state to a train chunk never frees the source run's arrays.
  params = jax.tree.map(jnp.array, actor_params)
  new = state.replace(actor_params=params)
  if log_alpha is not None:
    new = new.replace(log_alpha=jnp.asarray(log_alpha, jnp.float32))
  return new
