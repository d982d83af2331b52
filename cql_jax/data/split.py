"""Held-out slices of a dataset, split by whole episodes (for offline model selection).

Flat transitions keep their episodes contiguous (every reader appends episode after episode), so
an episode ends at t where the stored next observation is not the next row's observation, or the
episode terminated there. Holding out whole episodes keeps a validation TD error honest: a
held-out transition's successor is never a training transition's start state.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

from cql_jax.types import OfflineDataset, Transition


def episode_starts(transitions: Transition) -> np.ndarray:
  """[num_episodes] index of each episode's first transition, in order (the first is 0)."""
  obs, next_obs = np.asarray(transitions.obs), np.asarray(transitions.next_obs)
  size = obs.shape[0]
  if size == 0:
    return np.zeros((0,), np.int64)
  flat = lambda x: x.reshape(x.shape[0], -1)
  breaks = np.any(flat(next_obs[:-1]) != flat(obs[1:]), axis=1)
  breaks |= np.asarray(transitions.discount)[:-1] == 0.0
  return np.concatenate([[0], np.flatnonzero(breaks) + 1]).astype(np.int64)


def holdout_split(dataset: OfflineDataset, fraction: float, seed: int
                  ) -> Tuple[OfflineDataset, Transition]:
  """(training dataset, held-out transitions): round(fraction · episodes) whole episodes, drawn
  with `seed`, leave the training transitions.

  fraction: in [0, 1). At least one episode is held out and one kept when fraction > 0; a
  dataset with fewer than two episodes cannot be split and raises ValueError. The training
  dataset keeps the whole dataset's episode returns and start states (scoring and the start-state
  value estimates read those). fraction = 0 returns the dataset unchanged and an empty slice.
  """
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"selection.holdout_fraction must be in [0, 1), got {fraction}.")
  t = dataset.transitions
  if fraction == 0.0:
    return dataset, Transition(*(np.asarray(x)[:0] for x in t))
  starts = episode_starts(t)
  num = len(starts)
  if num < 2:
    raise ValueError(f"selection.holdout_fraction={fraction} needs at least two episodes to hold "
                     f"one out; {dataset.dataset_id} has {num}. Set it to 0 (statistics on the "
                     "training data) or use a larger dataset.")
  count = int(np.clip(round(fraction * num), 1, num - 1))
  held = np.random.default_rng(seed).choice(num, size=count, replace=False)
  ends = np.append(starts[1:], dataset.size)
  mask = np.zeros(dataset.size, bool)
  for e in held:
    mask[starts[e]:ends[e]] = True
  take = lambda m: Transition(*(np.asarray(x)[m] for x in t))
  return dataclasses.replace(dataset, transitions=take(~mask)), take(mask)
