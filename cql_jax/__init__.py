"""cql_jax: Conservative Q-Learning (Kumar et al., 2020) in JAX/Flax.

The public API is this flat list; everything else is an implementation module.
`make_agent(config, dataset)` builds the continuous or the discrete agent from
`continuous_config()` or `discrete_config()` (or a variant of them); both honour one contract
(`Agent`: init(key, hparams=None), update, act, sweepable).
"""
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
