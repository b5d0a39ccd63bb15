"""λ for the law that is decoded: MPO's game solved over the token-level family q_λ itself (``method.target=token``).

MPO's λ* is optimal for the sequence-level mixture π_λ ∝ Π_k π_k^{λ_k}, which has no tractable sampler; what
``decoding=token`` samples, K forward passes per token, is the token-level mixture

    q_λ(y|x) = Π_t softmax_v(Σ_k λ_k log π_k(v|x, y_<t))[y_t],   log q_λ(y) = Σ_k λ_k log π_k(y) − A_λ(y),

with ``A_λ(y) = Σ_t log Σ_v Π_k π_k(v|x, y_<t)^{λ_k} ≤ 0`` (Hölder): −A_λ is the λ-skewed Chernoff divergence of
the policies' next-token laws along y, paid at every step where they disagree, so q_λ is longer than π_λ and
λ* is not optimal for it. Here the game is played over {q_λ}: with the cached samples' log-ratios ℓ, their
importance log-weights ``a = log π_ref/q`` and A_λ of every sample at every point of a simplex grid,

    ŵ_i(λ) ∝ exp(λ·ℓ_i − A_λ(y_i) + a_i)                           (self-normalised weights toward q_λ),
    regret:   KL(q_λ‖π_k) = E_{q_λ}[λ·ℓ − A_λ − ℓ_k]          →  λ minimising max_k of it,
    win-rate: W_k(q_λ) = E_{q_λ}[u_k]  (u_k: `mpo.core.winrate`)   →  λ maximising min_k of it,

λ being the best grid point (A_λ is only known there). The grid is the stage's to choose: 51 points for
K = 2 (steps of 0.02), coarser for K ≥ 3 (`token_grid`).

Reweighting needs q_λ to overlap the proposal; where the policies are far apart it does not (on the embedded
task the median ESS at the chosen λ was 2-3 of 16 and the estimated win-rate 0.39 too high). `direct_token_game`
needs no weights at all: it takes draws *from* q_λ at each point of a coarse grid, and compares them with π_ref's
own samples under each ℓ_k (an unbiased win-rate) and with log q_λ(y) (an unbiased KL), λ between grid points
by linear interpolation of those curves for K = 2 (the best grid point for K ≥ 3). This is what the MPO stage
runs (`method.token_game`); the reweighted solve is the cheaper estimator where overlap holds.

Pure tensor code: no models, Hydra, W&B or TRL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mpo.core.objective import Problem, sampled_problem
from mpo.core.winrate import reference_quantiles, simplex_grid

# Grid points per edge of the simplex for K objectives (K = 2: 51 points; K = 3: 66; K = 4: 84).
_TOKEN_GRID_STEPS = {1: 1, 2: 50, 3: 10, 4: 6}
# How far above 0 a float32 sum of per-token log-normalisers may land by round-off alone.
_ROUND_OFF = 1e-3


@dataclass(frozen=True)
class TokenGameSolution:
    """The chosen grid point and the token-level law's estimated regrets and win-rates at every grid point."""

    weights: Tensor  # [K]
    index: int  # its row in the grid
    kl: Tensor  # [G, K] KL(q_λ‖π_k) estimated at every grid point
    win_rates: Tensor  # [G, K] W_k(q_λ) against π_ref under π_k's ranking
    ess: Tensor  # [G] median over prompts of the effective sample size of ŵ(λ)


def token_grid(num_objectives: int, device=None) -> Tensor:
    """[G, K] the λ at which A_λ is computed for every cached sample."""
    return simplex_grid(num_objectives, _TOKEN_GRID_STEPS.get(num_objectives, 4), device)


def check_log_normalisers(log_normalisers: Tensor, shape: tuple[int, int], grid: Tensor) -> None:
    """A_λ must be [N, M, G], finite and ≤ 0 up to round-off (the K models' per-step normaliser is ≤ 1)."""
    if log_normalisers.shape != (*shape, grid.shape[0]):
        raise ValueError(f"log_normalisers must have shape {(*shape, grid.shape[0])} ([N, M, grid points]), "
                         f"got {tuple(log_normalisers.shape)}")
    if not torch.isfinite(log_normalisers).all():
        raise ValueError("log_normalisers hold a non-finite A_λ: every sample must be possible under every π_k")
    if (log_normalisers > _ROUND_OFF + 1e-6 * log_normalisers.abs().max()).any():
        raise ValueError(f"log_normalisers hold A_λ = {float(log_normalisers.max()):.3g} > 0, impossible "
                         "(Σ_v Π_k π_k(v)^λ_k ≤ 1): the K models were not scored on the same prefixes")


def token_posterior(problem: Problem, log_normalisers: Tensor, grid: Tensor) -> Tensor:
    """[N, M, G] self-normalised weights of the cached samples toward q_λ at every grid point."""
    scores = torch.einsum("nmk,gk->nmg", problem.values, grid) - log_normalisers.to(torch.float64)
    if problem.impossible is not None:
        ruled_out = torch.einsum("nmk,gk->nmg", problem.impossible.double(), (grid > 0).double()) > 0
        scores = scores.masked_fill(ruled_out, -math.inf)
    return torch.softmax(scores + problem.row_log_weights[..., None], dim=1).nan_to_num(0.0)


