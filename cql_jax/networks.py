"""Flax modules for continuous control: MLP torso, a critic ensemble, a tanh-Gaussian actor.

Shape letters: B batch, N actions per state, E critics, O obs dim, A action dim, H hidden width.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

_LOG_2PI = jnp.log(2.0 * jnp.pi)


class MLP(nn.Module):
  """ReLU MLP; the last layer is linear unless `activate_final`."""
  sizes: Sequence[int]
  activate_final: bool = False
  final_init_scale: float | None = None

  @nn.compact
  def __call__(self, x):
    for i, size in enumerate(self.sizes):
      last = i == len(self.sizes) - 1
      init = nn.initializers.lecun_normal()
      if last and self.final_init_scale is not None:
        init = nn.initializers.uniform(self.final_init_scale)
      x = nn.Dense(size, kernel_init=init)(x)
      if not last or self.activate_final:
        x = nn.relu(x)
    return x


class Critic(nn.Module):
  """Q(s, a) for N actions per state.

  The first layer of an MLP on concat(s, a) is W_s s + W_a a + b; the W_s s half is computed once
  per state and broadcast over the N actions, which removes most of the first layer's cost when
  the CQL penalty scores 30 sampled actions per state.

  Call: obs [B, O], actions [B, N, A] -> Q [B, N].
  """
  hidden_sizes: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, obs, actions):
    width = self.hidden_sizes[0]
    h_obs = nn.Dense(width, name="obs_in")(obs)                            # [B, H]
    h_act = nn.Dense(width, use_bias=False, name="action_in")(actions)     # [B, N, H]
    h = nn.relu(h_obs[:, None, :] + h_act)
    q = MLP(tuple(self.hidden_sizes[1:]) + (1,), name="torso")(h)
    return q[..., 0]


class CriticEnsemble(nn.Module):
  """E independent critics as one stacked parameter tree (leading axis E) under nn.vmap.

  Call: obs [B, O], actions [B, N, A] -> Q [E, B, N].
  """
  num_critics: int = 2
  hidden_sizes: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, obs, actions):
    ensemble = nn.vmap(
        Critic,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=None,
        out_axes=0,
        axis_size=self.num_critics,
    )
    return ensemble(self.hidden_sizes, name="critics")(obs, actions)


class TanhGaussianActor(nn.Module):
  """Gaussian policy squashed by tanh into [-1, 1]^A.

  Call: obs [B, O] -> (mean [B, A], log_std [B, A]) of the pre-tanh Gaussian; log_std is
  clamped to [log_std_min, log_std_max] so that neither exploding nor vanishing scales reach
  the log-density used by the CQL importance weights.
  """
  action_dim: int
  hidden_sizes: Sequence[int] = (256, 256)
  log_std_min: float = -5.0
  log_std_max: float = 2.0

  @nn.compact
  def __call__(self, obs):
    h = MLP(tuple(self.hidden_sizes), activate_final=True, name="torso")(obs)
    small = nn.initializers.uniform(1e-3)
    mean = nn.Dense(self.action_dim, kernel_init=small, name="mean")(h)
    log_std = nn.Dense(self.action_dim, kernel_init=small, name="log_std")(h)
    return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def tanh_gaussian_log_prob(mean, log_std, pre_tanh):
  """log π(tanh(u)|s) for pre-tanh samples u.

  mean, log_std: [B, A]; pre_tanh: [B, N, A] -> [B, N] (nats).
  Uses log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), exact and stable for large |u|.
  """
  mean, log_std = mean[:, None, :], log_std[:, None, :]
  z = (pre_tanh - mean) * jnp.exp(-log_std)
  gaussian = -0.5 * (z ** 2 + _LOG_2PI) - log_std
  log_det = 2.0 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))
  return jnp.sum(gaussian - log_det, axis=-1)


def sample_tanh_gaussian(mean, log_std, key, num_samples: int) -> Tuple[jax.Array, jax.Array]:
  """Reparameterised samples and their log-densities.

  mean, log_std: [B, A] -> actions [B, N, A] in (-1, 1), log_prob [B, N].
  """
  noise = jax.random.normal(key, (mean.shape[0], num_samples, mean.shape[-1]), mean.dtype)
  pre_tanh = mean[:, None, :] + jnp.exp(log_std)[:, None, :] * noise
  return jnp.tanh(pre_tanh), tanh_gaussian_log_prob(mean, log_std, pre_tanh)


def tanh_gaussian_log_prob_of_action(mean, log_std, action, eps: float = 1e-6):
  """log π(a|s) for actions a in [-1, 1] (e.g. dataset actions, for behaviour cloning).

  mean, log_std: [B, A]; action: [B, N, A] -> [B, N]. Actions are clipped to ±(1 - eps) so that
  atanh stays finite on data that sits exactly on the action bounds.
  """
  pre_tanh = jnp.arctanh(jnp.clip(action, -1.0 + eps, 1.0 - eps))
  return tanh_gaussian_log_prob(mean, log_std, pre_tanh)
