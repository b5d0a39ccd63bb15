"""Log-probabilities of given tokens with every full-vocabulary temporary bounded.

Scoring a response reads one number per position, log π(y_t | x, y_<t), but the plain way to get it,
``log_softmax(logits.float(), -1).gather(...)``, materialises [B, L, V] float32 tensors: at batch 64 × 1,000
tokens × a 152k vocabulary, 39 GB each. Here the forward runs on as many rows as keep [rows, L, V] within
``FLOAT32_BUDGET`` elements, and the log-probability of the target is its logit minus the row's logsumexp, so
no normalised [B, L, V] tensor exists at all. The arithmetic is the plain formula's (equal to float32 rounding,
tests/test_logprobs.py); only the batching changes, and only where the plain way would not fit.

Pure torch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# elements of the widest float32 temporary a scoring step may hold: 2**26 is 256 MiB, e.g. 20 rows of 100 tokens
# at a 32k vocabulary; a row is never split, so one row wider than that (4k tokens × 152k) still runs whole
FLOAT32_BUDGET = 1 << 26


def rows_per_forward(length: int, vocab: int, budget: int | None = None) -> int:
    """How many rows of ``length`` positions keep a [rows, length, vocab] tensor within the budget (at least 1)."""
    return max(1, (FLOAT32_BUDGET if budget is None else budget) // max(1, length * vocab))


def gathered_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)``: [B, L] float32, upcasting
    a block of rows at a time (``rows_per_forward``) instead of the whole [B, L, V]."""
    rows, length, vocab = logits.shape
    out = torch.empty(rows, length, dtype=torch.float32, device=logits.device)
    step = rows_per_forward(length, vocab)
    for start in range(0, rows, step):
        block = logits[start : start + step].float()
        picked = block.gather(-1, targets[start : start + step, :, None].to(block.device)).squeeze(-1)
        out[start : start + step] = picked - torch.logsumexp(block, dim=-1)
    return out


def in_row_blocks(rows: int, length: int, vocab: int, score: Callable[[slice], torch.Tensor]) -> torch.Tensor:
    """``score(rows slice)`` over blocks of no more rows than the budget allows for [rows, length, vocab] logits,
    concatenated along the first dim (each block's forward holds only its rows)."""
    step = rows_per_forward(length, vocab)
    return torch.cat([score(slice(start, start + step)) for start in range(0, rows, step)])


def forward_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L-1] float32: log π(input_ids[:, t] | input_ids[:, :t]) for t ≥ 1 under a causal LM, its forward run
    on row blocks within the budget, on the model's device."""
    device = model.device
    ids, mask = input_ids.to(device), attention_mask.to(device)
    positions = None if position_ids is None else position_ids.to(device)

    def score(rows: slice) -> torch.Tensor:
        extra = {} if positions is None else {"position_ids": positions[rows]}
        logits = model(input_ids=ids[rows], attention_mask=mask[rows], **extra).logits[:, :-1]
        return gathered_logprobs(logits, ids[rows, 1:])

    return in_row_blocks(ids.shape[0], ids.shape[1], model.config.vocab_size, score)
