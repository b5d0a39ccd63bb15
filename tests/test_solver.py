"""The default (exact) solve and BSMD against a plain reference minimiser of F on enumerable problems:
K = 2, 3, 4, interior and boundary optima (issue: "MPO that holds when the single policies are strong")."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mpo.core import bsmd
from mpo.core.enumerable import tabular_problem
from mpo.core.objective import exact_objective
from mpo.core.solver import solve_empirical, solve_exact

# ------------------------------------------------------------------------------- the plain reference


def plain_objective(policies: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """F(λ) = mean_x log Σ_y exp(Σ_k λ_k log π_k(y|x)), straight from the definition (π_ref drops out)."""
    return torch.logsumexp((policies * weights).sum(-1), dim=1).mean()


def plain_minimiser(policies: torch.Tensor) -> torch.Tensor:
    """λ* by brute force over supports: on every face, L-BFGS in softmax coordinates; keep the points that
    satisfy the KKT conditions (no objective off the face has a lower derivative) and return the best."""
    n = policies.shape[2]
    best, best_value = None, math.inf
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            weights = _face_minimum(policies, list(support))
            weights_ = weights.clone().requires_grad_()
            plain_objective(policies, weights_).backward()
            grad = weights_.grad
            on = grad[list(support)].min()
            off = [k for k in range(n) if k not in support]
            if off and grad[off].min() < on - 1e-7:
                continue  # moving weight off the face would lower F: not the optimum
            value = plain_objective(policies, weights).item()
            if value < best_value:
                best, best_value = weights, value
    return best


def _face_minimum(policies: torch.Tensor, support: list[int]) -> torch.Tensor:
    n = policies.shape[2]
    logits = torch.zeros(len(support), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([logits], lr=1, max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        value = plain_objective(policies, _embed(logits, support, n))
        value.backward()
        return value

    for _ in range(5):
        optimiser.step(closure)
    return _embed(logits.detach(), support, n)


def _embed(logits, support, n):
    weights = torch.zeros(n, dtype=torch.float64)
    return weights.index_put((torch.tensor(support),), torch.softmax(logits, 0))


# ------------------------------------------------------------------------------------------- problems


def interior_problem(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π_ref [X, Y], log π_k [X, Y, K]) from the tabular policies (3^4 responses, 4 prompts)."""
    joint = tabular_problem(prompts=4, vocab=3, length=4, policies=k, kl=3.0, seed=seed, ref_scale=2.0).joint()
    return joint[..., 0], joint[..., 1:]


def boundary_problem(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last policy is the normalised geometric mean of the others: by Hölder it adds nothing, λ_K* = 0."""
    ref, policies = interior_problem(k - 1, seed)
    middle = torch.log_softmax(policies.mean(-1), dim=1)
    return ref, torch.cat([policies, middle[..., None]], -1)


PROBLEMS = [(kind, k, seed) for kind in ("interior", "boundary") for k in (2, 3, 4) for seed in (0, 1)
            if not (kind == "boundary" and k == 2)]


def problem(kind, k, seed):
    return (interior_problem if kind == "interior" else boundary_problem)(k, seed)


@pytest.mark.parametrize("kind,k,seed", PROBLEMS)
def test_default_solve_matches_the_plain_minimiser(kind, k, seed):
    ref, policies = problem(kind, k, seed)
    log_ratios = policies - ref[..., None]
    want = plain_minimiser(policies)
    got = solve_exact(ref, log_ratios)
    assert got.sum().item() == pytest.approx(1.0, abs=1e-12) and got.min() >= 0
    assert (got - want).abs().sum() <= 1e-3
    gap = exact_objective(ref, log_ratios, got) - plain_objective(policies, want).item()
    assert gap <= 1e-8
    if kind == "boundary":
        assert got[-1] == 0.0 and want[-1] == 0.0  # exactly on the face, not merely close to it
        assert got[:-1].min() > 0.02
    else:
        assert got.min() > 0.02


@pytest.mark.parametrize("kind,k,seed", PROBLEMS)
def test_bsmd_2000_steps_is_close_to_the_plain_minimiser(kind, k, seed):
    """BSMD on the exact F: the enumerated responses as 'samples' with importance weights π_ref(y)·Y."""
    ref, policies = problem(kind, k, seed)
    want = plain_minimiser(policies)
    n_responses = ref.shape[1]
    result = bsmd.solve_weights(policies - ref[..., None], steps=2000,
                                log_weights=torch.log_softmax(ref, 1) + math.log(n_responses))
    assert (result.weights - want).abs().sum() <= 0.02
    assert plain_objective(policies, result.weights).item() - plain_objective(policies, want).item() <= 1e-3


def test_empirical_solve_is_certified_and_no_grid_point_beats_it():
    """On an importance-weighted sample objective the returned gap is within tolerance, and none of
    4,000 random points of the simplex has a lower F̂."""
    gen = torch.Generator().manual_seed(3)
    log_ratios = torch.randn(20, 8, 3, generator=gen, dtype=torch.float64)
    log_weights = 0.5 * torch.randn(20, 8, generator=gen, dtype=torch.float64)
    solution = solve_empirical(log_ratios, log_weights=log_weights)
    assert solution.gap <= 1e-9
    assert solution.value == pytest.approx(bsmd.objective(log_ratios, solution.weights, log_weights=log_weights))
    grid = torch.distributions.Dirichlet(torch.ones(3, dtype=torch.float64)).sample((4000,))
    values = torch.tensor([bsmd.objective(log_ratios, w, log_weights=log_weights) for w in grid])
    assert solution.value <= values.min().item() + 1e-12


def test_exact_solve_reaches_relative_tolerance_on_large_log_ratios():
    """ℓ of ~100 nats (policies far from π_ref): float64 round-off scales with them, the tolerance too."""
    gen = torch.Generator().manual_seed(4)
    log_ratios = -60 + 30 * torch.randn(16, 12, 2, generator=gen, dtype=torch.float64)
    solution = solve_empirical(log_ratios)
    assert solution.gap <= 1e-10 * 200 and 0 <= solution.weights.min()
