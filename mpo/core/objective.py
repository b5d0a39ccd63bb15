"""MPO's outer objective and its derivatives: pure tensor maths shared by every solver (BSMD, exact).

The max-min problem reduces to ``min_{λ∈Δ_K} F(λ)`` with
``F(λ) = E_x log Σ_y Π_k π_k(y|x)^{λ_k} = E_x log E_{y~π_ref} exp(Σ_k λ_k ℓ_k(x, y))`` and
``ℓ_k = log π_k(y|x) − log π_ref(y|x)`` (Wang et al., ICML 2025, §3; docs/design.md §1 here).
F is convex; ``∂F/∂λ_k = E_x E_{y~π_λ}[ℓ_k]`` is the mixture's normalised reward on objective k (over β).

Three ways to write F down, one shape for all of them (`Problem`):
- sampled from π_ref (the paper's estimator): ``F̂ = mean_x log mean_j exp(λ·ℓ[x, j])``;
- sampled from any proposal q that does not depend on λ, with importance log-weights
  ``log_weights[x, j] = log π_ref(y_j|x) − log q(y_j|x)`` (`mpo.core.proposal` builds them):
  ``F̂ = mean_x log mean_j exp(λ·ℓ[x, j] + log_weights[x, j])``, since Σλ_k = 1 makes
  ``Π_k π_k^{λ_k} / q = exp(λ·ℓ) · π_ref / q``;
- exact, on an enumerated response space: ``F = Σ_x w_x log Σ_y π_ref(y|x) exp(λ·ℓ[x, y])``.

Conventions shared by every function here:
- Arithmetic is float64 on the device of ``log_ratios``; returned tensors are float64 on that device.
- ``mask[x, j]`` is True for a real response; padded rows are ignored, whatever values they hold.
- ``ℓ = −inf`` (a response impossible under some π_k) is allowed: with λ_k > 0 that response has zero
  weight in the mixture; with λ_k = 0 the product 0·(−inf) counts as 0 (π_k^0 = 1).
- No Hydra, W&B, TRL or transformers: pure tensor maths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mpo.core.simplex import check_simplex




@dataclass(frozen=True)
class Problem:
    """A validated problem in one shape for both the sampled and the exact objective.

    ``F = Σ_x prompt_weights[x] · logsumexp_j(Σ_k λ_k values[x,j,k] + row_log_weights[x,j])``: with samples
    from π_ref the row weight is 1/m_x (−inf on padded rows); on an enumerated space it is π_ref(y|x).
    """

    values: Tensor  # [N, m, K] float64; −inf and padded entries replaced by 0
    impossible: Tensor | None  # [N, m, K] bool, ℓ = −inf on a live row; None when there is none
    row_log_weights: Tensor  # [N, m] float64
    prompt_weights: Tensor  # [N] float64, sums to 1

    def subset(self, index: Tensor) -> Problem:
        """The problem on a batch of prompts (re-weighted uniformly, as BSMD's batch average is)."""
        impossible = None if self.impossible is None else self.impossible[index]
        uniform = torch.full((len(index),), 1.0 / len(index), dtype=torch.float64, device=index.device)
        return Problem(self.values[index], impossible, self.row_log_weights[index], uniform)


# ---------------------------------------------------------------------------------------------- validation


def _check_log_ratios(log_ratios: Tensor, ndim: int, name: str = "log_ratios") -> None:
    if not isinstance(log_ratios, Tensor) or not log_ratios.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {type(log_ratios).__name__}")
    if log_ratios.ndim != ndim or min(log_ratios.shape) == 0:
        want = "[N prompts, m responses, K objectives]" if ndim == 3 else "[X prompts, Y responses, K]"
        raise ValueError(f"{name} must be a non-empty {ndim}-D tensor {want}, got shape {tuple(log_ratios.shape)}")


def _check_live_values(log_ratios: Tensor, live: Tensor) -> None:
    """NaN or +inf on a live row is a bug upstream (π_ref(y) > 0 for every response sampled from it)."""
    bad = live[..., None] & (torch.isnan(log_ratios) | torch.isposinf(log_ratios))
    if bad.any():
        x, j, k = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"log_ratios[{x}, {j}, {k}] = {log_ratios[x, j, k].item()}: only finite or −inf allowed")


