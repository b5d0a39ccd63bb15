"""What every method hands to evaluation: something that turns prompts into responses.

A policy here is a HF causal LM (reference, DPO, RL, soup) or a `LogLinearMixture`; both are wrapped so that
evaluation sees one interface, ``generate(prompts, decoding) -> responses``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from mpo.models.logprobs import forward_logprobs


@dataclass(frozen=True)
class Decoding:
    """One decoding config shared by every method in a comparison."""

    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 64


class TextPolicy(Protocol):
    def generate(self, prompts: list[str], decoding: Decoding) -> list[str]: ...


def load_tokenizer(path_or_name: str | Path, padding_side: str | None = "left") -> PreTrainedTokenizerBase:
    """A model's tokenizer with a pad token (its EOS where it has none); padded on the left by default, since
    generation continues from the right edge of every prompt (trainers pass their own side)."""
    tokenizer = AutoTokenizer.from_pretrained(str(path_or_name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(path_or_name: str | Path, dtype: str = "float32") -> PreTrainedModel:
    """A full model directory (or hub name), or a LoRA adapter directory merged into its base (`mpo.models.adapters`)."""
    from mpo.models.adapters import is_adapter, load_merged

    if is_adapter(path_or_name):
        return load_merged(path_or_name, dtype)
    model = AutoModelForCausalLM.from_pretrained(str(path_or_name), dtype=getattr(torch, dtype))
    return model.eval()


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str], device) -> dict[str, torch.Tensor]:
    """Left-padded prompt ids, tokenised as TRL's trainers tokenise a prompt (special tokens included)."""
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}


def split_generated(sequences: torch.Tensor, attention_mask: torch.Tensor, eos_token_id: int
                    ) -> tuple[list[list[int]], list[list[int]], list[bool]]:
    """Per row of a left-padded HF ``generate`` output: the prompt's ids (padding dropped), the completion's
    ids up to and including the first EOS, and whether it finished (a truncated sample has no EOS)."""
    prompt_len = attention_mask.shape[1]
    prompt_ids = [row[mask.bool()].tolist() for row, mask in zip(sequences[:, :prompt_len].cpu(), attention_mask.cpu())]
    completion_ids, finished = [], []
    for row in sequences[:, prompt_len:].cpu().tolist():
        done = eos_token_id in row  # after the first EOS, HF pads (with the EOS id when pad = EOS)
        completion_ids.append(row[: row.index(eos_token_id) + 1] if done else row)
        finished.append(done)
    return prompt_ids, completion_ids, finished


def decode_responses(tokenizer: PreTrainedTokenizerBase, sequences: torch.Tensor, prompt_len: int) -> list[str]:
    # raw continuations (leading space kept): prompt + response is the full text, as in the preference pairs
    return tokenizer.batch_decode(sequences[:, prompt_len:], skip_special_tokens=True)


@dataclass
class Generation:
    """Sampled responses: text, prompt and completion token ids (EOS included where finished), finished; and,
    from a sequence-level mixture, log Ẑ(x) per response (its density is Π_k π_k^λ_k / Z: see `mpo.models.mixing`)."""

    responses: list[str]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    finished: list[bool]
    log_normaliser: list[float] = field(default_factory=list)

    def extend(self, responses, prompt_ids, completion_ids, finished) -> None:
        self.responses += responses
        self.prompt_ids += prompt_ids
        self.completion_ids += completion_ids
        self.finished += finished