def solve_token_game(problem: Problem, log_normalisers: Tensor, grid: Tensor, criterion: str) -> TokenGameSolution:
    """The grid point best for q_λ by ``criterion`` ("regret": min max_k KL(q_λ‖π_k); "win_rate": max min_k W_k)."""
    if criterion not in ("regret", "win_rate"):
        raise ValueError(f"criterion must be 'regret' or 'win_rate', got {criterion!r}")
    check_log_normalisers(log_normalisers, tuple(problem.values.shape[:2]), grid)
    posterior = token_posterior(problem, log_normalisers, grid)
    weights = problem.prompt_weights
    # λ·ℓ − A_λ − ℓ_k per sample and grid point: log q_λ/π_k
    mixed = torch.einsum("nmk,gk->nmg", problem.values, grid) - log_normalisers.to(torch.float64)
    kl = (torch.einsum("n,nmg,nmg->g", weights, posterior, mixed)[:, None]
          - torch.einsum("n,nmg,nmk->gk", weights, posterior, problem.values))
    rates = torch.einsum("n,nmg,nmk->gk", weights, posterior, reference_quantiles(problem))
    index = int(kl.max(1).values.argmin()) if criterion == "regret" else int(rates.min(1).values.argmax())
    ess = (1.0 / (posterior**2).sum(1)).median(0).values
    return TokenGameSolution(grid[index], index, kl, rates, ess)


def solve_token_game_sampled(log_ratios: Tensor, log_normalisers: Tensor, grid: Tensor, criterion: str,
                             mask: Tensor | None = None, log_weights: Tensor | None = None) -> TokenGameSolution:
    """`solve_token_game` on the sample objective of a cached tensor (as `solver.solve_empirical`)."""
    return solve_token_game(sampled_problem(log_ratios, mask, log_weights), log_normalisers, grid, criterion)


def direct_token_game(log_ratios: Tensor, log_q_over_ref: Tensor, reference_log_ratios: Tensor, grid: Tensor,
                      criterion: str, *, fine: int = 1001) -> TokenGameSolution:
    """The token-level game from draws of q_λ at every grid point: no importance weights.

    ``log_ratios`` [G, N, n, K]: ℓ_k of n draws of q_{λ_g} for N prompts; ``log_q_over_ref`` [G, N, n]: their
    log q_{λ_g}(y) − log π_ref(y); ``reference_log_ratios`` [N, r, K]: ℓ_k of r draws of π_ref per prompt.
    W_k(λ_g) = mean over prompts and draws of the fraction of π_ref's draws ranked below (ties ½);
    KL(q_λ‖π_k) = mean of log q_λ/π_ref − ℓ_k. For K = 2 the curves are interpolated linearly in λ_1 and
    the optimum of the interpolants taken on ``fine`` points; ``index`` is then the nearest grid point.
    """
    if criterion not in ("regret", "win_rate"):
        raise ValueError(f"criterion must be 'regret' or 'win_rate', got {criterion!r}")
    points, prompts, draws, k = log_ratios.shape
    if log_q_over_ref.shape != (points, prompts, draws) or grid.shape != (points, k) or \
            reference_log_ratios.shape[0] != prompts or reference_log_ratios.shape[2] != k:
        raise ValueError(f"shapes do not agree: log_ratios {tuple(log_ratios.shape)}, log_q_over_ref "
                         f"{tuple(log_q_over_ref.shape)}, reference_log_ratios {tuple(reference_log_ratios.shape)}, "
                         f"grid {tuple(grid.shape)}")
    ell, ref = log_ratios.to(torch.float64), reference_log_ratios.to(torch.float64)
    below = (ref[None, :, None, :, :] < ell[:, :, :, None, :]).double()  # [G, N, n, r, K]
    tied = (ref[None, :, None, :, :] == ell[:, :, :, None, :]).double()
    rates = (below + 0.5 * tied).mean((1, 2, 3))  # [G, K]
    kl = (log_q_over_ref.to(torch.float64)[..., None] - ell).mean((1, 2))  # [G, K]
    score = kl.max(1).values.neg() if criterion == "regret" else rates.min(1).values
    index = int(score.argmax())
    weights = grid[index]
    if k == 2:
        weights = _interpolated_optimum(grid, rates if criterion == "win_rate" else -kl, fine)
        index = int((grid - weights).abs().sum(1).argmin())
    ess = torch.full((points,), float(draws), dtype=torch.float64)
    return TokenGameSolution(weights, index, kl, rates, ess)


def _interpolated_optimum(grid: Tensor, values: Tensor, fine: int) -> Tensor:
    """K = 2: argmax over λ_1 of min_k of the piecewise-linear interpolants of ``values`` [G, 2] in λ_1."""
    order = grid[:, 0].argsort()
    x, curves = grid[order, 0], values[order]
    queries = torch.linspace(float(x[0]), float(x[-1]), fine, dtype=torch.float64)
    right = torch.searchsorted(x.contiguous(), queries).clamp(1, len(x) - 1)
    left = right - 1
    t = ((queries - x[left]) / (x[right] - x[left]))[:, None]
    interpolated = curves[left] * (1 - t) + curves[right] * t  # [fine, 2]
    best = float(queries[int(interpolated.min(1).values.argmax())])
    return torch.tensor([best, 1.0 - best], dtype=torch.float64)