def as_weights(weights: Tensor | list[float], num_objectives: int, device: torch.device) -> Tensor:
    """λ as float64 on ``device`` after checking it is a length-K point of the simplex."""
    weights = torch.as_tensor(weights, device=device)
    if not weights.is_floating_point():
        weights = weights.double()
    weights = weights.to(torch.float64)
    if weights.ndim != 1:
        raise ValueError(f"weights must have length K={num_objectives}, got shape {tuple(weights.shape)}")
    check_simplex(weights.detach().cpu().tolist(), num_objectives)
    return weights


def sampled_problem(log_ratios: Tensor, mask: Tensor | None = None, log_weights: Tensor | None = None) -> Problem:
    """F̂ from samples: row weight ``exp(log_weights)/m_x`` (``log_weights`` = log π_ref/q; None: q = π_ref)."""
    _check_log_ratios(log_ratios, 3)
    n_prompts, m_responses, _ = log_ratios.shape
    if mask is None:
        mask = torch.ones(n_prompts, m_responses, dtype=torch.bool, device=log_ratios.device)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (n_prompts, m_responses):
        raise ValueError(f"mask must be a bool tensor of shape {(n_prompts, m_responses)} (True = real response)")
    mask = mask.to(log_ratios.device)
    counts = mask.sum(1)
    if (counts == 0).any():
        raise ValueError(f"prompt {int((counts == 0).nonzero()[0])} has no real response (mask row all False)")
    _check_live_values(log_ratios, mask)
    row_log_weights = torch.where(mask, -counts.double().log()[:, None], -math.inf)
    if log_weights is not None:
        row_log_weights = row_log_weights + _check_log_weights(log_weights, mask)
    prompt_weights = torch.full((n_prompts,), 1.0 / n_prompts, dtype=torch.float64, device=log_ratios.device)
    return _build(log_ratios, mask, row_log_weights, prompt_weights)


def _check_log_weights(log_weights: Tensor, mask: Tensor) -> Tensor:
    """Importance log-weights [N, m]: finite on real rows (a sample has positive density under its proposal)."""
    if not isinstance(log_weights, Tensor) or log_weights.shape != mask.shape:
        raise ValueError(f"log_weights must be a tensor of shape {tuple(mask.shape)}, like mask")
    log_weights = log_weights.to(mask.device, torch.float64)
    bad = mask & ~torch.isfinite(log_weights) & ~torch.isneginf(log_weights)
    if bad.any():
        x, j = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"log_weights[{x}, {j}] = {log_weights[x, j].item()}: only finite or −inf allowed")
    return torch.where(mask, log_weights, 0.0)


def exact_problem(ref_logprobs: Tensor, log_ratios: Tensor, prompt_weights: Tensor | None = None) -> Problem:
    """F on an enumerated response space: row weight π_ref(y|x) (renormalised), prompts weighted."""
    _check_log_ratios(log_ratios, 3)
    _check_log_ratios(ref_logprobs, 2, name="ref_logprobs")
    n_prompts, n_responses, _ = log_ratios.shape
    if ref_logprobs.shape != (n_prompts, n_responses):
        raise ValueError(f"ref_logprobs must have shape {(n_prompts, n_responses)}, got {tuple(ref_logprobs.shape)}")
    ref = ref_logprobs.to(log_ratios.device, torch.float64)
    if torch.isnan(ref).any() or torch.isposinf(ref).any() or torch.isneginf(ref).all(1).any():
        raise ValueError("ref_logprobs must be finite or −inf, with at least one possible response per prompt")
    live = torch.isfinite(ref)
    _check_live_values(log_ratios, live)
    if prompt_weights is None:
        prompt_weights = torch.ones(n_prompts, dtype=torch.float64, device=log_ratios.device)
    prompt_weights = torch.as_tensor(prompt_weights, dtype=torch.float64, device=log_ratios.device)
    if prompt_weights.shape != (n_prompts,) or (prompt_weights < 0).any() or not prompt_weights.sum() > 0:
        raise ValueError(f"prompt_weights must be {n_prompts} non-negative numbers with a positive sum")
    # The enumerated space is all of it: renormalise π_ref so float error in its log-probs cannot bias F.
    return _build(log_ratios, live, torch.log_softmax(ref, 1), prompt_weights / prompt_weights.sum())


