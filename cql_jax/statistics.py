"""Offline statistics of a critic on a fixed slice of data: what model selection reads.

`make_statistics` compiles one function over stacked members that reads only the agent's
`values` (cql_jax.types.Agent) on a fixed set of transitions (a held-out slice, or a fixed
sample of the training data) and on the dataset's start states, in sub-batches so that memory
stays that of a training step. The runner records its output at every evaluation as a
metrics.jsonl row of kind "offline"; cql_jax.selection ranks checkpoints with it.

Names (each [M], one value per member):
  offline/q_data       mean Q(s, a) over the slice's data actions (the workflow's "average
                       dataset Q-value").
  offline/td_error     mean squared Bellman error on the slice, the agent's own target.
  offline/relative_td  sqrt(td_error) / (|q_data| + RMS reward): the error in units of the value
                       scale, comparable across datasets (under-fitting when large).
  offline/gap          mean of the penalty's soft-maximum minus Q(s, a) (the CQL gap), when the
                       agent has a penalty.
  offline/v_initial    mean over start states s0 of Q(s0, π(s0)): the critic's own estimate of
                       the policy's discounted return E[V^π(s0)].
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cql_jax.types import Agent, Transition

SUB_BATCH = 256


def fixed_slice(transitions: Transition, size: int, seed: int) -> Transition:
  """At most `size` transitions drawn without replacement with `seed` (NumPy, host)."""
  total = int(np.asarray(transitions.reward).shape[0])
  if total <= size:
    return Transition(*(np.asarray(x) for x in transitions))
  index = np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False))
  return Transition(*(np.asarray(x)[index] for x in transitions))


def start_states(initial_obs: np.ndarray, action_like) -> Transition:
  """A Transition whose obs are the start states (other fields are placeholders `values` needs
  for its shapes; only "v" is read from them)."""
  obs = np.asarray(initial_obs, np.float32)
  action = np.zeros((obs.shape[0],) + np.shape(action_like)[1:], np.asarray(action_like).dtype)
  zeros = np.zeros((obs.shape[0],), np.float32)
  return Transition(obs, action, zeros, np.ones_like(zeros), obs)


def _padded(batch: Transition):
  """(batch padded to a multiple of SUB_BATCH and reshaped [C, SUB_BATCH, ...], weights [C, SUB])."""
  size = int(np.asarray(batch.reward).shape[0])
  chunks = max(1, -(-size // SUB_BATCH))
  pad = chunks * SUB_BATCH - size
  def prep(x):
    x = np.asarray(x)
    if pad:
      x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)]) if size else np.zeros(
          (pad,) + x.shape[1:], x.dtype)
    return x.reshape((chunks, SUB_BATCH) + x.shape[1:])
  weights = np.concatenate([np.ones(size, np.float32), np.zeros(pad, np.float32)])
  return Transition(*(prep(x) for x in batch)), weights.reshape(chunks, SUB_BATCH)


def make_statistics(agent: Agent, transitions: Transition, initial_obs: np.ndarray,
                    reward_rms: Optional[float] = None, deterministic: bool = True,
                    seed: int = 0) -> Optional[Callable]:
  """statistics(states [M, ...]) -> {name: np.ndarray [M]} (the names in the module docstring).

  transitions: the fixed slice (NumPy, actions as the agent trains on them: in [-1, 1] for Box
    spaces); initial_obs: [num_episodes, *obs_shape] start states; reward_rms: the value scale's
    reward term (default: the slice's own RMS reward); deterministic: value the policy's mode, as
    evaluation acts. The same `seed` gives every call, member and sweep the same sample keys.
  Returns None for an agent without `values` or with no critic (BC).
  """
  if agent.values is None or len(np.asarray(transitions.reward)) == 0:
    return None
  rewards = np.asarray(transitions.reward, np.float64)
  rms = float(np.sqrt(np.mean(rewards ** 2))) if reward_rms is None else float(reward_rms)
  data, data_w = _padded(transitions)
  starts, start_w = _padded(start_states(initial_obs, transitions.action))
  def weighted_means(state, batches, weights, key):
    def one(carry, xs):
      batch, w, k = xs
      out = agent.values(state, batch, k, deterministic)
      return carry, {n: jnp.sum(v * w) for n, v in out.items()}
    keys = jax.random.split(key, weights.shape[0])
    _, sums = jax.lax.scan(one, None, (batches, weights, keys))
    return {n: jnp.sum(v) / jnp.sum(weights) for n, v in sums.items()}

  def member(state, data, data_w, starts, start_w, key):
    data_key, start_key = jax.random.split(key)
    on_data = weighted_means(state, data, data_w, data_key)
    out = {"offline/q_data": on_data["q_data"], "offline/td_error": on_data["td_error"],
           "offline/relative_td": jnp.sqrt(on_data["td_error"]) / (jnp.abs(on_data["q_data"]) + rms)}
    if "gap" in on_data:
      out["offline/gap"] = on_data["gap"]
    out["offline/v_initial"] = weighted_means(state, starts, start_w, start_key)["v"]
    return out

  compiled = jax.jit(jax.vmap(member, in_axes=(0, None, None, None, None, None)))
  probe = jax.eval_shape(
      lambda s, k: agent.values(s, jax.tree.map(lambda x: x[0], data), k, deterministic),
      jax.eval_shape(agent.init, jax.random.key(0)), jax.random.key(1))
  if not probe:
    return None
  # Host arrays, not committed to a device: the states may be sharded over a Mesh, and jit
  # places uncommitted inputs wherever the states are (a few MB per call, once per evaluation).
  args = (data, data_w, starts, start_w)

  def statistics(states) -> Dict[str, np.ndarray]:
    # A fresh key from the same seed at every call: every evaluation, member and sweep draws the
    # same samples.
    out = compiled(states, *args, jax.random.key(seed))
    from cql_jax import parallel  # to_host: members sharded over several processes, gathered.
    return {n: np.asarray(v) for n, v in parallel.to_host(out).items()}
  return statistics
