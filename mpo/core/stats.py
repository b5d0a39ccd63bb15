"""The statistics behind a fair comparison, as plain functions on tensors and floats (no I/O).

- Prompt bootstrap: `bootstrap_indices` draws every resample's prompt indices at once; one draw is shared
  by all objectives (and, in a paired comparison, by both runs), so the resampled quantities stay coupled
  exactly as they are on the real prompts. `percentile_interval` turns resampled values into a CI.
- Paired differences (`stratified_indices`, `paired_draws`, `paired_differences`): method − baseline on
  the same prompts, per objective and for the minimum over objectives; across seeds a stratified bootstrap
  (prompts resampled within each seed, the difference averaged over seeds).
- Seeds: `t_interval`, the Student-t interval of a mean over a few per-seed values (`t_quantile` computes the
  quantile exactly for integer degrees of freedom, so no SciPy is needed).
- Seed-level paired test (`hierarchical_indices`, `hierarchical_draws`, `per_seed_differences`,
  `seed_level_differences`): the prompt-level CI above conditions on the trained seeds; these treat the seeds
  as a sample of training runs, by a hierarchical bootstrap (seeds with replacement, then prompts within each
  drawn seed, the same prompts for both runs) and by a t interval over the per-seed mean differences.

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


# ------------------------------------------------------------------------------------ seed-level paired test
@dataclass(frozen=True)
class SeedLevelDifference:
    """A mean difference (method − baseline) over seeds with two seed-level CIs: ``low``/``high`` from the
    hierarchical bootstrap and ``t_low``/``t_high`` the Student-t interval over ``per_seed`` (n − 1 dof).
    With fewer than two seeds the seed-to-seed spread is unobserved: all four bounds are NaN."""

    mean: float
    low: float
    high: float
    t_low: float
    t_high: float
    per_seed: tuple[float, ...]

    @property
    def defined(self) -> bool:
        """Both seed-level CIs exist (at least two seeds)."""
        return not any(math.isnan(x) for x in (self.low, self.high, self.t_low, self.t_high))

    @property
    def significant(self) -> bool | None:
        """Both seed-level CIs exclude 0 (on the same side); None where they are undefined (one seed)."""
        if not self.defined:
            return None
        return (self.low > 0 and self.t_low > 0) or (self.high < 0 and self.t_high < 0)


def hierarchical_indices(sizes: Sequence[int], resamples: int, seed: int) -> tuple[Tensor, list[Tensor]]:
    """The two-level draw of a hierarchical bootstrap over S = ``len(sizes)`` seeds, from one generator:
    first ``seeds`` ``[R, S]``, the seed in each of the S slots of each resample (with replacement); then for
    each seed s in order ``prompts[s]`` ``[c_s, sizes[s]]``, one fresh prompt draw (with replacement) for
    each of the c_s slots that drew s, in row-major (resample, slot) order."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    seeds = torch.randint(0, len(sizes), (resamples, len(sizes)), generator=generator)
    counts = [int((seeds == s).sum()) for s in range(len(sizes))]
    return seeds, [torch.randint(0, n, (c, n), generator=generator) for n, c in zip(sizes, counts)]


def hierarchical_draws(method: Sequence[Tensor], baseline: Sequence[Tensor], seeds: Tensor,
                       prompts: Sequence[Tensor]) -> Tensor:
    """``[R, 1 + K]``: per resample of `hierarchical_indices`, the mean over its S slots of the slot's paired
    difference (column 0 the minimum over objectives, as in `paired_draws`, then each objective) on the
    slot's drawn seed and prompts; both runs of a seed see the same prompts."""
    import torch

    resamples, slots = seeds.shape
    flat = seeds.reshape(-1)
    per_slot = torch.empty(resamples * slots, 1 + method[0].shape[0], dtype=torch.float64)
    for s, (ours, theirs, idx) in enumerate(zip(method, baseline, prompts, strict=True)):
        if idx.shape[0] == 0:
            continue
        ours_mean, theirs_mean = ours[:, idx].mean(2), theirs[:, idx].mean(2)  # [K, c_s]
        minimum = ours_mean.min(0).values - theirs_mean.min(0).values
        per_slot[flat == s] = torch.cat([minimum[None], ours_mean - theirs_mean]).T.double()
    return per_slot.reshape(resamples, slots, -1).mean(1)


def per_seed_differences(method: Sequence[Tensor], baseline: Sequence[Tensor]) -> list[list[float]]:
    """``[S][1 + K]``: each seed's paired difference on all its prompts (minimum, then each objective)."""
    import torch

    return [paired_draws([m], [b], [torch.arange(m.shape[1])[None]])[0].tolist()
            for m, b in zip(method, baseline, strict=True)]


def seed_level_differences(method: Sequence[Tensor], baseline: Sequence[Tensor], *, resamples: int,
                           level: float, seed: int = 0) -> list[SeedLevelDifference]:
    """[min, objective 1, ..., objective K]: the seed-level test of the paired differences of
    `paired_differences` (same inputs, same point difference): the percentile CI of a hierarchical bootstrap
    (`hierarchical_indices`, `hierarchical_draws`) and the Student-t interval (`t_interval`) over the per-seed
    differences (`per_seed_differences`). Fewer than two seeds: NaN bounds (no seed-to-seed spread seen)."""
    method = [m.double() for m in method]
    baseline = [b.double() for b in baseline]
    per_seed = list(zip(*per_seed_differences(method, baseline)))  # [1 + K][S]
    means = [sum(col) / len(col) for col in per_seed]
    if len(method) < 2:
        return [SeedLevelDifference(m, math.nan, math.nan, math.nan, math.nan, tuple(col))
                for m, col in zip(means, per_seed)]
    seeds, prompts = hierarchical_indices([m.shape[1] for m in method], resamples, seed)
    low, high = percentile_interval(hierarchical_draws(method, baseline, seeds, prompts), level)
    return [SeedLevelDifference(m, float(lo), float(hi), *t_interval(list(col), level), tuple(col))
            for m, lo, hi, col in zip(means, low, high, per_seed)]
