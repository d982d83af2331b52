"""Agent factory: one entry point that picks the continuous or the discrete agent for a dataset."""
from __future__ import annotations

import ml_collections

from cql_jax.data import buffer
from cql_jax.data import minari_io
from cql_jax.types import Agent, OfflineDataset, Transition


def make_agent(config: ml_collections.ConfigDict, dataset: OfflineDataset) -> Agent:
  """The agent `config` describes, shaped for `dataset`.

  config: cql_jax.continuous.agent.default_config() (continuous Box actions) or
    cql_jax.discrete.agent.default_discrete_config() (Discrete actions); which one is needed is
    read from the dataset, and a mismatch raises an error that says which config to use.
  """
  continuous = "cql" in config
  minari_io.check_action_kind(dataset, discrete=not continuous)
  if continuous:
    from cql_jax.continuous import agent as cql
    return cql.make_cql_agent(config, dataset.obs_dim, dataset.action_low, dataset.action_high)
  from cql_jax.discrete import agent as discrete_agent
  return discrete_agent.make_discrete_agent(
      config, dataset.transitions.obs.shape[1:], int(dataset.num_actions))


def device_data(dataset: OfflineDataset) -> Transition:
  """The dataset's transitions on the device, actions scaled into [-1, 1] for Box spaces."""
  transitions = dataset.transitions
  if not dataset.discrete:
    transitions = buffer.scale_actions(transitions, dataset.action_low, dataset.action_high)
  return buffer.to_device(transitions)