def _build(log_ratios: Tensor, live: Tensor, row_log_weights: Tensor, prompt_weights: Tensor) -> Problem:
    finite = torch.isfinite(log_ratios) & live[..., None]
    values = torch.where(finite, log_ratios.to(torch.float64), 0.0)
    impossible = torch.isneginf(log_ratios) & live[..., None]
    return Problem(values, impossible if impossible.any() else None, row_log_weights, prompt_weights)


# ------------------------------------------------------------------------------------------- the maths


def log_mixture(problem: Problem, weights: Tensor) -> Tensor:
    """[N, m] log of (row weight · exp(Σ_k λ_k ℓ_k)); −inf where some π_k with λ_k > 0 rules the row out."""
    scores = problem.values @ weights
    if problem.impossible is not None:
        ruled_out = (problem.impossible & (weights.detach() > 0)).any(-1)
        scores = scores.masked_fill(ruled_out, -math.inf)
    return scores + problem.row_log_weights


def problem_per_prompt(problem: Problem, weights: Tensor) -> Tensor:
    return torch.logsumexp(log_mixture(problem, weights), dim=1)


def problem_objective(problem: Problem, weights: Tensor) -> Tensor:
    per_prompt = problem_per_prompt(problem, weights)
    used = problem.prompt_weights > 0  # a zero-weight prompt must not turn −inf into NaN
    return (problem.prompt_weights[used] * per_prompt[used]).sum()


def problem_gradient(problem: Problem, weights: Tensor, check: bool = True) -> Tensor:
    """v_k = Σ_x w_x Σ_j softmax_j(log mixture)·ℓ_k: the mixture's mean log-ratio per objective."""
    log_mix = log_mixture(problem, weights)
    log_norm = torch.logsumexp(log_mix, dim=1, keepdim=True)
    if check and (torch.isneginf(log_norm[:, 0]) & (problem.prompt_weights > 0)).any():
        x = int((torch.isneginf(log_norm[:, 0]) & (problem.prompt_weights > 0)).nonzero()[0])
        raise ValueError(f"prompt {x}: every response is impossible under the mixture (F = −inf), no gradient")
    posterior = torch.exp(log_mix - log_norm).nan_to_num(0.0)  # rows of all −inf only when unchecked
    grad = torch.einsum("nm,nmk,n->k", posterior, problem.values, problem.prompt_weights)
    if problem.impossible is not None:
        # Only an objective with λ_k = 0 can put mass on a response π_k rules out: moving weight to it
        # lowers F without bound at first, the one-sided derivative is −inf.
        live = (posterior > 0) & (problem.prompt_weights > 0)[:, None]
        grad = grad.masked_fill((problem.impossible & live[..., None]).any((0, 1)), -math.inf)
    return grad


def per_prompt_objective(
    log_ratios: Tensor, weights: Tensor, mask: Tensor | None = None, log_weights: Tensor | None = None
) -> Tensor:
    """[N] per-prompt terms of F̂: logsumexp_j(Σ_k λ_k ℓ[x,j,k] + log_weights[x,j]) − log m_x.

    Differentiable in ``weights``; ``log_weights`` (importance log-weights log π_ref/q) default to 0."""
    problem = sampled_problem(log_ratios, mask, log_weights)
    return problem_per_prompt(problem, as_weights(weights, log_ratios.shape[2], log_ratios.device))


def objective(
    log_ratios: Tensor, weights: Tensor, mask: Tensor | None = None, log_weights: Tensor | None = None
) -> float:
    """F̂(λ) = mean_x [logsumexp_j(Σ_k λ_k ℓ[x,j,k] + log_weights[x,j]) − log m_x], convex in λ."""
    return per_prompt_objective(log_ratios, weights, mask, log_weights).mean().item()


def gradient(
    log_ratios: Tensor, weights: Tensor, mask: Tensor | None = None, log_weights: Tensor | None = None
) -> Tensor:
    """[K] ∂F̂/∂λ_k = mean_x Σ_j softmax_j(Σ_k λ_k ℓ + log_weights)·ℓ_k (self-normalised importance weights)."""
    problem = sampled_problem(log_ratios, mask, log_weights)
    return problem_gradient(problem, as_weights(weights, log_ratios.shape[2], log_ratios.device))


