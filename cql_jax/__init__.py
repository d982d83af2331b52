"""cql_jax: Conservative Q-Learning (Kumar et al., 2020) in JAX/Flax.

The public API is this flat list; everything else is an implementation module.
`make_agent(config, dataset)` builds the continuous or the discrete agent from
`continuous_config()` or `discrete_config()` (or a variant of them); both honour one contract
(`Agent`: init(key, hparams=None), update, act, sweepable).
"""
# The names load on first use (PEP 562), so `import cql_jax.cli` and a script's --help do not
# pay for JAX, Flax and Minari.
import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "device_data": ("cql_jax.agents", "device_data"),
    "make_agent": ("cql_jax.agents", "make_agent"),
    "CQLState": ("cql_jax.continuous.agent", "CQLState"),
    "continuous_config": ("cql_jax.continuous.agent", "default_config"),
    "make_cql_agent": ("cql_jax.continuous.agent", "make_cql_agent"),
    "sample_batch": ("cql_jax.data.buffer", "sample_batch"),
    "DatasetError": ("cql_jax.data.minari_io", "DatasetError"),
    "load_dataset": ("cql_jax.data.minari_io", "load_dataset"),
    "DiscreteAgentState": ("cql_jax.discrete.agent", "DiscreteAgentState"),
    "discrete_config": ("cql_jax.discrete.agent", "default_config"),
    "make_discrete_agent": ("cql_jax.discrete.agent", "make_discrete_agent"),
    "evaluate": ("cql_jax.evaluation", "evaluate"),
    "evaluate_agent": ("cql_jax.evaluation", "evaluate_agent"),
    "normalized_score": ("cql_jax.scores", "normalized_score"),
    "compile_chunk": ("cql_jax.train", "compile_chunk"),
    "fit": ("cql_jax.train", "fit"),
    "init_states": ("cql_jax.train", "init_states"),
    "make_train_chunk": ("cql_jax.train", "make_train_chunk"),
    "Agent": ("cql_jax.types", "Agent"),
    "OfflineDataset": ("cql_jax.types", "OfflineDataset"),
    "Transition": ("cql_jax.types", "Transition"),
}

if TYPE_CHECKING:  # what a type checker or an IDE sees: the same names.
  from cql_jax.agents import device_data
  from cql_jax.agents import make_agent
  from cql_jax.continuous.agent import CQLState
  from cql_jax.continuous.agent import default_config as continuous_config
  from cql_jax.continuous.agent import make_cql_agent
  from cql_jax.data.buffer import sample_batch
  from cql_jax.data.minari_io import DatasetError
  from cql_jax.data.minari_io import load_dataset
  from cql_jax.discrete.agent import DiscreteAgentState
  from cql_jax.discrete.agent import default_config as discrete_config
  from cql_jax.discrete.agent import make_discrete_agent
  from cql_jax.evaluation import evaluate
  from cql_jax.evaluation import evaluate_agent
  from cql_jax.scores import normalized_score
  from cql_jax.train import compile_chunk
  from cql_jax.train import fit
  from cql_jax.train import init_states
  from cql_jax.train import make_train_chunk
  from cql_jax.types import Agent
  from cql_jax.types import OfflineDataset
  from cql_jax.types import Transition

__all__ = [
    "Agent", "CQLState", "DatasetError", "DiscreteAgentState", "OfflineDataset", "Transition",
    "compile_chunk", "continuous_config", "device_data", "discrete_config", "evaluate",
    "evaluate_agent", "fit", "init_states", "load_dataset", "make_agent", "make_cql_agent",
    "make_discrete_agent", "make_train_chunk", "normalized_score", "sample_batch",
]


def __getattr__(name):
  if name in _EXPORTS:
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups find it without this function.
    return value
  # A submodule not imported yet (cql_jax.sweep, ...): import it, as the eager package did.
  try:
    return importlib.import_module(f"{__name__}.{name}")
  except ModuleNotFoundError as err:
    if err.name != f"{__name__}.{name}":
      raise
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(__all__))
