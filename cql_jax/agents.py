"""Agent factory: one entry point that picks the continuous or the discrete agent for a dataset."""
from __future__ import annotations

import ml_collections

from cql_jax.data import buffer
from cql_jax.data import minari_io
from cql_jax.types import Agent, OfflineDataset, Transition


def is_discrete_config(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` is a discrete agent's (it names a value loss: dqn, qrdqn or rem)."""
  return "loss" in config


def make_agent(config: ml_collections.ConfigDict, dataset: OfflineDataset) -> Agent:
  """The agent `config` describes, shaped for `dataset`.

  config: cql_jax.continuous_config() (continuous Box actions) or cql_jax.discrete_config()
    (Discrete actions), possibly made a variant (cql_jax.continuous.variants,
    cql_jax.discrete.variants); the dataset's action space must match, and a mismatch raises
    an error that says which config to use.
  Returns an Agent (cql_jax.types.Agent): init(key, hparams=None), update, act, sweepable.
  """
  discrete = is_discrete_config(config)
  minari_io.check_action_kind(dataset, discrete=discrete)
  if not discrete:
    from cql_jax.continuous import agent as continuous_agent
    return continuous_agent.make_cql_agent(config, dataset.obs_dim, dataset.action_low,
                                           dataset.action_high)
  from cql_jax.discrete import agent as discrete_agent
  return discrete_agent.make_discrete_agent(
      config, dataset.transitions.obs.shape[1:], int(dataset.num_actions))


def device_data(dataset: OfflineDataset) -> Transition:
  """The dataset's transitions on the device, actions scaled into [-1, 1] for Box spaces."""
  transitions = dataset.transitions
  if not dataset.discrete:
    transitions = buffer.scale_actions(transitions, dataset.action_low, dataset.action_high)
  return buffer.to_device(transitions)
