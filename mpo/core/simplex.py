"""The one check that weights λ are a point of the simplex Δ_K: K finite, non-negative numbers summing to 1
(within `SIMPLEX_TOLERANCE`). Every place that takes weights (the config, the mixture, the objective, reward
aggregation, soups) calls `check_simplex`, so each refusal names the same problem and the same fix."""

from __future__ import annotations

import math
from collections.abc import Sequence

SIMPLEX_TOLERANCE = 1e-6


def check_simplex(weights: Sequence[float], k: int, *, what: str = "objective", key: str = "weights") -> list[float]:
    """``weights`` as floats, or a ValueError naming the problem and the fix (``key`` names the setting, ``what``
    what each weight belongs to: an objective, a model)."""
    values = [float(w) for w in weights]
    if len(values) != k:
        raise ValueError(f"{key}: {len(values)} weights but there are {k} {what}s (length K={k}): give exactly one "
                         f"weight per {what}, in order (pass exactly {k} weights)")
    if not all(math.isfinite(w) for w in values):
        raise ValueError(f"{key}={values} has a weight that is not a finite number: weights must be finite")
    if any(w < 0 for w in values):
        raise ValueError(f"{key}={values}: weights must be >= 0 (non-negative: a point on the simplex)")
    total = sum(values)
    if abs(total - 1.0) > SIMPLEX_TOLERANCE:
        fix = (f"normalise them, e.g. divide each by their sum: {[round(w / total, 6) for w in values]}" if total > 0
               else "give at least one positive weight")
        raise ValueError(f"{key}={values} sums to {total:.6g}, not 1: weights must sum to 1 (a point on the "
                         f"simplex), got sum {total:.6g}; {fix}")
    return values
