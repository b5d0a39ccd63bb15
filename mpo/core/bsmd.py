"""Batch stochastic mirror descent (BSMD), the paper's algorithm for MPO's weights (Wang et al., ICML 2025, §3).

MPO's outer problem is ``min_{λ∈Δ_K} F(λ)`` (`mpo.core.objective` defines F, its sample estimates and its
derivatives). The proposal does not depend on λ, so F is estimated from one cached tensor
``log_ratios[N prompts, m responses, K objectives]`` (plus importance log-weights when the samples come
from a proposal other than π_ref) and every BSMD step is a handful of tensor ops. The exact minimiser of
the same sample objective is `mpo.core.solver.solve_empirical`; on a small enumerable response space F itself
is exact (`solve_exact`): the anchors BSMD is tested and reported against.

Boundary optima (the face step). An entropic mirror-descent iterate never reaches a face of the simplex:
a weight the optimum wants at 0 only shrinks, geometrically when its derivative is well above the
support's, like 1/(η·t) when it is barely above (a small weight the optimum keeps is approached as
slowly). So the tail average sits inside the simplex, and with the MPO stage's settings (2,000 steps,
default η, all 256 prompts or batches of 64) it missed boundary optima with a small KKT margin by L1 up to
0.20. On the problems `tests/test_bsmd.py` pins (full / mini-batch): λ* = (1, 0) by 0.054 / 0.054,
(0.51, 0.49, 0) by 0.067 / 0.066, the vertex e_1 by 0.094 / 0.096, (0.989, 0.011, 0) by 0.113 / 0.121,
and a face F̂ jumps on (see below) by 0.080 / 0.081; after the face step, by ≤ 6e-10, with exact zeros.

So `solve_weights` ends with away steps of Frank–Wolfe (Wolfe 1970; Guélat & Marcotte 1986;
Lacoste-Julien & Jaggi 2015) on the full-data F̂, starting at the average (`_face_step`): while some
objective k of the support has v_k > ⟨λ, v⟩ (v = ∇F̂(λ)), F̂ is minimised exactly on the segment from λ to
its face λ_k = 0 (moving away from vertex k). F̂ is convex along it; when its slope is still ≤ 0 at the
face, that end is the minimiser: λ_k becomes exactly 0 (there v_k ≥ ⟨λ, v⟩, the KKT condition for leaving
k out) and the steps go on on the smaller face; otherwise Newton's method finds the minimum inside. Each
objective is tried at most once between drops (at most K² steps). F̂ never rises. On an edge (K = 2, or
K = 3 once one weight is 0) one such line search is the exact minimiser there, so those answers are exact
to round-off; with more objectives left the steps only polish what BSMD found (an ill-conditioned K = 3
interior problem keeps an L1 error of 0.05-0.09 here). The cost is 2-40 full-data gradients and Hessians,
≤ 35 ms on [256, 16, 3] against ~0.7 s for the 2,000 steps. Where some π_k rules out responses
(ℓ_k = −inf) that the face's mixture puts mass on, F̂ jumps up on the face, the slope there is +inf, and
the minimum is approached from inside (λ_k ~ 4e-11 here, the exact solver's 5e-17). ``face_step=False``
returns the plain tail average, the paper's answer; ``BSMDResult.average`` always holds it.

This module also re-exports the objective's public functions, so ``mpo.core.bsmd.objective`` and
``mpo.core.bsmd.solve_weights`` stay the one import users need. Pure tensor maths (no Hydra, W&B, TRL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mpo.core.objective import (Problem, as_weights, certificate, certificate_gap, duality_gap, exact_gradient,
    exact_objective, finite_range, gradient, hessian, no_fully_possible_row, objective, per_prompt_objective,
    problem_gradient, problem_objective, sampled_problem)
from mpo.core.solver import ExactSolution, one_thread_if_small, solve_empirical, solve_exact  # noqa: F401

# Above this many entries in log_ratios, the per-step trace is estimated on the step's batch instead of
# re-evaluated on all the data (one full pass per step would dominate the cost of BSMD).
_FULL_TRACE_MAX_ENTRIES = 1 << 22
# The face step's line search (`_away_step`): at most this many Newton/bisection steps, stopping once the
# bracket is this fraction of the segment (Newton converges in 3-6 steps on these problems).
_LINE_SEARCH_STEPS = 30
_LINE_SEARCH_TOL = 1e-10


# ------------------------------------------------------------------------------------------------- BSMD


@dataclass(frozen=True)
class BSMDResult:
    """What `solve_weights` returns.

    ``trace[t]`` is the objective at the averaged iterate after step t: on all the data when
    ``trace_full`` (always with full batches; with mini-batches while ``log_ratios`` has at most 2^22
    entries, unless asked otherwise), else on step t's batch only: an unbiased but noisy estimate of the
    full-data value that costs one batch-sized pass instead of a full one. ``weights`` is ``average`` after
    the face step (the module docstring): never of higher full-data F̂, with exact zeros where it dropped.
    """

    weights: Tensor  # [K] the answer: the averaged iterate after the face step, on the simplex
    last: Tensor  # [K] final iterate
    trace: Tensor  # [steps]
    step_size: float
    steps: int
    trace_full: bool
    average: Tensor  # [K] the plain tail average of the iterates (see solve_weights' tail_fraction)


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
    face_step: bool = True,
) -> BSMDResult:
    """Batch stochastic mirror descent on F̂ over the simplex; returns an averaged iterate.

    Each step draws ``batch_size`` prompts i.i.d. with a ``seed``ed generator (all N when None), takes the
    batch gradient v and updates log λ ← log_softmax(log λ − η v); η defaults to `default_step_size`.
    The answer averages the iterates the gradients were taken at, over the last ``tail_fraction`` of
    them (1.0 = all, the textbook average). Averaging the tail keeps the O(1/√T) guarantee (the distance
    KL(λ*‖λ_{T/2}) it starts from is O(1) in expectation) and drops the bias of the early iterates near
    ``init``, which on flat problems dominates the error of the full average. ``log_weights`` are the
    samples' importance log-weights (log π_ref/q, `mpo.core.proposal`); None means q = π_ref. Starts at ``init``
    (uniform by default); a zero in ``init`` stays zero (mirror descent keeps to faces). With ``face_step``
    the average then goes through the away steps of the module docstring (full-data gradients and exact
    line searches), which set to exactly 0 the weights of objectives a boundary optimum leaves out and
    never raise F̂; ``average`` keeps the plain one (``face_step=False`` returns it as ``weights``).
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
        average = average / average.sum()
        weights = _face_step(problem, average) if face_step else average
    return BSMDResult(weights, log_lambda.exp(), trace, eta, steps, full_trace, average)


