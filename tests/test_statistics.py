"""mpo.core.stats against plain loop implementations and textbook values."""

from __future__ import annotations

import math
import random

import pytest
import torch

from mpo.core.stats import Difference, paired_differences, paired_draws, stratified_indices, t_interval, t_quantile


def plain_percentile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's and torch's default)."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])


def plain_paired(method: list[list[list[float]]], baseline: list[list[list[float]]], resamples: int,
                 level: float, seed: int) -> list[tuple[float, float, float]]:
    """method[s][k][i]: seed s, objective k, prompt i. The generator draws are the documented ones (one
    generator, one [R, N_s] draw per seed in order); everything else is loops."""
    gen = torch.Generator().manual_seed(seed)
    draws = [torch.randint(0, len(m[0]), (resamples, len(m[0])), generator=gen).tolist() for m in method]

    def stats(rows_by_seed):  # rows_by_seed[s] = the prompt indices used for seed s
        per_seed = []
        for s, rows in enumerate(rows_by_seed):
            ours = [sum(method[s][k][i] for i in rows) / len(rows) for k in range(len(method[s]))]
            theirs = [sum(baseline[s][k][i] for i in rows) / len(rows) for k in range(len(baseline[s]))]
            per_seed.append([min(ours) - min(theirs)] + [a - b for a, b in zip(ours, theirs)])
        return [sum(col) / len(col) for col in zip(*per_seed)]

    point = stats([list(range(len(m[0]))) for m in method])
    resampled = [stats([draws[s][r] for s in range(len(method))]) for r in range(resamples)]
    alpha = (1 - level) / 2
    return [(point[j], plain_percentile([row[j] for row in resampled], alpha),
             plain_percentile([row[j] for row in resampled], 1 - alpha)) for j in range(len(point))]


def random_runs(rng: random.Random, sizes: list[int], k: int, shift: float = 0.0):
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    return [[[min(1.0, rng.choice(grid) + shift) for _ in range(n)] for _ in range(k)] for n in sizes]


@pytest.mark.parametrize("sizes, k, seed", [([25], 2, 0), ([20, 20, 20], 3, 1), ([12, 17], 2, 2), ([9], 1, 3)])
def test_paired_bootstrap_matches_plain_loops(sizes, k, seed):
    rng = random.Random(seed)
    method, baseline = random_runs(rng, sizes, k, 0.1), random_runs(rng, sizes, k)
    got = paired_differences([torch.tensor(m, dtype=torch.float64) for m in method],
                             [torch.tensor(b, dtype=torch.float64) for b in baseline],
                             resamples=300, level=0.9, seed=seed)
    want = plain_paired(method, baseline, 300, 0.9, seed)
    assert len(got) == k + 1
    for difference, (mean, low, high) in zip(got, want):
        assert (difference.mean, difference.low, difference.high) == pytest.approx((mean, low, high), abs=1e-12)


def test_pairing_uses_the_same_prompts_for_both_runs():
    """A method that is the baseline plus 0.1 on every prompt differs by exactly 0.1 in every resample:
    only a joint draw gives a zero-width CI (independent draws would spread it)."""
    gen = torch.Generator().manual_seed(0)
    baseline = [torch.rand(2, 30, generator=gen, dtype=torch.float64) * 0.8 for _ in range(2)]
    method = [b + 0.1 for b in baseline]
    for difference in paired_differences(method, baseline, resamples=200, level=0.95):
        assert difference.mean == pytest.approx(0.1) and difference.high - difference.low < 1e-12
        assert difference.significant
    same = paired_differences(baseline, baseline, resamples=200, level=0.95)
    assert all(d == Difference(0.0, 0.0, 0.0) and not d.significant for d in same)


def test_minimum_is_taken_per_run_and_seeds_are_strata():
    # seed 0: the method is worst on objective 1, the baseline on objective 0
    method = [torch.tensor([[0.9, 0.9], [0.4, 0.4]]), torch.tensor([[0.6, 0.6], [0.6, 0.6]])]
    baseline = [torch.tensor([[0.2, 0.2], [0.8, 0.8]]), torch.tensor([[0.5, 0.5], [0.5, 0.5]])]
    point = paired_draws(method, baseline, [torch.arange(2)[None]] * 2)[0]
    # min: ((0.4 - 0.2) + (0.6 - 0.5)) / 2; objectives: ((0.7) + 0.1) / 2 and ((-0.4) + 0.1) / 2
    assert point.tolist() == pytest.approx([0.15, 0.4, -0.15])
    indices = stratified_indices([3, 5], 4, seed=9)
    gen = torch.Generator().manual_seed(9)
    assert [i.shape for i in indices] == [(4, 3), (4, 5)]
    assert torch.equal(indices[0], torch.randint(0, 3, (4, 3), generator=gen))
    assert torch.equal(indices[1], torch.randint(0, 5, (4, 5), generator=gen))
    assert Difference(0.1, -0.01, 0.2).significant is False and Difference(-0.1, -0.2, -0.01).significant


@pytest.mark.parametrize("df, level, table", [(1, 0.95, 12.7062), (2, 0.95, 4.3027), (3, 0.95, 3.1824),
                                              (4, 0.95, 2.7764), (9, 0.95, 2.2622), (30, 0.95, 2.0423),
                                              (5, 0.90, 2.0150), (2, 0.99, 9.9248), (120, 0.95, 1.9799)])
def test_t_quantile_matches_tables(df, level, table):
    assert t_quantile(level, df) == pytest.approx(table, abs=1e-4)


def test_t_interval_against_plain_formula():
    values = [0.41, 0.47, 0.52]
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    low, high = t_interval(values, 0.95)
    assert (low, high) == pytest.approx((mean - 4.302653 * sd / math.sqrt(3), mean + 4.302653 * sd / math.sqrt(3)))
    assert all(math.isnan(x) for x in t_interval([0.5], 0.95) + t_interval([0.5, math.nan], 0.95))
    assert t_interval([0.5, 0.5], 0.95) == (0.5, 0.5)
    with pytest.raises(ValueError, match="df >= 1"):
        t_quantile(0.95, 0)
