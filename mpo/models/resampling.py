"""Sampling-importance-resampling toward the sequence-level mixture Π_k π_k^λ_k / Z from several proposals.

`mpo.models.mixing.LogLinearMixture.sample_sequence_level` resamples candidates of the token-level mixture q_tok;
`sample_defensive` here draws part of them from the single policies π_k and weighs every candidate against the
balance density of all the proposals (docs/design.md §1, "Defensive resampling"). Pure torch; the mixture is
passed in (its `generate`, `vertex` and `scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class SequenceLevelSample:
    """The outcome of sampling-importance-resampling toward the sequence-level mixture."""

    sequences: torch.Tensor  # [B, P+T], one resampled response per prompt, HF format
    candidates: torch.Tensor  # [B, n, P+T], every candidate drawn from the token-level mixture
    log_weights: torch.Tensor  # [B, n], log of Π_k π_k^λ_k / q, unnormalised
    effective_sample_size: torch.Tensor  # [B], (Σw)² / Σw² — n means q already matches the target


def defensive_counts(num_candidates: int, share: float, num_active: int) -> list[int]:
    """Candidates per prompt from [q_tok, π_k for each model with λ_k > 0]: ``share`` of them from q_tok (≥ 1), the
    rest split evenly over the π_k (each ≥ 1)."""
    if not 0 < share < 1:
        raise ValueError(f"the defensive share {share} must lie in (0, 1): the part of the candidates from q_tok")
    if num_candidates < num_active + 1:
        raise ValueError(f"defensive resampling needs at least {num_active + 1} candidates per prompt (one from the "
                         f"token-level mixture and one from each of {num_active} policies), got {num_candidates}")
    first = min(max(1, round(num_candidates * share)), num_candidates - num_active)
    per, extra = divmod(num_candidates - first, num_active)
    return [first] + [per + (1 if k < extra else 0) for k in range(num_active)]


@torch.inference_mode()
def sample_defensive(mixture, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                     num_candidates: int, share: float, max_new_tokens: int, generator: torch.Generator,
                     eos_token_id: int | Sequence[int] | None = None,
                     pad_token_id: int | None = None) -> SequenceLevelSample:
    """Defensive sampling-importance-resampling toward the sequence-level mixture Π_k π_k^λ_k / Z.

    Per prompt, `defensive_counts` candidates come from the token-level mixture q_tok and from each π_k with
    λ_k > 0 (its own law, temperature 1), each weighted by Π_k π_k(y)^λ_k / q_def(y) against the balance density
    ``q_def = α_0·q_tok + Σ_k α_k·π_k`` (α = counts / n), at most max_k λ_k/α_k: where q_tok misses the target
    (it pays the policies' per-step disagreement at every token, so it runs long), the π_k's candidates cover it.
    One scoring pass over all candidates gives every density; then one candidate per prompt is resampled.
    """
    input_ids = input_ids.to(mixture.device)
    batch, prompt_len = input_ids.shape
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(mixture.device)
    active = [k for k, w in enumerate(mixture.weights) if w > 0]
    counts = defensive_counts(num_candidates, share, len(active))
    sources = [mixture] + [mixture.vertex(k) for k in active]
    groups = []
    for source, n in zip(sources, counts):
        drawn = source.generate(input_ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0),
                                max_new_tokens=max_new_tokens, generator=generator, eos_token_id=eos_token_id,
                                pad_token_id=pad_token_id)
        groups.append(drawn)
    eos_first = eos_token_id if isinstance(eos_token_id, int) or eos_token_id is None else eos_token_id[0]
    pad = int(pad_token_id if pad_token_id is not None else (eos_first if eos_first is not None else 0))
    length = max(g.shape[1] for g in groups)
    padded = [torch.nn.functional.pad(g, (0, length - g.shape[1]), value=pad).view(batch, n, length)
              for g, n in zip(groups, counts)]
    candidates = torch.cat(padded, 1)  # [B, n, L]: per prompt, q_tok's candidates, then each π_k's
    flat = candidates.flatten(0, 1)
    attention = torch.cat([mask.repeat_interleave(num_candidates, 0),
                           torch.ones(flat.shape[0], length - prompt_len, dtype=mask.dtype, device=mask.device)], 1)
    components, token = (t.double() for t in mixture.scores(flat, attention, prompt_len=prompt_len,
                                                             eos_token_id=eos_token_id))
    alpha = torch.tensor(counts, dtype=torch.float64, device=token.device) / num_candidates
    densities = torch.stack([token, *(components[:, k] for k in active)], -1)  # [B·n, 1 + active]
    log_q = torch.logsumexp(densities + alpha.log(), -1)
    lam = torch.tensor(mixture.weights, dtype=torch.float64, device=token.device)
    target = (components[:, active] * lam[active]).sum(-1)
    log_weights = (target - log_q).view(batch, num_candidates)
    probs = torch.softmax(log_weights, -1)
    chosen = torch.multinomial(probs.float(), 1, generator=generator).squeeze(1)
    return SequenceLevelSample(sequences=candidates[torch.arange(batch, device=candidates.device), chosen],
                               candidates=candidates, log_weights=log_weights,
                               effective_sample_size=1.0 / (probs**2).sum(-1))
