"""Sweepable hyperparameters: config values that live in the train state as arrays.

An agent lists the dotted agent-config keys it lets `init(key, hparams)` override in
`Agent.sweepable` (e.g. "cql.weight", "gamma", "critic_lr"). Each one is held in the state (in
`state.hparams`, or in an `optax.inject_hyperparams` state for learning rates), so runs that differ
only in these values share one compiled update and can be vmapped together.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import jax.numpy as jnp
import ml_collections
import optax


def config_values(config: ml_collections.ConfigDict, dotted_keys: Sequence[str]) -> tuple:
  """((key, value), ...) for dotted keys, e.g. config["cql"]["weight"] for "cql.weight"."""
  out = []
  for dotted_key in dotted_keys:
    node = config
    for part in dotted_key.split("."):
      node = node[part]
    out.append((dotted_key, node))
  return tuple(out)


def resolve(defaults: Mapping[str, Any], sweepable: Sequence[str],
            hparams: Optional[Mapping[str, Any]], dtypes: Mapping[str, Any]) -> dict:
  """{key: scalar array} for every key of `defaults`: `hparams`' value, else the default.

  defaults: dotted key -> the config's value, for every hyperparameter the state holds.
  sweepable: the keys `hparams` may set. dtypes: key -> dtype (float32 unless named).
  Raises ValueError for a key that is not sweepable for this agent, naming the ones that are,
  so a typo or a setting the compiled update never reads cannot silently do nothing.
  """
  hparams = {} if hparams is None else dict(hparams)
  unknown = sorted(set(hparams) - set(sweepable))
  if unknown:
    raise ValueError(f"init got hyperparameters {unknown} that this agent cannot take from the "
                     f"state; its sweepable keys are {list(sweepable)}. Structural settings (sizes,"
                     " variant, lagrange, a zero cql.weight) change the program: set them in the "
                     "config instead.")
  out = {}
  for key, default in defaults.items():
    value = hparams.get(key, default)
    out[key] = jnp.asarray(value, dtypes.get(key, jnp.float32))
    if out[key].ndim != 0:
      raise ValueError(f"hyperparameter {key!r} must be a scalar per run, got shape "
                       f"{out[key].shape}; to sweep, jax.vmap init over a leading axis.")
  return out


def adam(learning_rate: float, **kwargs) -> optax.GradientTransformation:
  """Adam whose learning rate is an array in its state (so it can differ between vmapped runs)."""
  return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, **kwargs)


def with_learning_rate(opt_state: optax.OptState, learning_rate) -> optax.OptState:
  """An `adam(...)` state with its learning rate replaced (a scalar array, possibly traced)."""
  hyper = dict(opt_state.hyperparams)
  hyper["learning_rate"] = jnp.asarray(learning_rate, hyper["learning_rate"].dtype)
  return opt_state._replace(hyperparams=hyper)
