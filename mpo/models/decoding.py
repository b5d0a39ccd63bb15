"""Token-level decoding pieces shared by the mixture's decode loop: positions that skip left padding, the response
mask, nucleus filtering, the next-token choice and trimming finished rows, each the rule HF ``generate`` uses.

Pure torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, exactly as HF ``generate`` builds them."""
    position_ids = attention_mask.long().cumsum(-1) - 1
    return position_ids.masked_fill(attention_mask == 0, 0)


def eos_tensor(eos_token_id: int | Sequence[int] | None, device) -> torch.Tensor | None:
    if eos_token_id is None:
        return None
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    return torch.tensor(ids, dtype=torch.long, device=device) if ids else None


def response_mask(sequences: torch.Tensor, prompt_len: int, eos_token_id: int | Sequence[int] | None = None) -> torch.Tensor:
    """Bool [B, L]: the response tokens of ``sequences`` — after the prompt, up to and including the first EOS.

    Tokens after the first EOS are padding (HF's format), so they are not part of the response even when the
    pad token is the EOS token.
    """
    mask = torch.zeros_like(sequences, dtype=torch.bool)
    mask[:, prompt_len:] = True
    eos = eos_tensor(eos_token_id, sequences.device)
    if eos is not None:
        is_eos = torch.isin(sequences[:, prompt_len:], eos).long()
        eos_before = is_eos.cumsum(-1) - is_eos  # EOS tokens strictly before each position
        mask[:, prompt_len:] &= eos_before == 0
    return mask


def top_p_filter_(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering in place, the same rule as HF's ``TopPLogitsWarper`` (keeps at least one token)."""
    sorted_scores, sorted_indices = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[..., -1:] = False
    remove = remove_sorted.scatter(-1, sorted_indices, remove_sorted)
    return scores.masked_fill_(remove, -math.inf)


def check_decoding(max_new_tokens: int, min_new_tokens: int, temperature: float, top_p: float) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise ValueError(f"min_new_tokens must be in [0, max_new_tokens={max_new_tokens}], got {min_new_tokens}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use do_sample=False for greedy decoding), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def select_tokens(scores, temperature, top_p, do_sample, generator, track_logprob: bool):
    """Next tokens [B] from mixed log-probs, and (when tracked) their log-prob under the sampling distribution."""
    if not do_sample:
        next_tokens = scores.argmax(-1)
        return next_tokens, (scores.gather(-1, next_tokens[:, None]).squeeze(-1) if track_logprob else None)
    # `scores` is the decoder's fresh per-step tensor, owned by the loop: edited in place.
    if temperature != 1.0:
        scores = scores.div_(temperature)
    if top_p < 1.0:
        scores = top_p_filter_(scores, top_p)
    probs = torch.softmax(scores, dim=-1)
    next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    if not track_logprob:
        return next_tokens, None
    return next_tokens, torch.log_softmax(scores, dim=-1).gather(-1, next_tokens[:, None]).squeeze(-1)


def trim_finished(sequences: torch.Tensor, prompt_len: int, eos: torch.Tensor | None) -> torch.Tensor:
    """Drop the trailing steps after every row has finished, as HF ``generate`` stops there."""
    if eos is None:
        return sequences
    new = sequences[:, prompt_len:]
    is_eos = torch.isin(new, eos)
    last_step = torch.where(is_eos.any(-1), is_eos.int().argmax(-1), new.shape[1] - 1)
    return sequences[:, : prompt_len + int(last_step.max()) + 1]
