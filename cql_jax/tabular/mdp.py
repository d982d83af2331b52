"""Random finite MDPs, behaviour policies, datasets and the empirical MDP built from counts.

Shape letters: S states, A actions, N transitions in a dataset.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np


class FiniteMDP(NamedTuple):
  """A finite discounted MDP with bounded stochastic rewards.

  transition:   [S, A, S] P(s' | s, a); rows sum to one.
  reward:       [S, A] mean reward r(s, a).
  reward_noise: half-width w of the uniform reward noise: a sampled reward is r(s, a) + U(-w, w).
  gamma:        discount in [0, 1).
  reward_max:   R_max, a bound on |sampled reward| (|r| + w <= R_max).
  """
  transition: np.ndarray
  reward: np.ndarray
  reward_noise: float
  gamma: float
  reward_max: float

  @property
  def num_states(self) -> int:
    return self.transition.shape[0]

  @property
  def num_actions(self) -> int:
    return self.transition.shape[1]

  @property
  def value_max(self) -> float:
    """R_max / (1 - gamma): a bound on |Q^pi| for every policy."""
    return self.reward_max / (1.0 - self.gamma)


class TabularDataset(NamedTuple):
  """Transitions (s, a, r, s'), each field [N]."""
  state: np.ndarray
  action: np.ndarray
  reward: np.ndarray
  next_state: np.ndarray

  @property
  def size(self) -> int:
    return int(self.state.shape[0])


class EmpiricalMDP(NamedTuple):
  """What a dataset D tells us: the empirical Bellman operator B^ and pi^_beta, from counts.

  Only states in D (`in_data`) have defined entries; elsewhere transition/reward are zero and
  behaviour is uniform, and the CQL objectives do not involve Q there at all. Datasets from
  `sample_dataset` are closed: every next state seen in D is itself in D with every action tried,
  so B^ at s in D never bootstraps from a state D says nothing about.

  transition:   [S, A, S] P^(s' | s, a) = n(s, a, s') / n(s, a).
  reward:       [S, A] r^(s, a), the mean reward observed at (s, a).
  behaviour:    [S, A] pi^_beta(a | s) = n(s, a) / n(s).
  state_weight: [S] d^(s) = n(s) / |D|, the state marginal the objectives average over.
  counts:       [S, A] n(s, a).
  in_data:      [S] bool, n(s) > 0.
  gamma:        discount.
  """
  transition: np.ndarray
  reward: np.ndarray
  behaviour: np.ndarray
  state_weight: np.ndarray
  counts: np.ndarray
  in_data: np.ndarray
  gamma: float


def _dirichlet_rows(rng: np.random.Generator, shape: tuple[int, ...], concentration: float,
                    floor: float = 1e-6) -> np.ndarray:
  # Small concentrations can underflow to exact zeros; the theorems need strictly positive
  # behaviour probabilities, so mix in a tiny floor and renormalise.
  p = rng.dirichlet(np.full(shape[-1], concentration), size=shape[:-1])
  p = p + floor
  return p / p.sum(-1, keepdims=True)


def random_mdp(rng: np.random.Generator, num_states: int, num_actions: int, gamma: float,
               reward_max: float = 1.0, branching: Optional[int] = None,
               reward_noise_fraction: float = 0.5) -> FiniteMDP:
  """A random MDP: Dirichlet(1) next-state rows over `branching` random successors (all if None),
  mean rewards uniform in [-(R_max - w), R_max - w], noise half-width w = fraction * R_max."""
  s, a = num_states, num_actions
  k = s if branching is None else min(branching, s)
  weights = rng.dirichlet(np.ones(k), size=(s, a))
  transition = np.zeros((s, a, s))
  successors = np.argsort(rng.random((s, a, s)), axis=-1)[..., :k]
  np.put_along_axis(transition, successors, weights, axis=-1)
  noise = reward_noise_fraction * reward_max
  reward = rng.uniform(-(reward_max - noise), reward_max - noise, size=(s, a))
  return FiniteMDP(transition, reward, noise, gamma, reward_max)


def random_policy(rng: np.random.Generator, num_states: int, num_actions: int,
                  concentration: float = 1.0) -> np.ndarray:
  """[S, A] a random stochastic policy with full support (Dirichlet rows)."""
  return _dirichlet_rows(rng, (num_states, num_actions), concentration)


def _step(rng: np.random.Generator, mdp: FiniteMDP, states: np.ndarray,
          actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Samples rewards [M] and next states [M] for given states and actions [M]."""
  probs = mdp.transition[states, actions]
  cdf = np.cumsum(probs, axis=-1)
  u = rng.random((states.shape[0], 1))
  next_states = np.minimum((u > cdf).sum(-1), mdp.num_states - 1)
  rewards = mdp.reward[states, actions] + rng.uniform(-mdp.reward_noise, mdp.reward_noise,
                                                      size=states.shape)
  return rewards, next_states


def sample_dataset(rng: np.random.Generator, mdp: FiniteMDP, behaviour: np.ndarray,
                   num_transitions: int, state_dist: Optional[np.ndarray] = None
                   ) -> TabularDataset:
  """Draws D: `num_transitions` i.i.d. tuples s ~ d, a ~ pi_beta(.|s), (r, s') ~ M, plus seeds.

  The seeds make the paper's standing assumption hold: pi^_beta(a|s) > 0 for all a at every s in
  D. Any state seen in D (as s or s') that lacks an action gets one extra transition for that
  action, repeated until closed, so every s' that B^ bootstraps from is itself in D. Seeds are at
  most S*A transitions; for |D| >> S*A they barely move pi^_beta away from pi_beta.

  Args:
    rng: NumPy generator.
    mdp: the true MDP.
    behaviour: [S, A] pi_beta.
    num_transitions: number of i.i.d. transitions before seeding.
    state_dist: [S] d(s) the source states are drawn from; uniform if None.
  Returns:
    TabularDataset with N >= num_transitions.
  """
  s_count, a_count = mdp.num_states, mdp.num_actions
  if state_dist is None:
    state_dist = np.full(s_count, 1.0 / s_count)
  states = rng.choice(s_count, size=num_transitions, p=state_dist)
  u = rng.random((num_transitions, 1))
  actions = np.minimum((u > np.cumsum(behaviour[states], -1)).sum(-1), a_count - 1)
  rewards, next_states = _step(rng, mdp, states, actions)
  parts = [(states, actions, rewards, next_states)]
  tried = np.zeros((s_count, a_count), bool)
  seen = np.zeros(s_count, bool)
  while True:
    for st, ac, _, nx in parts[-1:]:
      tried[st, ac] = True
      seen[st] = True
      seen[nx] = True
    missing_s, missing_a = np.nonzero(seen[:, None] & ~tried)
    if missing_s.size == 0:
      break
    r, nx = _step(rng, mdp, missing_s, missing_a)
    parts.append((missing_s, missing_a, r, nx))
  return TabularDataset(*(np.concatenate(f) for f in zip(*parts)))


def empirical_mdp(dataset: TabularDataset, num_states: int, num_actions: int,
                  gamma: float) -> EmpiricalMDP:
  """Counts-based B^ and pi^_beta (see EmpiricalMDP). Requires n(s, a) > 0 for all a at s in D."""
  s, a = num_states, num_actions
  counts = np.zeros((s, a))
  np.add.at(counts, (dataset.state, dataset.action), 1.0)
  reward_sum = np.zeros((s, a))
  np.add.at(reward_sum, (dataset.state, dataset.action), dataset.reward)
  next_counts = np.zeros((s, a, s))
  np.add.at(next_counts, (dataset.state, dataset.action, dataset.next_state), 1.0)
  state_counts = counts.sum(-1)
  in_data = state_counts > 0
  if np.any(in_data[:, None] & (counts == 0)):
    raise ValueError("some state in D lacks an action; pi^_beta must be positive on D")
  safe = np.maximum(counts, 1.0)
  behaviour = np.where(in_data[:, None], counts / np.maximum(state_counts, 1.0)[:, None], 1.0 / a)
  return EmpiricalMDP(transition=next_counts / safe[..., None], reward=reward_sum / safe,
                      behaviour=behaviour, state_weight=state_counts / dataset.size,
                      counts=counts, in_data=in_data, gamma=gamma)


def exact_operator(mdp: FiniteMDP, behaviour: np.ndarray,
                   state_dist: Optional[np.ndarray] = None) -> EmpiricalMDP:
  """The infinite-data limit, B^ = B and pi^_beta = pi_beta, as an EmpiricalMDP over all states."""
  s = mdp.num_states
  if state_dist is None:
    state_dist = np.full(s, 1.0 / s)
  return EmpiricalMDP(transition=mdp.transition, reward=mdp.reward, behaviour=behaviour,
                      state_weight=state_dist, counts=np.full(behaviour.shape, np.inf),
                      in_data=np.ones(s, bool), gamma=mdp.gamma)
