"""Batch stochastic mirror descent (BSMD), the paper's algorithm for MPO's weights (Wang et al., ICML 2025, §3).

MPO's outer problem is ``min_{λ∈Δ_K} F(λ)`` (`mpo.core.objective` defines F, its sample estimates and its
derivatives). The proposal does not depend on λ, so F is estimated from one cached tensor
``log_ratios[N prompts, m responses, K objectives]`` (plus importance log-weights when the samples come
from a proposal other than π_ref) and every BSMD step is a handful of tensor ops. The exact minimiser of
the same sample objective is `mpo.core.solver.solve_empirical`; on a small enumerable response space F itself
is exact (`solve_exact`): the anchors BSMD is tested and reported against.

This module also re-exports the objective's public functions, so ``mpo.core.bsmd.objective`` and
``mpo.core.bsmd.solve_weights`` stay the one import users need. Pure tensor maths (no Hydra, W&B, TRL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mpo.core.objective import (Problem, as_weights, certificate, certificate_gap, duality_gap, exact_gradient,
    exact_objective, finite_range, gradient, no_fully_possible_row, objective, per_prompt_objective,
    problem_gradient, problem_objective, sampled_problem)
from mpo.core.solver import ExactSolution, one_thread_if_small, solve_empirical, solve_exact  # noqa: F401

# Above this many entries in log_ratios, the per-step trace is estimated on the step's batch instead of
# re-evaluated on all the data (one full pass per step would dominate the cost of BSMD).
_FULL_TRACE_MAX_ENTRIES = 1 << 22


# ------------------------------------------------------------------------------------------------- BSMD


@dataclass(frozen=True)
class BSMDResult:
    """What `solve_weights` returns.

    ``trace[t]`` is the objective at the averaged iterate after step t: on all the data when
    ``trace_full`` (always with full batches; with mini-batches while ``log_ratios`` has at most 2^22
    entries, unless asked otherwise), else on step t's batch only: an unbiased but noisy estimate of the
    full-data value that costs one batch-sized pass instead of a full one.
    """

    weights: Tensor  # [K] averaged iterate (the answer; see solve_weights' tail_fraction), on the simplex
    last: Tensor  # [K] final iterate
    trace: Tensor  # [steps]
    step_size: float
    steps: int
    trace_full: bool


def default_step_size(
    log_ratios: Tensor, steps: int, mask: Tensor | None = None, log_weights: Tensor | None = None
) -> float:
    """η = sqrt(2 log K / T) / G, the entropic mirror-descent step for gradients bounded by G in ∞-norm.

    Two things set G. Mirror descent only sees differences between gradient components (a constant
    added to v cancels in Z), and the part of ℓ common to all objectives (−log π_ref) never moves λ: so G
    is measured on ℓ centred across objectives, ℓ_k − mean_k ℓ. And the worst case (the range) is set by
    rare responses and would make η tiny, while v is a mixture average of ℓ: so G is the standard
    deviation, max_k std(ℓ_k − mean_k ℓ) over real rows with every ℓ finite (1 when there is no spread).
    """
    problem = sampled_problem(log_ratios, mask, log_weights)
    return _default_step_size(problem, steps)


def _default_step_size(problem: Problem, steps: int) -> float:
    n_objectives = problem.values.shape[2]
    rows = problem.values.flatten(0, 1)
    live = torch.isfinite(problem.row_log_weights).flatten()
    if problem.impossible is not None:
        live = live & ~problem.impossible.flatten(0, 1).any(-1)
    centred = rows[live] - rows[live].mean(-1, keepdim=True)
    spread = centred.std(0, correction=0).max().item() if len(centred) > 0 else math.nan
    scale = spread if math.isfinite(spread) and spread > 1e-12 else 1.0
    return math.sqrt(2.0 * math.log(max(n_objectives, 2)) / steps) / scale


def solve_weights(
    log_ratios: Tensor,
    *,
    steps: int,
    step_size: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    mask: Tensor | None = None,
    log_weights: Tensor | None = None,
    init: Tensor | None = None,
    tail_fraction: float = 0.5,
    full_trace: bool | None = None,
) -> BSMDResult:
    """Batch stochastic mirror descent on F̂ over the simplex; returns an averaged iterate.

    Each step draws ``batch_size`` prompts i.i.d. with a ``seed``ed generator (all N when None), takes the
    batch gradient v and updates log λ ← log_softmax(log λ − η v); η defaults to `default_step_size`.
    The answer averages the iterates the gradients were taken at, over the last ``tail_fraction`` of
    them (1.0 = all, the textbook average). Averaging the tail keeps the O(1/√T) guarantee (the distance
    KL(λ*‖λ_{T/2}) it starts from is O(1) in expectation) and drops the bias of the early iterates near
    ``init``, which on flat problems dominates the error of the full average. ``log_weights`` are the
    samples' importance log-weights (log π_ref/q, `mpo.core.proposal`); None means q = π_ref. Starts at ``init``
    (uniform by default); a zero in ``init`` stays zero (mirror descent keeps to faces).
    """
    problem = sampled_problem(log_ratios, mask, log_weights)
    n_objectives = log_ratios.shape[2]
    _check_solver_args(problem, steps, batch_size, tail_fraction)
    eta = _default_step_size(problem, steps) if step_size is None else float(step_size)
    if not eta > 0:
        raise ValueError(f"step_size must be positive, got {step_size}")
    start = torch.full((n_objectives,), 1.0 / n_objectives, dtype=torch.float64, device=log_ratios.device)
    log_lambda = (start if init is None else as_weights(init, n_objectives, log_ratios.device)).log()
    if full_trace is None:
        full_trace = log_ratios.numel() <= _FULL_TRACE_MAX_ENTRIES
    full_trace = full_trace or batch_size is None  # a full batch *is* all the data
    with one_thread_if_small(log_ratios):
        cumulative, log_lambda, trace = _mirror_descent(
            problem, log_lambda, steps, eta, batch_size, torch.Generator().manual_seed(seed), full_trace, tail_fraction
        )
    average = _tail_average(cumulative, steps, tail_fraction)
    return BSMDResult(average / average.sum(), log_lambda.exp(), trace, eta, steps, full_trace)


def _mirror_descent(
    problem: Problem,
    log_weights: Tensor,
    steps: int,
    eta: float,
    batch_size: int | None,
    generator: torch.Generator,
    full_trace: bool,
    tail_fraction: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The BSMD loop: (cumulative sums of the iterates [steps+1, K], the last log-iterate, the trace)."""
    n_prompts, device = problem.values.shape[0], problem.values.device
    low, high = finite_range(problem)
    cumulative = torch.zeros(steps + 1, log_weights.shape[0], dtype=torch.float64, device=device)
    trace = torch.empty(steps, dtype=torch.float64, device=device)
    for t in range(steps):
        weights = log_weights.exp()
        cumulative[t + 1] = cumulative[t] + weights
        batch = problem
        if batch_size is not None:
            batch = problem.subset(torch.randint(n_prompts, (batch_size,), generator=generator).to(device))
        # Clamping keeps a weight that underflowed to 0 from turning an −inf derivative into NaN; a finite
        # gradient always lies in [low, high] anyway.
        grad = problem_gradient(batch, weights, check=False).clamp(low, high)
        log_weights = torch.log_softmax(log_weights - eta * grad, dim=0)
        trace[t] = problem_objective(problem if full_trace else batch, _tail_average(cumulative, t + 1, tail_fraction))
    return cumulative, log_weights, trace


def _tail_average(cumulative: Tensor, count: int, tail_fraction: float) -> Tensor:
    """Mean of the last ceil(tail_fraction·count) of the first ``count`` iterates (cumulative[i] = Σ_{s<i})."""
    first = count - max(1, math.ceil(tail_fraction * count))
    return (cumulative[count] - cumulative[first]) / (count - first)


def _check_solver_args(problem: Problem, steps: int, batch_size: int | None, tail_fraction: float) -> None:
    n_prompts = problem.values.shape[0]
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if batch_size is not None and not 1 <= batch_size <= n_prompts:
        raise ValueError(f"batch_size must be in [1, N={n_prompts}] or None, got {batch_size}")
    if not 0.0 < tail_fraction <= 1.0:
        raise ValueError(f"tail_fraction must be in (0, 1], got {tail_fraction}")
    hopeless = no_fully_possible_row(problem)
    if hopeless.any():
        raise ValueError(
            f"prompt {int(hopeless.nonzero()[0])}: every real response is impossible under some π_k,"
            " so F̂ = −inf inside the simplex and there is nothing to minimise"
        )
