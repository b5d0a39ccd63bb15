"""BSMD and the exact outer problem (mpo/core/bsmd.py) against plain references, brute force, and the exact
minimiser on an enumerable problem built from tiny HF GPT-2 policies (the acceptance test)."""

from __future__ import annotations

import math

import pytest
import torch

from mpo.core import bsmd
from tests.enumerable import all_responses, random_policy, sequence_logprobs

# ----------------------------------------------------------------------------------------- references


def loop_objective_and_gradient(log_ratios, weights, mask):
    """F̂ and ∂F̂/∂λ with Python floats and loops: the definition, read literally."""
    n_prompts, m_responses, n_objectives = log_ratios.shape
    lam = [float(w) for w in weights]
    total, grad = 0.0, [0.0] * n_objectives
    for x in range(n_prompts):
        rows = [[float(v) for v in log_ratios[x, j]] for j in range(m_responses) if mask[x, j]]
        # 0·(−inf) = 0: an objective with λ_k = 0 does not see the response at all.
        scores = [sum(l_k * v for l_k, v in zip(lam, row) if l_k > 0) for row in rows]
        top = max(scores)
        norm = sum(math.exp(s - top) for s in scores)
        total += top + math.log(norm) - math.log(len(rows))
        for row, s in zip(rows, scores):
            p = math.exp(s - top) / norm
            if p > 0:
                for k in range(n_objectives):
                    grad[k] += p * row[k] / n_prompts
    return total / n_prompts, torch.tensor(grad, dtype=torch.float64)


def random_simplex(k: int, gen: torch.Generator, zero: int | None = None) -> torch.Tensor:
    w = -torch.rand(k, generator=gen, dtype=torch.float64).log()  # Dirichlet(1)
    if zero is not None:
        w[zero] = 0.0
    return w / w.sum()


def random_problem(shape, seed, *, masked=False, neg_inf=False, scale=2.0):
    """log_ratios [N, m, K] (+ mask): padded rows hold garbage; −inf entries spare row 0 of every prompt."""
    gen = torch.Generator().manual_seed(seed)
    n_prompts, m_responses, _ = shape
    log_ratios = scale * torch.randn(shape, generator=gen, dtype=torch.float64)
    mask = torch.ones(n_prompts, m_responses, dtype=torch.bool)
    if masked:
        mask = torch.rand(n_prompts, m_responses, generator=gen) < 0.7
        mask[:, 0] = True
        log_ratios[~mask] = float("nan")  # must be ignored
    if neg_inf:
        hit = torch.rand(shape, generator=gen) < 0.15
        hit[:, 0] = False
        log_ratios[hit & mask[..., None]] = -math.inf
    return log_ratios, mask


SHAPES = [(1, 1, 1), (3, 5, 2), (4, 7, 3), (2, 6, 5)]


# ------------------------------------------------------------------------------- objective / gradient


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("masked,neg_inf", [(False, False), (True, False), (True, True)])
def test_objective_and_gradient_match_loop_reference(shape, seed, masked, neg_inf):
    log_ratios, mask = random_problem(shape, seed, masked=masked, neg_inf=neg_inf)
    gen = torch.Generator().manual_seed(100 + seed)
    for zero in [None] + ([shape[2] - 1] if shape[2] > 1 else []):  # interior, and a face (0·−inf)
        weights = random_simplex(shape[2], gen, zero)
        want_f, want_g = loop_objective_and_gradient(log_ratios, weights, mask)
        assert bsmd.objective(log_ratios, weights, mask) == pytest.approx(want_f, rel=1e-12, abs=1e-12)
        torch.testing.assert_close(bsmd.gradient(log_ratios, weights, mask), want_g, rtol=1e-12, atol=1e-12)


