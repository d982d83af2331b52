"""Shared containers. Shape letters: B batch, N sampled actions, E critics, O obs dim, A action dim."""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional, Tuple

import numpy as np

Array = Any  # jax.Array or np.ndarray; kept loose so containers hold either.


class Transition(NamedTuple):
  """One (s, a, r, s') step, or a batch of them stacked on leading axes.

  obs:      [..., O] float32.
  action:   [..., A] float32 (continuous) or [...] int32 (discrete). Loaders return the
            environment's units; the continuous agent trains on actions scaled into [-1, 1]
            (cql_jax.data.buffer.scale_actions).
  reward:   [...] float32, as stored in the dataset (after any configured transform).
  discount: [...] float32, 0.0 where the episode *terminated* at this step and 1.0 otherwise.
            A time-limit truncation keeps 1.0, so the backup still bootstraps through it.
            The agent's gamma is applied in the loss, not stored here.
  next_obs: [..., O] float32.
  """
  obs: Array
  action: Array
  reward: Array
  discount: Array
  next_obs: Array


@dataclasses.dataclass(frozen=True)
class OfflineDataset:
  """A dataset flattened to transitions, with what evaluation and scoring need.

  transitions:     Transition of NumPy arrays with leading axis T (number of transitions).
  dataset_id:      the Minari id it came from, e.g. "cql_jax/pendulum/medium-expert-v0".
  env_id:          Gymnasium id to evaluate in, e.g. "Pendulum-v1" (None if not recorded).
  env_kwargs:      keyword arguments for gymnasium.make (e.g. max_episode_steps).
  ref_min_score:   return of a random policy (D4RL-style normalisation), or None.
  ref_max_score:   return of an expert policy, or None.
  episode_returns: [num_episodes] undiscounted return of each episode in the data.
  initial_obs:     [num_episodes, O] first observation of each episode.
  discrete:        True when actions are integer indices.
  num_actions:     size of a Discrete action space, else None.
  action_low, action_high: [A] bounds of a Box action space, else None.
  obs_keys:        the dict-observation keys flattened into obs, in order (None: array
                   observations); evaluation flattens the environment's observations the same way.
  env_spec:        gymnasium EnvSpec of the evaluation environment (a Minari dataset's stored
                   evaluation spec, else its collection spec), or None; when set it wins over
                   env_id/env_kwargs.
  observation_space: the dataset's observation space before flattening (gymnasium Space), or
                   None; the start-up check compares it with the evaluation environment's.
  data_env_spec:   gymnasium EnvSpec of the environment the data was recorded in (a Minari
                   dataset's collection spec), or None; the start-up check compares a maze
                   environment's map with it (cql_jax.data.maze_maps).
  """
  transitions: Transition
  dataset_id: str
  env_id: Optional[str]
  env_kwargs: dict
  ref_min_score: Optional[float]
  ref_max_score: Optional[float]
  episode_returns: np.ndarray
  initial_obs: np.ndarray
  discrete: bool = False
  num_actions: Optional[int] = None
  action_low: Optional[np.ndarray] = None
  action_high: Optional[np.ndarray] = None
  obs_keys: Optional[tuple] = None
  env_spec: Any = None
  observation_space: Any = None
  data_env_spec: Any = None

  @classmethod
  def from_arrays(cls, observations, actions, rewards, terminals, truncations, **kwargs
                  ) -> "OfflineDataset":
    """A dataset from a researcher's own NumPy arrays; see cql_jax.data.arrays.from_arrays."""
    from cql_jax.data import arrays  # pylint: disable=import-outside-toplevel
    return arrays.from_arrays(observations, actions, rewards, terminals, truncations, **kwargs)

  @property
  def size(self) -> int:
    return int(self.transitions.reward.shape[0])

  @property
  def obs_dim(self) -> int:
    return int(self.transitions.obs.shape[-1])

  @property
  def action_dim(self) -> int:
    return 1 if self.discrete else int(self.transitions.action.shape[-1])


class Agent(NamedTuple):
  """What every agent (continuous CQL/SAC/BC, discrete CQL/DQN/QR-DQN/REM) exposes.

  init(key, hparams=None) -> state: a fresh immutable train state (a pytree). hparams is an
    optional mapping {dotted agent-config key: scalar}, e.g. {"cql.weight": 5.0,
    "critic_lr": 3e-4}, overriding the config for the keys in `sweepable`; missing keys take the
    config's values. `jax.vmap(agent.init)(keys, {"cql.weight": jnp.array([1., 5.])})` builds
    stacked members that one compiled `update` trains together.
  update(state, batch, key) -> (state, metrics): one gradient step; `batch` is a Transition
    with leading axis B; `metrics` is a flat dict of scalar arrays keyed like "critic/loss".
  act(state, obs, key, deterministic) -> action: obs [B, *obs_shape] -> action [B, A] in the
    environment's units for continuous agents, or [B] int32 for discrete agents.
  sweepable: the dotted keys `init` accepts; each lives in the state as an array (state.hparams,
    or the optax.inject_hyperparams state for learning rates). Structural choices (sizes, number
    of critics, variant, whether the penalty is compiled in) are not sweepable.
  values(state, batch, key, deterministic=True) -> {name: [B]}: the critic's per-transition
    statistics that offline model selection reads (cql_jax.selection): "q_data" Q(s, a) at the
    data action, "td_error" the squared Bellman error, "v" Q(s, π(s)) of the agent's policy and,
    where a penalty is compiled in, "gap" (the penalty's soft-maximum minus Q(s, a)). {} for an
    agent without a critic (BC); None for agents that do not provide it.
  init, update and act are pure and jit-able; the training loop scans `update` and vmaps seeds.
  """
  init: Any
  update: Any
  act: Any
  sweepable: Tuple[str, ...] = ()
  values: Any = None


class ReturnTransition(NamedTuple):
  """A Transition plus the Monte-Carlo return-to-go of its trajectory, for Cal-QL.

  The first five fields are Transition's. mc_return: [...] float32, the discounted return from
  this step to the end of its recorded episode (cql_jax.data.returns.return_to_go), the
  reference value that Cal-QL's penalty lower-bounds the policy's Q-values with.
  """
  obs: Array
  action: Array
  reward: Array
  discount: Array
  next_obs: Array
  mc_return: Array
