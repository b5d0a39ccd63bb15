"""A trained Bradley–Terry reward model as an objective's scorer: ``score(prompts, responses) -> list[float]``.

The text is scored exactly as TRL's RewardTrainer saw it in training: ``prompt + response + eos``, tokenized
with the tokenizer's default special tokens, padded on the RIGHT. Right padding matters: HF sequence-classification
heads pool the rightmost non-pad token (which works for either side), but GPT-2-style models number positions
0..T-1 regardless of the attention mask, so left padding would shift every position and change the score.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


class RewardModelScore:
    """Scalar reward-model output r(x, y); the model is loaded on first use so configs can build it cheaply."""

    def __init__(self, path: str | Path, batch_size: int = 64, device: str | torch.device | None = None,
                 max_length: int | None = None, dtype: str = "float32"):
        self.path = str(path)
        self.dtype = dtype  # the weights' dtype (policy.dtype for our reward models); scores are returned as float
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.max_length = max_length  # when set, keep the END of long texts (the pooled token lives there)
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None

    def _load(self) -> None:
        tokenizer = AutoTokenizer.from_pretrained(self.path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "left"
        model = AutoModelForSequenceClassification.from_pretrained(self.path, dtype=getattr(torch, self.dtype))
        if model.config.pad_token_id is None:  # needed to find the last real token of a padded row
            model.config.pad_token_id = tokenizer.pad_token_id
        self._model, self._tokenizer = model.to(self.device).eval(), tokenizer

    def texts(self, prompts: list[str], responses: list[str]) -> list[str]:
        """What the reward model reads: the RewardTrainer appends EOS to every sequence it trains on."""
        if self._tokenizer is None:
            self._load()
        eos = self._tokenizer.eos_token or ""
        return [p + r if (p + r).endswith(eos) else p + r + eos for p, r in zip(prompts, responses)]

    @torch.no_grad()
    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        texts = self.texts(list(prompts), list(responses))
        # Score in order of length so each batch pads little; results are put back in the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        scores = [0.0] * len(texts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self._tokenizer(
                [texts[i] for i in idx], return_tensors="pt", padding=True,
                truncation=self.max_length is not None, max_length=self.max_length,
            )
            logits = self._model(input_ids=batch["input_ids"].to(self.device),
                                 attention_mask=batch["attention_mask"].to(self.device)).logits
            for i, value in zip(idx, logits[:, 0].float().cpu().tolist()):
                scores[i] = value
        return scores