def _face_step(problem: Problem, weights: Tensor) -> Tensor:
    """Away steps of Frank–Wolfe with exact line search on the full-data F̂, from the averaged point.

    While some objective k of the support has v_k > ⟨λ, v⟩ (v = ∇F̂(λ)) and has not been tried since the
    last drop, the one with the largest v_k is moved away from (`_away_step`). Each step lowers F̂ or
    leaves it; a drop shrinks the support, so there are at most K² steps.
    """
    tried: set[int] = set()
    while int((weights > 0).sum()) > 1:
        grad = problem_gradient(problem, weights)
        support = weights > 0
        mixed = (weights[support] * grad[support]).sum()
        candidates = [k for k in grad.argsort(descending=True).tolist()
                      if support[k] and grad[k] > mixed and k not in tried]
        if not candidates:
            break
        weights, dropped = _away_step(problem, weights, candidates[0])
        tried = set() if dropped else tried | {candidates[0]}
    return weights


def _away_step(problem: Problem, weights: Tensor, k: int) -> tuple[Tensor, bool]:
    """min F̂ on the segment λ(s) = λ + s(λ − e_k), s ∈ [0, λ_k/(1 − λ_k)], whose far end has λ_k = 0.

    F̂ is convex along it with φ'(s) = ⟨v(λ(s)), λ − e_k⟩ < 0 at s = 0. When φ' ≤ 0 at the far end too, that
    end is the minimiser and λ_k becomes exactly 0 (returns dropped=True): there v_k ≥ ⟨λ(s), v⟩, the KKT
    condition for leaving k out. Otherwise the root of φ' is found by Newton's method (φ'' = dᵀ∇²F̂ d),
    kept inside a shrinking bracket by bisection. Sums run over λ's support: an objective already at 0
    may have v = −inf, and 0·(−inf) must not enter them (so may k at the far end, when π_k rules out
    responses the face's mixture puts mass on: then φ' = +inf there, F̂ jumps up on the face, and the
    minimiser is found just inside it).
    """
    support = weights > 0
    direction = weights.clone()
    direction[k] -= 1.0
    far = (weights[k] / (1.0 - weights[k])).item()

    def point(s: float) -> Tensor:
        moved = (weights + s * direction).clamp(min=0.0)
        if s >= far:
            moved[k] = 0.0
        return moved / moved.sum()

    def slope(at: Tensor) -> float:
        return (problem_gradient(problem, at)[support] * direction[support]).sum().item()

    end = point(far)
    if slope(end) <= 0:
        return end, True
    low, high, s = 0.0, far, 0.0
    for _ in range(_LINE_SEARCH_STEPS):
        at = point(s)
        g = slope(at)
        if g == 0:
            break
        low, high = (s, high) if g < 0 else (low, s)
        curvature = (direction[support] @ hessian(problem, at)[support][:, support] @ direction[support]).item()
        newton = s - g / curvature if curvature > 0 else math.nan
        following = newton if low < newton < high else 0.5 * (low + high)
        converged = abs(following - s) <= _LINE_SEARCH_TOL * far or high - low <= _LINE_SEARCH_TOL * far
        s = following
        if converged:
            break
    return point(s), False


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
