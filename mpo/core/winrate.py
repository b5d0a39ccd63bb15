"""λ by calibrated win-rates: choose the mixture that wins most often against π_ref on its worst objective.

MPO's max-min (`mpo.core.objective`) equalises *regret in nats*: for any π,
``β·E_π ℓ_k − β·KL(π‖π_ref) = −β·KL(π‖π_k)``, so λ* minimises the mixture's largest reverse KL to a single
policy. A DPO policy's implicit reward ℓ_k = log π_k/π_ref has an arbitrary scale (near-deterministic labels
let it grow without bound), so the objective whose π_k is steepest is over-served. The win-rate criterion
(``method.criterion=win_rate``) measures each objective on a scale it cannot inflate, π_k's own *ranking*:

    W_k(λ) = P_{y~π_λ, y'~π_ref}(ℓ_k(x, y) > ℓ_k(x, y')) + ½ P(ℓ_k(x, y) = ℓ_k(x, y')),

unchanged by any increasing transform of ℓ_k, and picks ``λ = argmax_{λ∈Δ_K} min_k W_k(λ)`` over the same
family π_λ ∝ Π_k π_k^{λ_k}. Everything is estimated from the cached proposal tensor the regret solve uses,
with the same importance weights (no reward model, no new samples): with ``a_j = log π_ref/q`` of sample j,

    v_j ∝ exp(a_j)                     (self-normalised weights toward π_ref),
    w_i(λ) ∝ exp(λ·ℓ_i + a_i)          (toward π_λ),
    u_k[x, i] = Σ_j v_j (1[ℓ_k,j < ℓ_k,i] + ½·1[ℓ_k,j = ℓ_k,i])   (π_ref's CDF of ℓ_k at sample i),
    Ŵ_k(λ) = Σ_x w_x Σ_i w_i(λ) u_k[x, i].

u_k is the *quantile* of sample i under π_ref, uniform on [0, 1] under π_ref for every k: the objectives share one
scale. The maximiser is found on a simplex grid (1,001 points for K = 2; a coarser one for K ≥ 3, refined by
mirror ascent on the soft minimum −τ log Σ_k exp(−Ŵ_k/τ), the best point by the true minimum kept).
min_k Ŵ_k is not concave in λ; the grid is what makes the answer global.

Pure tensor code: no models, Hydra, W&B or TRL.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mpo.core.objective import Problem, log_mixture, sampled_problem

# Grid points per edge of the simplex for K objectives (K = 2: steps of 0.001; K = 3: 0.02, 1,326 points).
_GRID_STEPS = {1: 1, 2: 1000, 3: 50, 4: 16, 5: 10}
_ASCENT_STEPS = 300
_SOFTMIN_TEMPERATURE = 0.005
# Grid points scored at once: bounds the [N, M, points] posterior.
_GRID_BLOCK = 128


@dataclass(frozen=True)
class WinRateSolution:
    """What `max_min_win_rate` returns: λ and the estimated win-rates Ŵ_k(λ) against π_ref there."""

    weights: Tensor  # [K] on the simplex
    win_rates: Tensor  # [K]

    @property
    def min_win_rate(self) -> float:
        return float(self.win_rates.min())


def reference_quantiles(problem: Problem) -> Tensor:
    """[N, M, K] u_k[x, i]: π_ref's probability that a response ranks below sample i under ℓ_k (ties ½).

    A response impossible under π_k (ℓ_k = −inf) ranks below every possible one; padded rows carry no π_ref mass.
    """
    values = problem.values
    if problem.impossible is not None:
        values = values.masked_fill(problem.impossible, -math.inf)
    reference = torch.softmax(problem.row_log_weights, dim=1)  # [N, M]; 0 on padded rows
    ranked = values.transpose(1, 2)  # [N, K, M]
    return weighted_cdf(reference[:, None].expand_as(ranked), ranked).transpose(1, 2)


def weighted_cdf(mass: Tensor, values: Tensor) -> Tensor:
    """[..., M] Σ_j mass_j·(1[values_j < values_i] + ½·1[values_j = values_i]) for every i, by sorting
    (O(M log M) per row, where comparing every pair would take M² memory)."""
    order = values.argsort(-1)
    ranked = values.gather(-1, order).contiguous()
    cumulative = torch.cat([torch.zeros_like(mass[..., :1]), mass.gather(-1, order).cumsum(-1)], -1)
    queries = values.contiguous()
    below = cumulative.gather(-1, torch.searchsorted(ranked, queries, right=False))
    at_or_below = cumulative.gather(-1, torch.searchsorted(ranked, queries, right=True))
    return 0.5 * (below + at_or_below)


def win_rates(problem: Problem, quantiles: Tensor, weights: Tensor) -> Tensor:
    """[K] Ŵ_k(λ) = Σ_x w_x Σ_i w_i(λ) u_k[x, i]; differentiable in ``weights``."""
    posterior = torch.softmax(log_mixture(problem, weights), dim=1).nan_to_num(0.0)
    return torch.einsum("n,nm,nmk->k", problem.prompt_weights, posterior, quantiles)


def grid_win_rates(problem: Problem, quantiles: Tensor, grid: Tensor) -> Tensor:
    """[G, K] Ŵ_k at every row of ``grid`` [G, K] (points of the simplex), in blocks of `_GRID_BLOCK` points."""
    out = []
    for start in range(0, grid.shape[0], _GRID_BLOCK):
        points = grid[start : start + _GRID_BLOCK]
        scores = torch.einsum("nmk,gk->nmg", problem.values, points)
        if problem.impossible is not None:
            ruled_out = torch.einsum("nmk,gk->nmg", problem.impossible.double(), (points > 0).double()) > 0
            scores = scores.masked_fill(ruled_out, -math.inf)
        posterior = torch.softmax(scores + problem.row_log_weights[..., None], dim=1).nan_to_num(0.0)
        out.append(torch.einsum("n,nmg,nmk->gk", problem.prompt_weights, posterior, quantiles))
    return torch.cat(out)


def simplex_grid(num_objectives: int, steps: int, device=None) -> Tensor:
    """[G, K] every point of Δ_K whose coordinates are multiples of 1/steps (vertices and faces included)."""
    points = [c for c in itertools.product(range(steps + 1), repeat=num_objectives - 1) if sum(c) <= steps]
    grid = torch.tensor([[*c, steps - sum(c)] for c in points], dtype=torch.float64, device=device)
    return grid / steps


def max_min_win_rate(problem: Problem, *, steps: int | None = None) -> WinRateSolution:
    """λ maximising min_k Ŵ_k(λ) over the simplex: the best grid point, refined by soft-min mirror ascent
    for K ≥ 3 (the best point by the true minimum is returned)."""
    num_objectives = problem.values.shape[2]
    quantiles = reference_quantiles(problem)
    grid = simplex_grid(num_objectives, steps or _GRID_STEPS.get(num_objectives, 6), problem.values.device)
    rates = grid_win_rates(problem, quantiles, grid)
    best = int(rates.min(1).values.argmax())
    weights, best_rates = grid[best], rates[best]
    if num_objectives >= 3:
        weights, best_rates = _softmin_ascent(problem, quantiles, weights, best_rates)
    return WinRateSolution(weights, best_rates)


def _softmin_ascent(problem: Problem, quantiles: Tensor, weights: Tensor, rates: Tensor) -> tuple[Tensor, Tensor]:
    """Entropic mirror ascent on −τ log Σ_k exp(−Ŵ_k/τ) from a grid point (pulled off the faces), with a
    step normalised by the gradient's sup-norm and decaying as 1/√t; keeps the best iterate by min_k Ŵ_k."""
    best_weights, best_rates = weights, rates
    current = (weights + 1e-3) / (1 + 1e-3 * weights.numel())
    for t in range(_ASCENT_STEPS):
        point = current.clone().requires_grad_(True)
        rates_t = win_rates(problem, quantiles, point)
        if rates_t.min() > best_rates.min():
            best_weights, best_rates = current.clone(), rates_t.detach()
        softmin = -_SOFTMIN_TEMPERATURE * torch.logsumexp(-rates_t / _SOFTMIN_TEMPERATURE, 0)
        (grad,) = torch.autograd.grad(softmin, point)
        scale = float(grad.abs().max())
        if not scale > 0:
            break
        step = 0.5 / (scale * math.sqrt(t + 1))
        current = torch.softmax(current.log() + step * grad, 0).detach()
    return best_weights, best_rates


def solve_win_rate(log_ratios: Tensor, mask: Tensor | None = None, log_weights: Tensor | None = None,
                   *, steps: int | None = None) -> WinRateSolution:
    """`max_min_win_rate` on the sample objective built from a cached tensor (as `solver.solve_empirical`)."""
    return max_min_win_rate(sampled_problem(log_ratios, mask, log_weights), steps=steps)
