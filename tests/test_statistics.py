"""mpo.core.stats against plain loop implementations and textbook values."""

from __future__ import annotations

import math
import random

import pytest
import torch

from mpo.core.stats import (Difference, SeedLevelDifference, hierarchical_indices, paired_differences, paired_draws,
                            seed_level_differences, stratified_indices, t_interval, t_quantile)


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


# ------------------------------------------------------------------------------------ seed-level paired test
T_TWO_SIDED = {(0.95, 1): 12.706204736174707, (0.95, 2): 4.302652729911275, (0.95, 3): 3.182446305284263,
               (0.9, 1): 6.313751514675041, (0.9, 2): 2.919985580355516, (0.9, 3): 2.353363434801823}


def plain_seed_stats(method, baseline, s: int, rows: list[int]) -> list[float]:
    """Seed s's paired difference on prompt indices ``rows``: [min, objective 1, ...], by loops."""
    ours = [sum(method[s][k][i] for i in rows) / len(rows) for k in range(len(method[s]))]
    theirs = [sum(baseline[s][k][i] for i in rows) / len(rows) for k in range(len(baseline[s]))]
    return [min(ours) - min(theirs)] + [a - b for a, b in zip(ours, theirs)]


def plain_hierarchical(method, baseline, resamples: int, level: float, seed: int) -> list[tuple[float, float]]:
    """The documented generator draws (seeds [R, S], then per seed in order one [c_s, N_s] prompt draw for the
    slots that drew it, row-major); everything else is loops: per resample, per slot, the drawn seed's
    difference on its drawn prompts, averaged over slots; then percentiles."""
    n_seeds = len(method)
    gen = torch.Generator().manual_seed(seed)
    seeds = torch.randint(0, n_seeds, (resamples, n_seeds), generator=gen).tolist()
    counts = [sum(row.count(s) for row in seeds) for s in range(n_seeds)]
    prompts = [torch.randint(0, len(method[s][0]), (counts[s], len(method[s][0])), generator=gen).tolist()
               for s in range(n_seeds)]
    used = [0] * n_seeds
    resampled = []
    for r in range(resamples):
        slots = []
        for j in range(n_seeds):
            s = seeds[r][j]
            slots.append(plain_seed_stats(method, baseline, s, prompts[s][used[s]]))
            used[s] += 1
        resampled.append([sum(col) / n_seeds for col in zip(*slots)])
    alpha = (1 - level) / 2
    return [(plain_percentile([row[j] for row in resampled], alpha),
             plain_percentile([row[j] for row in resampled], 1 - alpha)) for j in range(len(resampled[0]))]


def plain_t(values: list[float], level: float) -> tuple[float, float]:
    """mean ± t · sd / √n with t from a table (not from t_quantile)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T_TWO_SIDED[(level, n - 1)] * sd / math.sqrt(n)
    return mean - half, mean + half


def as_tensors(runs):
    return [torch.tensor(r, dtype=torch.float64) for r in runs]


@pytest.mark.parametrize("sizes, k, level, seed", [([20, 20, 20], 2, 0.95, 0), ([12, 17], 3, 0.9, 1),
                                                   ([9, 9, 11, 10], 2, 0.95, 2), ([15, 15], 1, 0.9, 3)])
def test_seed_level_test_matches_plain_loops(sizes, k, level, seed):
    rng = random.Random(seed)
    method, baseline = random_runs(rng, sizes, k, 0.1), random_runs(rng, sizes, k)
    got = seed_level_differences(as_tensors(method), as_tensors(baseline), resamples=250, level=level, seed=seed)
    boot = plain_hierarchical(method, baseline, 250, level, seed)
    per_seed = [plain_seed_stats(method, baseline, s, list(range(n))) for s, n in enumerate(sizes)]
    prompt_level = paired_differences(as_tensors(method), as_tensors(baseline), resamples=50, level=level)
    assert len(got) == k + 1
    for j, (d, (low, high)) in enumerate(zip(got, boot)):
        column = [row[j] for row in per_seed]
        assert d.per_seed == pytest.approx(column, abs=1e-12)
        assert d.mean == pytest.approx(prompt_level[j].mean, abs=1e-12)  # the same point difference
        assert (d.low, d.high) == pytest.approx((low, high), abs=1e-12)
        assert (d.t_low, d.t_high) == pytest.approx(plain_t(column, level), abs=1e-9)
        assert d.defined and d.significant == ((low > 0 and d.t_low > 0) or (high < 0 and d.t_high < 0))


def test_hierarchical_draw_layout():
    seeds, prompts = hierarchical_indices([3, 5, 4], 6, seed=7)
    gen = torch.Generator().manual_seed(7)
    assert torch.equal(seeds, torch.randint(0, 3, (6, 3), generator=gen))
    for s, n in enumerate([3, 5, 4]):
        count = int((seeds == s).sum())
        assert torch.equal(prompts[s], torch.randint(0, n, (count, n), generator=gen))


def test_a_difference_constant_across_seeds_survives_the_seed_level_test():
    """Baselines differ from seed to seed, the method is each seed's baseline plus 0.08 on every prompt: every
    seed-level interval is the point 0.08."""
    gen = torch.Generator().manual_seed(1)
    baseline = [torch.rand(2, 40, generator=gen, dtype=torch.float64) * 0.6 + 0.3 * s / 2 for s in range(3)]
    method = [b + 0.08 for b in baseline]
    for d in seed_level_differences(method, baseline, resamples=300, level=0.95):
        assert (d.mean, d.low, d.high, d.t_low, d.t_high) == pytest.approx((0.08,) * 5, abs=1e-12)
        assert d.significant is True


def test_seed_spread_is_significant_over_prompts_but_not_over_seeds():
    """Per seed the method is the baseline plus +0.30, −0.05, +0.25 with small prompt noise: the prompt-level CI
    (conditioning on these seeds) is narrow and excludes 0; both seed-level intervals include 0."""
    gen = torch.Generator().manual_seed(2)
    baseline = [torch.rand(2, 200, generator=gen, dtype=torch.float64) * 0.5 for _ in range(3)]
    method = [b + shift + 0.01 * torch.randn(2, 200, generator=gen, dtype=torch.float64)
              for b, shift in zip(baseline, [0.30, -0.05, 0.25])]
    prompt_level = paired_differences(method, baseline, resamples=400, level=0.95)
    seed_level = seed_level_differences(method, baseline, resamples=400, level=0.95)
    for p, d in zip(prompt_level, seed_level):
        assert p.significant and p.high - p.low < 0.01
        assert d.low < 0 < d.high and d.t_low < 0 < d.t_high and d.significant is False
        assert d.low == pytest.approx(-0.05, abs=0.01) and d.high == pytest.approx(0.30, abs=0.01)


def test_one_seed_has_no_seed_level_test():
    method, baseline = [torch.full((2, 10), 0.9)], [torch.full((2, 10), 0.1)]
    d = seed_level_differences(method, baseline, resamples=50, level=0.95)[0]
    assert d.mean == pytest.approx(0.8) and d.per_seed == pytest.approx((0.8,))
    assert all(math.isnan(x) for x in (d.low, d.high, d.t_low, d.t_high))
    assert not d.defined and d.significant is None
    assert SeedLevelDifference(0.1, 0.01, 0.2, -0.02, 0.3, (0.1, 0.1)).significant is False
    assert SeedLevelDifference(-0.1, -0.2, -0.01, -0.3, -0.02, (-0.1, -0.1)).significant is True