class HFPolicy:
    """A single causal LM with its tokenizer."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase):
        self.model, self.tokenizer = model.eval(), tokenizer

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: str = "float32") -> "HFPolicy":
        return cls(load_causal_lm(path, dtype), load_tokenizer(path))

    def generate(self, prompts: list[str], decoding: Decoding) -> list[str]:
        return self.generate_detailed(prompts, decoding)[0]

    def generate_detailed(self, prompts: list[str], decoding: Decoding) -> tuple[list[str], list[bool]]:
        """Responses and whether each ended with EOS (rather than at max_new_tokens)."""
        generation = self.generate_tokens(prompts, decoding)
        return generation.responses, generation.finished

    @torch.no_grad()
    def generate_tokens(self, prompts: list[str], decoding: Decoding) -> "Generation":
        """Responses as text and as the sampled token ids, and whether each ended with EOS."""
        torch.manual_seed(decoding.seed)
        out = Generation([], [], [], [])
        for start in range(0, len(prompts), decoding.batch_size):
            batch = encode_prompts(self.tokenizer, prompts[start : start + decoding.batch_size], self.model.device)
            sequences = self.model.generate(
                **batch,
                do_sample=True,
                temperature=decoding.temperature,
                top_p=decoding.top_p,
                top_k=0,
                max_new_tokens=decoding.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
            out.extend(decode_responses(self.tokenizer, sequences, batch["input_ids"].shape[1]),
                       *split_generated(sequences, batch["attention_mask"], self.tokenizer.eos_token_id))
        return out

    def response_logprobs(self, prompt_ids: list[list[int]], completion_ids: list[list[int]],
                          log_normaliser: list[float] | None = None, batch_size: int = 64) -> torch.Tensor:
        """[B] log π(y|x) of sampled token ids: the density this policy samples from (temperature 1, top-p 1)."""
        return logprobs_of_ids(self.model, prompt_ids, completion_ids, self.tokenizer.pad_token_id, batch_size)

    @torch.no_grad()
    def sequence_logprobs(
        self, prompts: list[str], responses: list[str], finished: list[bool], batch_size: int = 64
    ) -> torch.Tensor:
        """log π(y|x) summed over the response's tokens (+ EOS where the response finished)."""
        return sequence_logprobs(self.model, self.tokenizer, prompts, responses, finished, batch_size)


def sequence_logprobs(model, tokenizer, prompts, responses, finished, batch_size: int = 64) -> torch.Tensor:
    """Batched sequence log-probabilities of responses given prompts (prompt and response tokenised apart,
    as TRL's preference trainers do); right-padded so positions need no adjustment."""
    out = []
    for start in range(0, len(prompts), batch_size):
        rows, spans = [], []
        for p, r, f in zip(prompts[start : start + batch_size], responses[start : start + batch_size],
                           finished[start : start + batch_size]):
            p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
            r_ids = tokenizer(r, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if f else [])
            rows.append(p_ids + r_ids)
            spans.append((len(p_ids), len(p_ids) + len(r_ids)))
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        ids, mask = ids.to(model.device), mask.to(model.device)
        token_logp = forward_logprobs(model, ids, mask)
        positions = torch.arange(1, width, device=ids.device)[None]
        lo = torch.tensor([s for s, _ in spans], device=ids.device)[:, None]
        hi = torch.tensor([e for _, e in spans], device=ids.device)[:, None]
        out.append((token_logp * ((positions >= lo) & (positions < hi))).sum(1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def logprobs_of_ids(model, prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_token_id: int,
                    batch_size: int = 64) -> torch.Tensor:
    """[B] log π(y|x) of completions given as the sampled token ids (EOS counted only where it was sampled).

    No decode/re-tokenise round trip: the ids are exactly what was sampled and what the DPO stage trains on.
    """
    out = []
    for start in range(0, len(prompt_ids), batch_size):
        ids, mask, completion = right_padded(prompt_ids[start : start + batch_size],
                                             completion_ids[start : start + batch_size], pad_token_id)
        ids, mask, completion = ids.to(model.device), mask.to(model.device), completion.to(model.device)
        token_logp = forward_logprobs(model, ids, mask)
        out.append(token_logp.masked_fill(~completion[:, 1:], 0.0).sum(1).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def right_padded(prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_token_id: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, completion mask) [B, L] for prompt + completion rows, right-padded."""
    lengths = [len(p) + len(c) for p, c in zip(prompt_ids, completion_ids)]
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("an empty prompt cannot be scored: its first completion token has no context")
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    completion = torch.zeros((len(lengths), width), dtype=torch.bool)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c, dtype=torch.long)
        mask[i, : len(p) + len(c)] = 1
        completion[i, len(p) : len(p) + len(c)] = True
    return ids, mask, completion
