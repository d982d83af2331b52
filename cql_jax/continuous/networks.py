"""Flax modules for continuous control: MLP torso, a critic ensemble, a tanh-Gaussian actor.

Shape letters: B batch, N actions per state, E critics, O obs dim, A action dim, H hidden width.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# A NumPy constant: a jnp expression here would initialise the JAX backend at import time, before
# a multi-host launch can call jax.distributed.initialize.
_LOG_2PI = np.float32(np.log(2.0 * np.pi))


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


def _feature_major_matmul(_, kernel, h):
  """kernel [H, K], h [H, M] -> kernelᵀ h [K, M]."""
  return jnp.einsum("hk,hm->km", kernel, h)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _low_precision_matmul(dtype, kernel, h):
  """kernelᵀ h with `dtype` operands and float32 accumulation, forward and backward.

  JAX's own transpose of a mixed-precision dot would run the two backward matmuls in float32
  (the float32 cotangent promotes the low-precision operand), losing the speed-up on the
  larger part of the step; here the cotangent is cast too.
  """
  return jnp.einsum("hk,hm->km", kernel.astype(dtype), h.astype(dtype),
                    preferred_element_type=jnp.float32)


def _low_precision_fwd(dtype, kernel, h):
  k, x = kernel.astype(dtype), h.astype(dtype)
  return jnp.einsum("hk,hm->km", k, x, preferred_element_type=jnp.float32), (k, x)


def _low_precision_bwd(dtype, res, g):
  k, x = res
  g = g.astype(dtype)
  d_kernel = jnp.einsum("km,hm->hk", g, x, preferred_element_type=jnp.float32)
  d_h = jnp.einsum("hk,km->hm", k, g, preferred_element_type=jnp.float32)
  return d_kernel, d_h


_low_precision_matmul.defvjp(_low_precision_fwd, _low_precision_bwd)


class _DenseParams(nn.Module):
  """The parameters of an nn.Dense (same names, shapes and initialisers), without its matmul,
  so that the caller can choose the matmul's layout."""
  features: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, in_features: int):
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (in_features, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else None
    return kernel, bias


class Critic(nn.Module):
  """Q(s, a) for N actions per state.

  The first layer of an MLP on concat(s, a) is W_s s + W_a a + b; the W_s s half is computed once
  per state and broadcast over the N actions, which removes most of the first layer's cost when
  the CQL penalty scores 30 sampled actions per state.

  Activations are kept feature-major, [H, B·N], rather than [B·N, H]. The parameters are those
  of an MLP of nn.Dense layers ("obs_in", "action_in", "torso/Dense_i"), but with that layout
  every matmul of the backward pass, the weight gradient Σ_m x_m δ_mᵀ included, contracts the
  contiguous B·N axis of both operands, so XLA:CPU needs no transposed copy of a [B·N, H]
  activation and hands every large dot to its fast matmul path (about 16% faster per critic
  gradient on CPU; see BENCHMARKS.md, "Throughput and roofline").

  matmul_dtype: operand dtype of the torso's matmuls (e.g. jnp.bfloat16), accumulated in float32;
  None keeps float32 throughout. bfloat16 operands run the CPU matmuls about twice as fast on
  chips with AVX512-BF16 (and use the tensor cores on GPUs) at 8 mantissa bits per operand.

  Call: obs [B, O], actions [B, N, A] -> Q [B, N] (float32).
  """
  hidden_sizes: Sequence[int] = (256, 256)
  matmul_dtype: Any = None

  @nn.compact
  def __call__(self, obs, actions):
    batch, num, _ = actions.shape
    matmul = (functools.partial(_feature_major_matmul, None) if self.matmul_dtype is None
              else functools.partial(_low_precision_matmul, self.matmul_dtype))
    width = self.hidden_sizes[0]
    w_obs, b_obs = _DenseParams(width, name="obs_in")(obs.shape[-1])
    w_act, _ = _DenseParams(width, use_bias=False, name="action_in")(actions.shape[-1])
    h_obs = jnp.einsum("oh,bo->hb", w_obs, obs) + b_obs[:, None]             # [H, B]
    h_act = jnp.einsum("ah,bna->hbn", w_act, actions)                         # [H, B, N]
    h = nn.relu(h_obs[:, :, None] + h_act).reshape(width, batch * num)        # [H, B·N]
    sizes = tuple(self.hidden_sizes[1:]) + (1,)

    class Torso(nn.Module):  # a scope named "torso" holding Dense_i, as the MLP had.
      @nn.compact
      def __call__(self, h):
        for i, size in enumerate(sizes):
          kernel, bias = _DenseParams(size, name=f"Dense_{i}")(h.shape[0])
          h = matmul(kernel, h) + bias[:, None]
          if i < len(sizes) - 1:
            h = nn.relu(h)
        return h

    q = Torso(name="torso")(h)                                                # [1, B·N]
    return q.reshape(batch, num)


class CriticEnsemble(nn.Module):
  """E independent critics as one stacked parameter tree (leading axis E) under nn.vmap.

  Call: obs [B, O], actions [B, N, A] -> Q [E, B, N].
  """
  num_critics: int = 2
  hidden_sizes: Sequence[int] = (256, 256)
  matmul_dtype: Any = None

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
    return ensemble(self.hidden_sizes, self.matmul_dtype, name="critics")(obs, actions)


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
