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