def test_response_ruled_out_by_a_weightless_objective_gives_minus_inf_derivative():
    log_ratios = torch.tensor([[[0.5, -math.inf], [1.0, 2.0]]], dtype=torch.float64)  # [1, 2, 2]
    weights = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert math.isfinite(bsmd.objective(log_ratios, weights))
    grad = bsmd.gradient(log_ratios, weights)
    assert math.isfinite(grad[0]) and grad[1] == -math.inf
    # With λ_2 > 0 the first response is ruled out and only the second one counts.
    inside = torch.tensor([0.5, 0.5], dtype=torch.float64)
    torch.testing.assert_close(bsmd.gradient(log_ratios, inside), torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert bsmd.objective(log_ratios, inside) == pytest.approx(1.5 - math.log(2))


def test_gradient_matches_autograd_of_objective():
    log_ratios, mask = random_problem((6, 9, 4), seed=3, masked=True, neg_inf=True)
    weights = random_simplex(4, torch.Generator().manual_seed(7)).requires_grad_()
    bsmd.per_prompt_objective(log_ratios, weights, mask).mean().backward()
    torch.testing.assert_close(bsmd.gradient(log_ratios, weights.detach(), mask), weights.grad, rtol=1e-10, atol=1e-12)


def test_one_hot_weights_give_log_mean_ratio():
    log_ratios, mask = random_problem((5, 8, 3), seed=4, masked=True)
    for k in range(3):
        want = torch.stack([log_ratios[x, mask[x], k].exp().mean().log() for x in range(5)]).mean()
        assert bsmd.objective(log_ratios, torch.eye(3, dtype=torch.float64)[k], mask) == pytest.approx(want.item())


def test_objective_is_convex_along_random_segments():
    log_ratios, mask = random_problem((7, 12, 3), seed=5, masked=True, neg_inf=True)
    gen = torch.Generator().manual_seed(5)
    for _ in range(20):
        a, b = random_simplex(3, gen), random_simplex(3, gen)
        fa, fb = bsmd.objective(log_ratios, a, mask), bsmd.objective(log_ratios, b, mask)
        for t in torch.linspace(0, 1, 11, dtype=torch.float64):
            mid = bsmd.objective(log_ratios, t * a + (1 - t) * b, mask)
            assert mid <= t * fa + (1 - t) * fb + 1e-12


@pytest.mark.parametrize(
    "weights,match",
    [([0.5, 0.5], "length K=3"), ([0.5, 0.6, -0.1], "non-negative"), ([0.3, 0.3, 0.3], "sum to 1"), ([[1.0, 0, 0]], "length")],
)
def test_weights_must_be_on_the_simplex(weights, match):
    log_ratios, _ = random_problem((2, 3, 3), seed=0)
    with pytest.raises(ValueError, match=match):
        bsmd.objective(log_ratios, torch.tensor(weights, dtype=torch.float64))


def test_bad_inputs_raise_clear_errors():
    log_ratios, _ = random_problem((2, 3, 2), seed=0)
    weights = torch.tensor([0.5, 0.5])
    with pytest.raises(ValueError, match="3-D"):
        bsmd.objective(log_ratios[0], weights)
    with pytest.raises(ValueError, match="no real response"):
        bsmd.objective(log_ratios, weights, mask=torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="mask"):
        bsmd.objective(log_ratios, weights, mask=torch.ones(2, 4, dtype=torch.bool))
    broken = log_ratios.clone()
    broken[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"log_ratios\[1, 2, 0\]"):
        bsmd.gradient(broken, weights)
    ruled_out = log_ratios.clone()
    ruled_out[0, :, 1] = -math.inf  # prompt 0: every response impossible under π_2
    assert bsmd.objective(ruled_out, weights) == -math.inf
    with pytest.raises(ValueError, match="prompt 0"):
        bsmd.gradient(ruled_out, weights)
    with pytest.raises(ValueError, match="prompt 0"):
        bsmd.solve_weights(ruled_out, steps=5)


def test_certificate_is_beta_times_gradient_and_levels_out_at_the_optimum():
    log_ratios, _ = random_problem((16, 32, 3), seed=6, scale=1.0)
    weights = random_simplex(3, torch.Generator().manual_seed(6))
    torch.testing.assert_close(bsmd.certificate(log_ratios, weights, beta=0.5), 0.5 * bsmd.gradient(log_ratios, weights))
    # The minimiser of F̂ itself: solve_exact on the samples, each weighted 1/m (uniform "reference").
    optimum = bsmd.solve_exact(torch.zeros(16, 32), log_ratios)
    assert optimum.min() > 0.05, "this problem was picked to have an interior optimum"
    assert bsmd.certificate_gap(log_ratios, optimum, beta=0.5) < 1e-6
    assert bsmd.certificate_gap(log_ratios, torch.full((3,), 1 / 3)) > 1e-2
    assert bsmd.duality_gap(bsmd.gradient(log_ratios, optimum), optimum) < 1e-10


# ------------------------------------------------------------------------------------------- exact


def random_enumerated(n_prompts, n_responses, k, seed, sharpness=3.0):
    """An exact problem from random categorical policies: (ref_logprobs [X, Y], log_ratios [X, Y, K])."""
    gen = torch.Generator().manual_seed(seed)
    ref = torch.log_softmax(torch.randn(n_prompts, n_responses, generator=gen, dtype=torch.float64), -1)
    policies = torch.log_softmax(sharpness * torch.randn(n_prompts, n_responses, k, generator=gen, dtype=torch.float64), 1)
    return ref, policies - ref[..., None]


def grid_minimum(ref, log_ratios, points):
    """(min F, argmin) over rows of ``points`` [G, K], vectorised."""
    values = torch.logsumexp(ref[..., None] + log_ratios @ points.T, dim=1).mean(0)  # [G]
    best = int(values.argmin())
    return values[best].item(), points[best]


def simplex_grid(k, resolution):
    if k == 2:
        t = torch.linspace(0, 1, resolution, dtype=torch.float64)
        return torch.stack([t, 1 - t], 1)
    i, j = torch.meshgrid(torch.arange(resolution + 1), torch.arange(resolution + 1), indexing="ij")
    keep = i + j <= resolution
    a, b = i[keep].double() / resolution, j[keep].double() / resolution
    return torch.stack([a, b, 1 - a - b], 1)


@pytest.mark.parametrize("k,resolution", [(2, 10_000), (3, 400)])
@pytest.mark.parametrize("seed", [0, 1])
def test_solve_exact_beats_brute_force_grid(k, resolution, seed):
    ref, log_ratios = random_enumerated(4, 20, k, seed)
    optimum = bsmd.solve_exact(ref, log_ratios)
    grid_value, grid_point = grid_minimum(ref, log_ratios, simplex_grid(k, resolution))
    value = bsmd.exact_objective(ref, log_ratios, optimum)
    assert optimum.sum().item() == pytest.approx(1.0, abs=1e-12) and optimum.min() >= 0
    assert value <= grid_value + 1e-12  # nothing on the grid is better
    # ...and the grid's best lies one cell from it: F − F* ≈ ½ δᵀ∇²Fδ with |δ| ~ one cell, and λ_max(∇²F)
    # is ≈ 7-11 on these problems, so 20/resolution² bounds the grid's own error.
    assert grid_value - value <= 20.0 / resolution**2
    assert (optimum - grid_point).abs().sum() <= 2.0 / resolution


def test_solve_exact_finds_a_boundary_optimum():
    """π_3 ∝ sqrt(π_1 π_2) adds nothing but a log-normaliser penalty, so λ_3* = 0 (Hölder)."""
    ref, two = random_enumerated(3, 15, 2, seed=2)
    policies = two + ref[..., None]
    middle = torch.log_softmax(policies.mean(-1), dim=1)
    log_ratios = torch.cat([two, (middle - ref)[..., None]], -1)
    optimum = bsmd.solve_exact(ref, log_ratios)
    grid_value, _ = grid_minimum(ref, log_ratios, simplex_grid(3, 300))
    assert optimum[2] < 1e-6 and optimum[:2].min() > 0.05
    assert bsmd.exact_objective(ref, log_ratios, optimum) <= grid_value + 1e-12
    grad = bsmd.exact_gradient(ref, log_ratios, optimum)
    assert grad[2] > grad[:2].max()  # KKT: the left-out objective is better served than the others


def test_exact_objective_is_zero_at_vertices_and_ignores_the_reference():
    """F(λ) = E_x log Σ_y Π_k π_k^{λ_k}: 0 at a vertex, and π_ref drops out."""
    ref, log_ratios = random_enumerated(3, 10, 3, seed=3)
    policies = log_ratios + ref[..., None]
    other_ref = torch.log_softmax(torch.randn(3, 10, generator=torch.Generator().manual_seed(9), dtype=torch.float64), 1)
    weights = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    for k in range(3):
        assert bsmd.exact_objective(ref, log_ratios, torch.eye(3, dtype=torch.float64)[k]) == pytest.approx(0.0, abs=1e-12)
    assert bsmd.exact_objective(other_ref, policies - other_ref[..., None], weights) == pytest.approx(
        bsmd.exact_objective(ref, log_ratios, weights), abs=1e-12
    )
    assert bsmd.exact_objective(ref, log_ratios, weights) < 0  # Hölder


# -------------------------------------------------------------------------------------------- BSMD


def test_bsmd_converges_to_the_minimiser_of_the_sample_objective():
    log_ratios, mask = random_problem((64, 32, 3), seed=8, scale=1.0, masked=True)
    result = bsmd.solve_weights(log_ratios, steps=2000, mask=mask)
    ref = torch.where(mask, 0.0, -math.inf)  # rows weighted 1/m_x: the exact problem *is* F̂
    optimum = bsmd.solve_exact(ref, torch.where(mask[..., None], log_ratios, 0.0))
    assert (result.weights - optimum).abs().sum() < 5e-3
    assert (result.average - optimum).abs().sum() < 5e-3  # the interior optimum needs no face step
    assert result.weights.sum().item() == pytest.approx(1.0, abs=1e-12) and result.weights.min() >= 0
    assert result.trace.shape == (2000,) and result.trace_full
    assert result.trace[-1].item() == pytest.approx(bsmd.objective(log_ratios, result.average, mask), abs=1e-12)
    assert result.trace[-1] <= result.trace[0]


@pytest.mark.parametrize("tail_fraction", [1.0, 0.5])
def test_bsmd_update_and_average_match_a_hand_written_loop(tail_fraction):
    log_ratios, mask = random_problem((6, 5, 3), seed=12, masked=True)
    eta, iterates = 0.7, [torch.full((3,), 1 / 3, dtype=torch.float64)]
    for _ in range(3):  # λ ← λ⊙exp(−η v)/Z with the full-data gradient
        unnormalised = iterates[-1] * torch.exp(-eta * bsmd.gradient(log_ratios, iterates[-1], mask))
        iterates.append(unnormalised / unnormalised.sum())
    result = bsmd.solve_weights(log_ratios, steps=3, step_size=eta, mask=mask, tail_fraction=tail_fraction)
    # The gradients were taken at λ_0, λ_1, λ_2; the tail half of three is the last two.
    averaged = iterates[:3] if tail_fraction == 1.0 else iterates[1:3]
    torch.testing.assert_close(result.average, torch.stack(averaged).mean(0), rtol=0, atol=1e-14)
    torch.testing.assert_close(result.last, iterates[3], rtol=0, atol=1e-14)
    assert result.trace[0].item() == pytest.approx(bsmd.objective(log_ratios, iterates[0], mask), abs=1e-14)
    # The answer is the average after the face step (three steps are far from converged, so it moves), and
    # without that step it is the average itself.
    assert bsmd.objective(log_ratios, result.weights, mask) <= bsmd.objective(log_ratios, result.average, mask)
    plain = bsmd.solve_weights(log_ratios, steps=3, step_size=eta, mask=mask, tail_fraction=tail_fraction,
                               face_step=False)
    assert torch.equal(plain.weights, result.average)


def test_bsmd_is_reproducible_and_seeded():
    log_ratios, _ = random_problem((40, 8, 3), seed=9, scale=1.0)
    a = bsmd.solve_weights(log_ratios, steps=300, batch_size=5, seed=1)
    b = bsmd.solve_weights(log_ratios, steps=300, batch_size=5, seed=1)
    c = bsmd.solve_weights(log_ratios, steps=300, batch_size=5, seed=2)
    assert torch.equal(a.weights, b.weights) and torch.equal(a.trace, b.trace) and torch.equal(a.last, b.last)
    assert not torch.equal(a.weights, c.weights)


def test_bsmd_ignores_a_per_prompt_offset():
    """ℓ + c(x) shifts F̂ by mean c and v by a constant: mirror descent (and the default η) must not move."""
    log_ratios, _ = random_problem((10, 6, 3), seed=10, scale=1.0)
    offset = 5 * torch.randn(10, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plain, shifted = bsmd.solve_weights(log_ratios, steps=200), bsmd.solve_weights(log_ratios + offset, steps=200)
    assert shifted.step_size == pytest.approx(plain.step_size, rel=1e-12)
    torch.testing.assert_close(shifted.weights, plain.weights, rtol=0, atol=1e-12)


def test_bsmd_step_size_and_edge_cases():
    log_ratios, _ = random_problem((5, 4, 3), seed=11, neg_inf=True)
    result = bsmd.solve_weights(log_ratios, steps=100)
    assert torch.isfinite(result.weights).all() and torch.isfinite(result.trace).all()
    assert result.step_size == pytest.approx(bsmd.default_step_size(log_ratios, 100))
    assert bsmd.default_step_size(log_ratios, 400) == pytest.approx(result.step_size / 2)
    assert bsmd.solve_weights(log_ratios, steps=10, step_size=0.3).step_size == 0.3
    on_face = bsmd.solve_weights(log_ratios, steps=50, init=torch.tensor([0.5, 0.5, 0.0]))
    assert on_face.weights[2] == 0 and on_face.last[2] == 0
    single = bsmd.solve_weights(log_ratios[..., :1], steps=10)
    torch.testing.assert_close(single.weights, torch.ones(1, dtype=torch.float64))
    for bad in ({"steps": 0}, {"steps": 10, "batch_size": 6}, {"steps": 10, "tail_fraction": 0.0}):
        with pytest.raises(ValueError):
            bsmd.solve_weights(log_ratios, **bad)


def dominated_problem(k, seed, n_prompts=256, m_responses=16, noise=0.5):
    """[256, 16, K] log-ratios whose last objective is dominated: ℓ_K = mean of the others + noise.

    Averaging ℓ_1..ℓ_{K−1} already gives what ℓ_K offers, and the noise only adds to log mean exp, so
    λ_K* = 0 (for K = 2, λ* = (1, 0)); but barely so: ∂F̂/∂λ_K exceeds the support's derivative at λ* by
    only 0.002 (K = 2) and 0.015 (K = 3), so mirror descent shrinks λ_K slowly (by ~exp(−η·margin) a step).
    The shape is the MPO stage's default (256 prompts × 16 samples).
    """
    gen = torch.Generator().manual_seed(seed)
    others = torch.randn(n_prompts, m_responses, k - 1, generator=gen, dtype=torch.float64)
    extra = noise * torch.randn(n_prompts, m_responses, 1, generator=gen, dtype=torch.float64)
    return torch.cat([others, others.mean(-1, keepdim=True) + extra], -1)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("batch_size", [None, 64])
def test_bsmd_reaches_a_boundary_optimum(k, batch_size):
    """With the MPO stage's settings (2,000 steps, default η, batches of 64 or all 256 prompts), BSMD lands
    within L1 0.02 of the exact minimiser when that has λ_K = 0, and puts exactly 0 there.

    Before the face step (`mpo.core.bsmd`'s docstring) the tail average missed it by L1 0.054 / 0.054 (K = 2,
    full / mini-batch) and 0.067 / 0.066 (K = 3): a mirror-descent iterate never reaches a face, so neither
    does their average.
    """
    log_ratios = dominated_problem(k, seed=1)
    exact = bsmd.solve_empirical(log_ratios)
    assert exact.converged and exact.weights[-1] == 0 and exact.weights[:-1].min() > 0.4
    result = bsmd.solve_weights(log_ratios, steps=2000, batch_size=batch_size, seed=0)
    assert (result.weights - exact.weights).abs().sum() <= 0.02
    assert result.weights[-1] == 0  # on the face, exactly
    assert result.weights.sum().item() == pytest.approx(1.0, abs=1e-12) and result.weights.min() >= 0
    assert bsmd.objective(log_ratios, result.weights) <= bsmd.objective(log_ratios, result.average)


@pytest.mark.parametrize("batch_size", [None, 64])
@pytest.mark.parametrize("seed", [2, 3])
def test_bsmd_reaches_a_vertex_and_an_edge_beside_a_small_weight(seed, batch_size):
    """K = 3 with ℓ_2, ℓ_3 = ℓ_1 + noise + a small shift: on seed 2 λ* is the vertex e_1, on seed 3 it is
    (0.989, 0.011, 0), one weight 0 and one small. The tail average missed them by L1 0.094 / 0.096 and
    0.113 / 0.121 (full / mini-batch); the face step's line search also settles the small weight."""
    gen = torch.Generator().manual_seed(seed)
    first = torch.randn(256, 16, 1, generator=gen, dtype=torch.float64)
    noise = 0.4 * torch.randn(256, 16, 2, generator=gen, dtype=torch.float64)
    log_ratios = torch.cat([first, first + noise + torch.tensor([0.01, 0.02], dtype=torch.float64)], -1)
    exact = bsmd.solve_empirical(log_ratios)
    assert exact.weights[2] == 0 and (exact.weights[1] == 0) == (seed == 2) and exact.weights[0] > 0.9
    result = bsmd.solve_weights(log_ratios, steps=2000, batch_size=batch_size, seed=0)
    assert (result.weights - exact.weights).abs().sum() <= 0.02
    assert result.weights[2] == 0


@pytest.mark.parametrize("batch_size", [None, 64])
def test_bsmd_approaches_a_face_that_an_impossible_response_makes_f_jump_on(batch_size):
    """Where π_3 rules out responses (ℓ_3 = −inf), F̂ jumps up on the face λ_3 = 0 (those responses count
    again there): the infimum is only approached from inside (the exact solver stops at λ_3 = 5e-17). The
    face step must not drop λ_3, and still lands within 0.02 (the tail average: 0.080 / 0.081, full /
    mini-batch), with importance weights and padded rows in the data."""
    gen = torch.Generator().manual_seed(101)
    log_ratios = dominated_problem(3, seed=1)
    log_weights = 0.3 * torch.randn(256, 16, generator=gen, dtype=torch.float64)
    mask = torch.rand(256, 16, generator=gen) < 0.8
    mask[:, 0] = True
    ruled_out = torch.rand(256, 16, 3, generator=gen) < 0.03
    ruled_out[:, 0] = False  # every prompt keeps a response possible under all three
    log_ratios = log_ratios.masked_fill(ruled_out, -math.inf)
    exact = bsmd.solve_empirical(log_ratios, mask, log_weights)
    assert exact.converged and 0 < exact.weights[2] < 1e-12
    result = bsmd.solve_weights(log_ratios, steps=2000, batch_size=batch_size, mask=mask, log_weights=log_weights)
    assert (result.weights - exact.weights).abs().sum() <= 0.02
    assert result.weights[2] > 0
    assert bsmd.objective(log_ratios, result.weights, mask, log_weights) <= bsmd.objective(
        log_ratios, result.average, mask, log_weights)


# ------------------------------------------------------------------------------ acceptance (issue)

N_PROMPTS, M_RESPONSES = 32, 2048


@pytest.fixture(scope="module")
def enumerable_problem():
    """Exact log π(y|x) over all 5^3 responses for 32 random prompts: π_ref and three policies.

    The policies are sharpened (temperature 0.25) so that they disagree strongly: F is then curved
    enough around its minimiser that m = 2048 samples per prompt pin λ* down to ~0.005 (L1); with
    unsharpened ones the sampling error alone was 0.02-0.1. π_ref is left as it is: the exact F does not
    depend on it at all, it only sets the variance of the sample estimate.
    """
    prompts = torch.randint(1, 5, (N_PROMPTS, 2), generator=torch.Generator().manual_seed(0))
    responses = all_responses()
    ref = sequence_logprobs(random_policy(0), prompts, responses).double()
    policies = [sequence_logprobs(random_policy(seed, temperature=0.25), prompts, responses).double() for seed in (1, 2, 3)]
    return ref, torch.stack(policies, -1) - ref[..., None]


def sample_log_ratios(ref, log_ratios, m, seed):
    """m responses per prompt drawn from π_ref (over the enumerated space): log_ratios [N, m, K]."""
    index = torch.multinomial(ref.exp(), m, replacement=True, generator=torch.Generator().manual_seed(seed))
    return torch.gather(log_ratios, 1, index[..., None].expand(-1, -1, log_ratios.shape[2]))


@pytest.mark.parametrize("k", [2, 3])
def test_bsmd_recovers_the_exact_minimiser_on_an_enumerable_problem(enumerable_problem, k):
    ref, log_ratios = enumerable_problem[0], enumerable_problem[1][..., :k]
    exact = bsmd.solve_exact(ref, log_ratios)
    assert exact.min() > 0.1, "the test needs an interior minimiser"
    grad = bsmd.exact_gradient(ref, log_ratios, exact)
    assert (grad.max() - grad.min()).item() < 1e-6  # the certificate: equal normalised rewards
    samples = sample_log_ratios(ref, log_ratios, M_RESPONSES, seed=1)
    result = bsmd.solve_weights(samples, steps=1000)
    assert (result.weights - exact).abs().sum() <= 0.02
    gap = bsmd.exact_objective(ref, log_ratios, result.weights) - bsmd.exact_objective(ref, log_ratios, exact)
    assert 0 <= gap <= 1e-3


def test_minibatch_bsmd_converges_on_the_enumerable_problem(enumerable_problem):
    ref, log_ratios = enumerable_problem
    exact = bsmd.solve_exact(ref, log_ratios)
    samples = sample_log_ratios(ref, log_ratios, M_RESPONSES, seed=2)
    result = bsmd.solve_weights(samples, steps=2000, batch_size=8, seed=0, full_trace=False)
    assert not result.trace_full and torch.isfinite(result.trace).all()
    assert (result.weights - exact).abs().sum() <= 0.03
    gap = bsmd.exact_objective(ref, log_ratios, result.weights) - bsmd.exact_objective(ref, log_ratios, exact)
    assert 0 <= gap <= 1e-3
