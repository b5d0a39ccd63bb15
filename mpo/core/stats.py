"""The statistics behind a fair comparison, as plain functions on tensors and floats (no I/O).

- Prompt bootstrap: `bootstrap_indices` draws every resample's prompt indices at once; one draw is shared
  by all objectives (and, in a paired comparison, by both runs), so the resampled quantities stay coupled
  exactly as they are on the real prompts. `percentile_interval` turns resampled values into a CI.
- Paired differences (`stratified_indices`, `paired_draws`, `paired_differences`): method − baseline on
  the same prompts, per objective and for the minimum over objectives; across seeds a stratified bootstrap
  (prompts resampled within each seed, the difference averaged over seeds).
- Seeds: `t_interval`, the Student-t interval of a mean over a few per-seed values (`t_quantile` computes the
  quantile exactly for integer degrees of freedom, so no SciPy is needed).

torch is imported inside the functions that use it: `python -m mpo.compare` needs only the t-interval for its
table and stays quick to start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import Tensor


# ------------------------------------------------------------------------------------ prompt bootstrap
def bootstrap_indices(n: int, resamples: int, generator: torch.Generator) -> Tensor:
    """``[resamples, n]`` prompt indices drawn with replacement: row r is resample r."""
    import torch

    return torch.randint(0, n, (resamples, n), generator=generator)


def percentile_interval(draws: Tensor, level: float) -> tuple[Tensor, Tensor]:
    """The percentile interval at ``level`` of resampled values along dim 0 (linear interpolation)."""
    import torch

    alpha = (1 - level) / 2
    return torch.quantile(draws, alpha, dim=0), torch.quantile(draws, 1 - alpha, dim=0)


# ---------------------------------------------------------------------------------- paired differences
@dataclass(frozen=True)
class Difference:
    """A mean difference (method − baseline) and its bootstrap CI."""

    mean: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """The CI excludes 0."""
        return self.low > 0 or self.high < 0


def stratified_indices(sizes: Sequence[int], resamples: int, seed: int) -> list[Tensor]:
    """One ``[resamples, sizes[s]]`` index draw per stratum (seed) s, in order, from one generator."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [bootstrap_indices(n, resamples, generator) for n in sizes]


def paired_draws(method: Sequence[Tensor], baseline: Sequence[Tensor], indices: Sequence[Tensor]) -> Tensor:
    """``[R, 1 + K]``: per resample, the difference method − baseline of the minimum over objectives of the
    mean per-prompt win-rate (column 0) and of each objective's mean win-rate (columns 1..K), averaged over
    strata.

    ``method[s]`` and ``baseline[s]`` are stratum s's ``[K, N_s]`` per-prompt win-rates on the same prompts;
    ``indices[s]`` is its ``[R, N_s]`` prompt draw, the same for both runs (the pairing). Each run's minimum
    is taken over its own objective means, so the worst objective may differ between the two runs."""
    import torch

    per_stratum = []
    for ours, theirs, idx in zip(method, baseline, indices, strict=True):
        ours_mean, theirs_mean = ours[:, idx].mean(2), theirs[:, idx].mean(2)  # [K, R]
        minimum = ours_mean.min(0).values - theirs_mean.min(0).values
        per_stratum.append(torch.cat([minimum[None], ours_mean - theirs_mean]).T)
    return torch.stack(per_stratum).mean(0)


def paired_differences(method: Sequence[Tensor], baseline: Sequence[Tensor], *, resamples: int, level: float,
                       seed: int = 0) -> list[Difference]:
    """[min, objective 1, ..., objective K]: the point difference on the real prompts and a stratified paired
    percentile bootstrap CI (see `paired_draws`; the draws come from `stratified_indices`)."""
    import torch

    method = [m.double() for m in method]
    baseline = [b.double() for b in baseline]
    identity = [torch.arange(m.shape[1])[None] for m in method]
    point = paired_draws(method, baseline, identity)[0]
    draws = paired_draws(method, baseline, stratified_indices([m.shape[1] for m in method], resamples, seed))
    low, high = percentile_interval(draws, level)
    return [Difference(float(p), float(lo), float(hi)) for p, lo, hi in zip(point, low, high)]


# ------------------------------------------------------------------------------------------------ seeds
def _t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4, finite sums)."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        term, total = c, c if df > 1 else 0.0
        for j in range(3, df - 1, 2):  # c + (2/3)c³ + (2·4)/(3·5)c⁵ + ... up to c^(df-2)
            term *= (j - 1) / j * c * c
            total += term
        return 2 / math.pi * (theta + s * total)
    term, total = 1.0, 1.0
    for j in range(2, df - 1, 2):  # 1 + (1/2)c² + (1·3)/(2·4)c⁴ + ... up to c^(df-2)
        term *= (j - 1) / j * c * c
        total += term
    return s * total


def t_quantile(level: float, df: int) -> float:
    """The t with P(|T| ≤ t) = ``level`` for Student's t with ``df`` ≥ 1 degrees of freedom (bisection)."""
    if df < 1 or not 0 < level < 1:
        raise ValueError(f"t_quantile needs df >= 1 and 0 < level < 1, got df={df}, level={level}")
    low, high = 0.0, 1.0
    while _t_two_sided_mass(high, df) < level:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_two_sided_mass(mid, df) < level else (low, mid)
        if high - low < 1e-12 * max(high, 1.0):
            break
    return (low + high) / 2


def t_interval(values: Sequence[float], level: float) -> tuple[float, float]:
    """mean ± t_{n−1} · s/√n: the CI of a mean over n ≥ 2 per-seed values (NaN for fewer, or a NaN value)."""
    n = len(values)
    if n < 2 or any(math.isnan(v) for v in values):
        return math.nan, math.nan
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(level, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half
