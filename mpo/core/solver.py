"""The exact minimiser of MPO's outer objective on the simplex, certified by the duality gap.

A cached sample tensor (`mpo.core.objective.sampled_problem`) defines a deterministic convex F̂, and an
enumerated response space defines F itself (`mpo.core.objective.exact_problem`): either is minimised here to
tolerance, boundary optima (some λ_k = 0 exactly) included. The Frank–Wolfe duality gap
``Σ_k λ_k v_k − min_k v_k`` (v = ∇F) bounds F(λ) − min F for a convex F, so a returned λ comes with
its own proof of optimality. BSMD (`mpo.core.bsmd`, the paper's stochastic algorithm) is the other solver.

Pure tensor code: no Hydra, W&B, TRL or transformers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from mpo.core.objective import (Problem, duality_gap, exact_problem, finite_range, hessian, no_fully_possible_row,
    problem_gradient, problem_objective, sampled_problem)

# Up to this many entries a solver loop runs on one CPU thread (see `one_thread_if_small`).
_ONE_THREAD_MAX_ENTRIES = 1 << 21
# How far a weight is pulled back into the simplex when an objective re-enters the support.
_REENTRY = 1e-3
# Below this a weight whose derivative is above the support's minimum is taken to be 0 (`_drop_vanishing`).
_VANISHING = 1e-6


@contextmanager
def one_thread_if_small(values: Tensor) -> Iterator[None]:
    """Run a loop of many tiny tensor ops on one intra-op thread, restoring the setting afterwards.

    Each step is a few ops on ~10^4-10^5 numbers: threads cannot speed that up, and on a busy machine
    OpenMP's waiting for a contended core made 1,000 BSMD steps on [512, 16, 3] take 1.5-30 s instead of
    0.3 s (measured on the 2-core dev box). Big or GPU problems keep the default.
    """
    threads = torch.get_num_threads()
    small = values.device.type == "cpu" and values.numel() <= _ONE_THREAD_MAX_ENTRIES
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(threads)


@dataclass(frozen=True)
class ExactSolution:
    """What `minimise` returns: λ, F(λ), the gradient there and the duality gap (≥ F(λ) − min F)."""

    weights: Tensor  # [K] on the simplex; an objective off the support has weight exactly 0
    value: float
    gradient: Tensor  # [K]
    gap: float
    tolerance: float  # the gap asked for (relative tolerance times the gradient's scale)

    @property
    def converged(self) -> bool:
        return self.gap <= self.tolerance


def minimise(problem: Problem, *, tol: float = 1e-10, max_steps: int = 100_000) -> ExactSolution:
    """The minimiser of a problem's F on the simplex, certified: F(λ) − min F ≤ duality gap ≤ ``tol``
    (relative to the gradient's scale, max(1, ‖∇F‖_∞), which float64 round-off is proportional to).

    Two phases. Entropic mirror descent with exact gradients and an adaptive step (grown after each
    accepted step, halved until the relative-smoothness condition F(λ') ≤ F(λ) + ⟨v, λ'−λ⟩ + KL(λ'‖λ)/η
    holds) finds the support and gets the duality gap to 1e-6; below that F's own round-off (~1e-16) hides
    further progress from any test on F values. Newton's method on the support (exact Hessian
    Σ_x w_x Cov_{π_λ}(ℓ), equality-constrained, with a ratio test that sets weights reaching 0 to exactly 0)
    then converges quadratically, steered by the gap, which only needs gradients. An objective wrongly left
    at 0 (its v_k below the support's) re-enters and the two phases run again, the mirror descent now all
    the way to ``tol``. Where round-off still stops it short, the solution comes back with its gap and
    ``converged`` False (`solve_exact` raises then; the MPO stage reports the gap and warns).
    """
    if no_fully_possible_row(problem).any():
        raise ValueError("some prompt has no response possible under every π_k: F = −inf, nothing to minimise")
    n_objectives = problem.values.shape[2]
    weights = torch.full((n_objectives,), 1.0 / n_objectives, dtype=torch.float64, device=problem.values.device)
    low, high = finite_range(problem)
    tol = tol * max(1.0, abs(low), abs(high))
    best = None
    with one_thread_if_small(problem.values):
        for attempt in range(n_objectives + 1):
            weights = _mirror_descent(problem, weights, max(tol, 1e-6) if attempt == 0 else tol, max_steps)
            weights = _drop_vanishing(problem, _newton_polish(problem, weights, tol), tol)
            grad = problem_gradient(problem, weights)
            gap = duality_gap(grad, weights)
            if best is None or gap < best[2]:
                best = (weights, grad, gap)
            if gap <= tol:
                break
            weights = _reenter(weights, grad)
    weights, grad, gap = best
    return ExactSolution(weights, problem_objective(problem, weights).item(), grad, gap, tol)


def solve_exact(
    ref_logprobs: Tensor,
    log_ratios: Tensor,
    prompt_weights: Tensor | None = None,
    *,
    tol: float = 1e-10,
    max_steps: int = 100_000,
) -> Tensor:
    """[K] the minimiser of the exact F over an enumerated response space (see `minimise`); RuntimeError
    when the duality gap does not reach the tolerance."""
    problem = exact_problem(ref_logprobs, log_ratios, prompt_weights)
    solution = minimise(problem, tol=tol, max_steps=max_steps)
    if not solution.converged:
        raise RuntimeError(f"exact solve: duality gap {solution.gap:.3g} > tolerance {solution.tolerance:.3g}")
    return solution.weights


def solve_empirical(
    log_ratios: Tensor,
    mask: Tensor | None = None,
    log_weights: Tensor | None = None,
    *,
    tol: float = 1e-10,
    max_steps: int = 100_000,
) -> ExactSolution:
    """The exact minimiser of the sample objective F̂ (π_ref samples, or importance-weighted ones)."""
    return minimise(sampled_problem(log_ratios, mask, log_weights), tol=tol, max_steps=max_steps)


def _reenter(weights: Tensor, grad: Tensor) -> Tensor:
    """Give the most violating zero-weight objective a little weight (active-set step)."""
    support = weights > 0
    outside = torch.where(support, math.inf, grad)
    k = int(outside.argmin())
    if support.all() or not outside[k] < grad[support].min():
        return weights  # nothing to re-enter: the next round polishes from here
    weights = (1 - _REENTRY) * weights
    weights[k] += _REENTRY
    return weights


def _drop_vanishing(problem: Problem, weights: Tensor, tol: float) -> Tensor:
    """Set to exactly 0 the weights that are vanishing (< `_VANISHING`) with a derivative above the
    smallest one, i.e. objectives the optimum wants off its support, when the gap stays ≤ ``tol`` there.

    Mirror descent only shrinks such a weight geometrically, and once λ_k (v_k − min v) is below the
    tolerance Newton's ratio test has no reason to reach it: without this, a boundary optimum comes back
    as λ_k ≈ 1e-9 rather than the 0 it is.
    """
    grad = problem_gradient(problem, weights)
    vanishing = (weights > 0) & (weights < _VANISHING) & (grad > grad.min())
    if not vanishing.any():  # (they cannot be the whole support: the weights sum to 1)
        return weights
    candidate = torch.where(vanishing, 0.0, weights)
    candidate = _newton_polish(problem, candidate / candidate.sum(), tol)
    if duality_gap(problem_gradient(problem, candidate), candidate) <= tol:
        return candidate
    return weights


def _mirror_descent(problem: Problem, weights: Tensor, tol: float, max_steps: int) -> Tensor:
    """Adaptive-step entropic mirror descent from ``weights`` until the duality gap is ≤ tol (or ``max_steps``).

    Mirror descent keeps to faces: a weight that is exactly 0 stays 0.
    """
    log_weights = weights.log()
    low, high = finite_range(problem)
    value, grad = problem_objective(problem, weights), problem_gradient(problem, weights).clamp(low, high)
    eta = 1.0 / max(high - low, 1e-12)
    for _ in range(max_steps):
        if duality_gap(grad, weights) <= tol:
            break
        while True:
            new_log = torch.log_softmax(log_weights - eta * grad, dim=0)
            new_weights = new_log.exp()
            new_value = problem_objective(problem, new_weights)
            kl = (new_weights * (new_log - log_weights)).nan_to_num(0.0).sum()
            slack = 1e-13 * (1.0 + value.abs())  # lets float round-off pass once the step is tiny
            if new_value <= value + grad @ (new_weights - weights) + kl / eta + slack or eta < 1e-300:
                break
            eta /= 2.0
        log_weights, weights, value = new_log, new_weights, new_value
        grad = problem_gradient(problem, weights).clamp(low, high)
        eta *= 1.5
    return weights


def _newton_polish(problem: Problem, weights: Tensor, tol: float, max_iter: int = 50) -> Tensor:
    """Newton steps on the face of the simplex spanned by λ's support until the duality gap is ≤ tol."""
    for _ in range(max_iter):
        grad = problem_gradient(problem, weights)
        gap = duality_gap(grad, weights)
        if gap <= tol:
            break
        step = _newton_step(problem, weights, grad)
        shrinking = step < 0
        ratios = torch.where(shrinking, weights / -step.clamp(max=-1e-300), math.inf)
        reach = ratios.min().item()
        t = min(1.0, reach)
        for _ in range(60):  # damp the step until the gap improves
            candidate = (weights + t * step).clamp(min=0.0)
            if t == reach:
                candidate[int(ratios.argmin())] = 0.0  # that weight leaves the support
            candidate = candidate / candidate.sum()
            if duality_gap(problem_gradient(problem, candidate), candidate) < gap:
                break
            t /= 2.0
        else:
            break  # no progress possible on this face: the caller decides what next
        weights = candidate
    return weights


def _newton_step(problem: Problem, weights: Tensor, grad: Tensor) -> Tensor:
    """The equality-constrained Newton direction on the support (min-norm where the Hessian is singular)."""
    support = weights > 0
    size = int(support.sum())
    kkt = torch.zeros(size + 1, size + 1, dtype=torch.float64, device=weights.device)
    kkt[:size, :size] = hessian(problem, weights)[support][:, support]
    kkt[:size, size] = kkt[size, :size] = 1.0
    rhs = torch.cat([-grad[support], grad.new_zeros(1)])
    step = torch.zeros_like(weights)
    step[support] = torch.linalg.lstsq(kkt, rhs[:, None]).solution[:size, 0]
    return step
