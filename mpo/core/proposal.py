"""Estimating MPO's objective from samples of several proposals: defensive multiple importance sampling.

Because Σ_k λ_k = 1, the normaliser of the log-linear mixture is
``Z_x(λ) = E_{π_ref}[exp(λ·ℓ)] = Σ_y Π_k π_k(y|x)^{λ_k}``: π_ref is only one possible proposal, and a poor
one once the π_k have moved tens of nats away from it (its samples then almost never land where the
mixture lives, and the estimate of F collapses onto a vertex of the simplex). Here the samples for prompt
x come from several components j (π_ref, each π_k, optionally the token-level mixture at a first λ̂), n_j
of them from component j, and each is weighted against the balance-heuristic density
``q(y) = Σ_j α_j q_j(y)``, ``α_j = n_j / Σ n``:

    Ẑ_x(λ) = (1/M) Σ_i exp(Σ_k λ_k log π_k(y_i) − log q(y_i)) = (1/M) Σ_i exp(λ·ℓ_i + log π_ref(y_i) − log q(y_i))

is unbiased for every λ at once (q does not depend on λ; the draws are stratified by component), and
each weight is at most ``max_k λ_k/α_k ≤ 1/min_j α_j`` because Π_k π_k^{λ_k} ≤ Σ_k λ_k π_k. In
`mpo.core.objective`'s terms the estimate is the cached ``log_ratios`` plus importance log-weights
``log π_ref − log q``, so every solver step stays a few tensor ops.

Pure tensor code: no models, Hydra, W&B or TRL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mpo.core.objective import as_weights, log_mixture, sampled_problem


@dataclass(frozen=True)
class Estimate:
    """The cached sample objective: what `mpo.core.bsmd` / `mpo.core.solver` take (``log_weights=None``: q = π_ref)."""

    log_ratios: Tensor  # [N, M, K] log π_k(y|x) − log π_ref(y|x)
    log_weights: Tensor | None  # [N, M] log π_ref(y|x) − log q(y|x), or None for π_ref samples
    proposal: str  # "mixture" (defensive MIS) or "reference"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.log_ratios.shape)


def balance_log_density(logprobs: Tensor, counts: Sequence[int]) -> Tensor:
    """[N, M] log q(y) = log Σ_j α_j q_j(y) from each sample's log-density under every component.

    ``logprobs[x, i, j]`` is log q_j(y_i | x); ``counts[j]`` the samples per prompt drawn from component j
    (α_j = counts[j] / Σ counts; a component with count 0 is not part of q).
    """
    if logprobs.ndim != 3 or logprobs.shape[2] != len(counts):
        raise ValueError(f"logprobs must be [N, M, C] with one column per component ({len(counts)} counts), "
                         f"got shape {tuple(logprobs.shape)}")
    counts_t = torch.as_tensor(list(counts), dtype=torch.float64, device=logprobs.device)
    if (counts_t < 0).any() or counts_t.sum() != logprobs.shape[1]:
        raise ValueError(f"counts {list(counts)} must be non-negative and add up to M={logprobs.shape[1]} samples")
    used = counts_t > 0
    log_alpha = (counts_t[used] / counts_t.sum()).log()
    return torch.logsumexp(logprobs.to(torch.float64)[..., used] + log_alpha, dim=-1)


def mixture_estimate(logprobs: Tensor, counts: Sequence[int], policies: Sequence[int], reference: int = 0) -> Estimate:
    """Defensive MIS: ``logprobs[x, i, j]`` is the log-density of sample i under component j.

    Column ``reference`` is π_ref and columns ``policies`` are π_1..π_K; any other column (the token-level
    mixture of a second round) is a proposal component only.
    """
    policies = list(policies)
    values = logprobs.to(torch.float64)
    _check_finite(values)
    log_q = balance_log_density(values, counts)
    log_ratios = values[..., policies] - values[..., reference : reference + 1]
    return Estimate(log_ratios, values[..., reference] - log_q, "mixture")


def reference_estimate(ref_logprobs: Tensor, policy_logprobs: Tensor) -> Estimate:
    """The paper's estimator: M samples of π_ref, ``log_ratios = log π_k − log π_ref``, unit weights."""
    values = torch.cat([ref_logprobs[..., None], policy_logprobs], -1).to(torch.float64)
    _check_finite(values)
    return Estimate(values[..., 1:] - values[..., :1], None, "reference")


def _check_finite(values: Tensor) -> None:
    bad = ~torch.isfinite(values)
    if bad.any():
        x, i, j = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"log-density [{x}, {i}, {j}] = {values[x, i, j].item()}: every sampled response must "
                         "have a finite log-probability under every model (same tokenizer, same EOS handling)")


# ------------------------------------------------------------------------------------------ diagnostics


def effective_sample_size(estimate: Estimate, weights: Tensor) -> Tensor:
    """[N] ESS of the normalised importance weights of the mixture at λ: (Σ w)² / Σ w², between 1 and M.

    ``w_i ∝ exp(λ·ℓ_i + log_weights_i)`` are the weights that Ẑ and the gradient put on sample i: an ESS of
    a few means F̂ and its gradient at λ rest on a few samples.
    """
    problem = sampled_problem(estimate.log_ratios, None, estimate.log_weights)
    lam = as_weights(weights, estimate.log_ratios.shape[2], estimate.log_ratios.device)
    log_w = log_mixture(problem, lam)
    return torch.exp(2 * torch.logsumexp(log_w, 1) - torch.logsumexp(2 * log_w, 1))


def vertex_check(estimate: Estimate) -> Tensor:
    """[K] mean over prompts of Ẑ_x(e_k) = estimate of Σ_y π_k(y|x): 1 for a sound estimate.

    With π_ref samples it is ``mean_j exp(ℓ_k)`` — far below 1 once π_k has moved away (its mass is
    never sampled), the first sign of the estimator's collapse.
    """
    problem = sampled_problem(estimate.log_ratios, None, estimate.log_weights)
    n_objectives = estimate.log_ratios.shape[2]
    eye = torch.eye(n_objectives, dtype=torch.float64, device=estimate.log_ratios.device)
    return torch.stack([torch.logsumexp(log_mixture(problem, eye[k]), 1).exp().mean() for k in range(n_objectives)])


def ess_summary(ess: Tensor, m: int) -> dict[str, float]:
    """Quantiles of the per-prompt ESS, and as a fraction of the M samples per prompt."""
    q = torch.quantile(ess.double(), torch.tensor([0.0, 0.1, 0.5, 0.9], dtype=torch.float64))
    return {"min": float(q[0]), "p10": float(q[1]), "median": float(q[2]), "p90": float(q[3]),
            "mean": float(ess.mean()), "m": float(m), "median_fraction": float(q[2]) / m}


def split_counts(total: int, n_objectives: int, reference_share: float) -> list[int]:
    """Per-prompt counts [n_ref, n_1, ..., n_K] for a budget of ``total`` samples (every component ≥ 1)."""
    if total < n_objectives + 1:
        raise ValueError(f"{total} samples per prompt cannot cover π_ref and {n_objectives} policies")
    n_ref = min(max(1, round(total * reference_share)), total - n_objectives)
    per_policy, extra = divmod(total - n_ref, n_objectives)
    return [n_ref] + [per_policy + (1 if k < extra else 0) for k in range(n_objectives)]

