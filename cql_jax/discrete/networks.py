"""Flax networks for discrete-action value learning: a torso (pixels or vectors) plus a head.

Shape letters: B batch, A actions, Nq quantiles, K REM heads, O observation dim, H hidden width.
Heads:  QHead [B, A];  QuantileHead [B, A, Nq];  MultiHead [B, K, A].
`mean_q` reduces any head's output to [B, A], the Q used for acting and for the CQL penalty.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

# Fan-in uniform variance scaling with scale 1/sqrt(3), the initialiser Dopamine's Atari nets use,
# so runs start where the published baselines started.
_INIT = nn.initializers.variance_scaling(1.0 / 3.0**0.5, "fan_in", "uniform")


class NatureTorso(nn.Module):
  """Nature-DQN CNN (Mnih et al., 2015): [B, 84, 84, 4] uint8 frames -> [B, 512] features.

  Pixels are scaled to [0, 1] here, so replay buffers can keep uint8 (1 byte per pixel).
  """

  @nn.compact
  def __call__(self, obs):
    x = obs.astype(jnp.float32) / 255.0
    for features, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
      x = nn.relu(nn.Conv(features, (kernel, kernel), (stride, stride), padding="VALID",
                          kernel_init=_INIT)(x))
    x = x.reshape(x.shape[:-3] + (-1,))
    return nn.relu(nn.Dense(512, kernel_init=_INIT)(x))


class MLPTorso(nn.Module):
  """ReLU MLP for vector observations: [B, O] float -> [B, H_last]."""
  hidden_sizes: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, obs):
    x = obs.astype(jnp.float32)
    for width in self.hidden_sizes:
      x = nn.relu(nn.Dense(width, kernel_init=_INIT)(x))
    return x


class QHead(nn.Module):
  """Linear Q head: [B, F] -> [B, A]."""
  num_actions: int

  @nn.compact
  def __call__(self, features):
    return nn.Dense(self.num_actions, kernel_init=_INIT)(features)


class QuantileHead(nn.Module):
  """QR-DQN head: [B, F] -> [B, A, Nq] quantile values (return units)."""
  num_actions: int
  num_quantiles: int

  @nn.compact
  def __call__(self, features):
    out = nn.Dense(self.num_actions * self.num_quantiles, kernel_init=_INIT)(features)
    return out.reshape(out.shape[:-1] + (self.num_actions, self.num_quantiles))


class MultiHead(nn.Module):
  """REM head: [B, F] -> [B, K, A], K independent linear Q heads over one shared torso."""
  num_actions: int
  num_heads: int

  @nn.compact
  def __call__(self, features):
    out = nn.Dense(self.num_heads * self.num_actions, kernel_init=_INIT)(features)
    return out.reshape(out.shape[:-1] + (self.num_heads, self.num_actions))


class DiscreteQNetwork(nn.Module):
  """torso then head; output shape is the head's (see module docstring)."""
  torso: nn.Module
  head: nn.Module

  def __call__(self, obs):
    return self.head(self.torso(obs))


def mean_q(output, loss: str):
  """Reduces a head's output to Q [B, A]: identity (dqn; bc's logits), quantile mean (qrdqn),
  head mean (rem)."""
  if loss in ("dqn", "bc"):
    return output
  if loss == "qrdqn":
    return output.mean(axis=-1)
  if loss == "rem":
    return output.mean(axis=-2)
  raise ValueError(f"unknown loss {loss!r}")


def make_q_network(config: ml_collections.ConfigDict, num_actions: int) -> DiscreteQNetwork:
  """Builds the network a discrete agent config asks for (`torso`, `loss`, head sizes)."""
  if config.torso == "cnn":
    torso = NatureTorso()
  elif config.torso == "mlp":
    torso = MLPTorso(tuple(config.hidden_sizes))
  else:
    raise ValueError(f"unknown torso {config.torso!r}; expected 'cnn' or 'mlp'")
  if config.loss in ("dqn", "bc"):  # bc: the same [B, A] outputs, read as logits.
    head = QHead(num_actions)
  elif config.loss == "qrdqn":
    head = QuantileHead(num_actions, config.num_quantiles)
  elif config.loss == "rem":
    head = MultiHead(num_actions, config.num_heads)
  else:
    raise ValueError(f"unknown loss {config.loss!r}; expected 'dqn', 'qrdqn', 'rem' or 'bc'")
  return DiscreteQNetwork(torso, head)