def certificate(
    log_ratios: Tensor, weights: Tensor, mask: Tensor | None = None, beta: float = 1.0, log_weights: Tensor | None = None
) -> Tensor:
    """[K] the mixture's normalised reward per objective, β·E_x E_{y~π_λ}[ℓ_k] = β·gradient.

    At an interior optimum these are equal on every objective with λ_k > 0; an objective left at λ_k = 0
    is one the mixture already serves at least as well as the others (its entry is ≥ theirs).
    """
    return beta * gradient(log_ratios, weights, mask, log_weights)


def certificate_gap(
    log_ratios: Tensor, weights: Tensor, mask: Tensor | None = None, beta: float = 1.0, support: float = 1e-3,
    log_weights: Tensor | None = None,
) -> float:
    """Spread (max − min) of `certificate` over the support {k: λ_k ≥ support}; 0 at an exact optimum."""
    cert = certificate(log_ratios, weights, mask, beta, log_weights)
    on_support = torch.as_tensor(weights, dtype=torch.float64, device=cert.device) >= support
    return (cert[on_support].max() - cert[on_support].min()).item() if on_support.any() else math.nan


def duality_gap(grad: Tensor, weights: Tensor) -> float:
    """Frank–Wolfe gap Σ_k λ_k v_k − min_k v_k ≥ F(λ) − min F (F convex): a bound on suboptimality."""
    grad = torch.as_tensor(grad, dtype=torch.float64)
    weights = torch.as_tensor(weights, dtype=torch.float64, device=grad.device)
    excess = torch.where(weights > 0, grad - grad.min(), 0.0)  # summed this way to avoid cancellation
    return (weights * excess).sum().item()




def hessian(problem: Problem, weights: Tensor) -> Tensor:
    """[K, K] ∇²F = Σ_x w_x Cov_{y~π_λ(·|x)}(ℓ(x, y)) (the posterior includes the row weights)."""
    posterior = torch.softmax(log_mixture(problem, weights), dim=1).nan_to_num(0.0)
    centred = problem.values - torch.einsum("nm,nmk->nk", posterior, problem.values)[:, None]
    return torch.einsum("n,nm,nmk,nml->kl", problem.prompt_weights, posterior, centred, centred)


def finite_range(problem: Problem) -> tuple[float, float]:
    """(min, max) of ℓ over live, possible entries: every finite gradient lies in this box."""
    live = torch.isfinite(problem.row_log_weights)[..., None].expand_as(problem.values)
    if problem.impossible is not None:
        live = live & ~problem.impossible
    live_values = problem.values[live]
    return live_values.min().item(), live_values.max().item()


def no_fully_possible_row(problem: Problem) -> Tensor:
    """[N] True where no real response is possible under every π_k (F̂ = −inf for all λ > 0)."""
    possible = torch.isfinite(problem.row_log_weights)
    if problem.impossible is not None:
        possible = possible & ~problem.impossible.any(-1)
    return ~possible.any(1)


# ------------------------------------------------------------------------------------------ exact F


def exact_objective(
    ref_logprobs: Tensor, log_ratios: Tensor, weights: Tensor, prompt_weights: Tensor | None = None
) -> float:
    """F(λ) = Σ_x w_x log Σ_y π_ref(y|x)·exp(Σ_k λ_k ℓ_k(x,y)) over an enumerated response space.

    ``ref_logprobs`` [X, Y] is log π_ref(y|x) for every response (renormalised over Y), ``log_ratios``
    [X, Y, K]; ``prompt_weights`` [X] defaults to uniform and is normalised to sum 1.
    """
    problem = exact_problem(ref_logprobs, log_ratios, prompt_weights)
    return problem_objective(problem, as_weights(weights, log_ratios.shape[2], log_ratios.device)).item()


def exact_gradient(
    ref_logprobs: Tensor, log_ratios: Tensor, weights: Tensor, prompt_weights: Tensor | None = None
) -> Tensor:
    """[K] ∂F/∂λ_k = E_x E_{y~π_λ}[ℓ_k] exactly (the mixture's normalised reward per objective, over β)."""
    problem = exact_problem(ref_logprobs, log_ratios, prompt_weights)
    return problem_gradient(problem, as_weights(weights, log_ratios.shape[2], log_ratios.device))
