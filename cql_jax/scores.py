"""D4RL-style normalised scores."""
from __future__ import annotations

from typing import Optional, Union

import numpy as np

ArrayLike = Union[float, np.ndarray, list]


def normalized_score(returns: ArrayLike, ref_min: Optional[float],
                     ref_max: Optional[float]) -> np.ndarray:
  """Maps undiscounted episode returns to the D4RL 0–100 scale.

  score = 100 * (return - ref_min) / (ref_max - ref_min), so a uniform random
  policy scores about 0 and the reference expert about 100. Unlike
  ``minari.get_normalized_score`` (a fraction in [0, 1]) this is already x100,
  the convention of the CQL and D4RL papers.

  Args:
    returns: scalar or array of any shape [...], undiscounted episode returns in
      the environment's reward units (for example, Pendulum-v1 returns lie
      roughly in [-1700, 0]).
    ref_min: return of the random reference policy (dataset metadata
      ``ref_min_score``), same units as ``returns``.
    ref_max: return of the expert reference policy (``ref_max_score``).

  Returns:
    float64 array of shape [...] (0-d for scalar input), in percent.

  Raises:
    ValueError: if either reference is missing or not finite, or they are equal.
  """
  if ref_min is None or ref_max is None:
    raise ValueError(
        f"Cannot normalise scores: ref_min_score={ref_min!r}, ref_max_score={ref_max!r}. "
        "The dataset has no reference scores in its metadata. Pass ref_min/ref_max "
        "explicitly, or regenerate the dataset with ref_min_score and ref_max_score "
        "(cql_jax.makers.generate.write_dataset records both); report raw returns otherwise.")
  ref_min = float(ref_min)
  ref_max = float(ref_max)
  if not (np.isfinite(ref_min) and np.isfinite(ref_max)):
    raise ValueError(f"Reference scores must be finite, got ref_min={ref_min}, ref_max={ref_max}.")
  if ref_max == ref_min:
    raise ValueError(
        f"ref_max == ref_min == {ref_min}: the normalisation divides by zero. "
        "Check the dataset's reference scores.")
  returns = np.asarray(returns, dtype=np.float64)
  return 100.0 * (returns - ref_min) / (ref_max - ref_min)


def dataset_score(dataset) -> dict:
  """The level of the data itself, to set beside the policy's evaluation scores.

  Args:
    dataset: an OfflineDataset (its raw episode_returns [E] and reference scores).

  Returns:
    {"dataset/return": mean episode return, "dataset/episodes": E} plus
    "dataset/normalized_score" (D4RL scale, percent) when the dataset has reference scores;
    {} when it holds no episodes (e.g. a DQN replay, which records none).
  """
  returns = np.asarray(dataset.episode_returns, np.float64).reshape(-1)
  if returns.size == 0:
    return {}
  mean = float(returns.mean())
  out = {"dataset/return": mean, "dataset/episodes": int(returns.size)}
  if dataset.ref_min_score is not None and dataset.ref_max_score is not None:
    out["dataset/normalized_score"] = float(
        normalized_score(mean, dataset.ref_min_score, dataset.ref_max_score))
  return out


def comparison_text(policy: dict, data: dict) -> str:
  """One line setting the policy's mean evaluation score beside the dataset's.

  policy: {"eval/return": x, "eval/normalized_score": y, ...} (means over seeds); data: the
  output of dataset_score. Uses the normalized score when both have one, else the return.
  """
  for kind in ("normalized_score", "return"):
    p, d = policy.get(f"eval/{kind}"), data.get(f"dataset/{kind}")
    if p is not None and d is not None:
      label = "normalized score" if kind == "normalized_score" else "return"
      return (f"policy {label} {float(p):.1f} vs dataset {float(d):.1f} "
              f"({float(p) - float(d):+.1f})")
  return "no dataset score to compare with (the data records no episodes)"
