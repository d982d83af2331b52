"""Prototype variants of the continuous CQL agent, for measuring a change before it lands in
`cql_jax.continuous.agent` (owned elsewhere). Each variant builds the library agent with one thing
changed; `throughput.py --variant=NAME` times it next to the library agent.

  bf16: critic torso matmuls with bfloat16 operands and float32 accumulation
        (networks.CriticEnsemble(matmul_dtype=jnp.bfloat16)); everything else float32.
"""
from __future__ import annotations

import functools
from unittest import mock

import jax.numpy as jnp
import numpy as np

from cql_jax.continuous import networks
from cql_jax.continuous import agent as cql

VARIANTS = ("bf16",)


def make_variant(config, obs_dim: int, action_dim: int, name: str):
  """The library agent built with variant `name`; same (init, update, act) interface."""
  if name not in VARIANTS:
    raise ValueError(f"unknown variant {name!r}; choose from {VARIANTS}")
  ensemble = functools.partial(networks.CriticEnsemble, matmul_dtype=jnp.bfloat16)
  # The agent builds its critic with positional (num_critics, hidden_sizes); swapping the class
  # for the duration of the build is the least intrusive way to prototype the option.
  with mock.patch.object(networks, "CriticEnsemble", ensemble):
    return cql.make_cql_agent(config, obs_dim, -np.ones(action_dim), np.ones(action_dim))
