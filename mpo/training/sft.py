"""The reference policy: a tokenizer and a small causal LM built locally, pre-trained by TRL's SFTTrainer."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedTokenizerFast, TrainerCallback

from mpo.infra.distributed import is_main
from mpo.models.policies import load_tokenizer
from mpo.training.common import model_dtype, save_model, train_from_checkpoint, trl_kwargs

EOS = "<|endoftext|>"


def build_tokenizer(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` (GPT-2's scheme, so any string round-trips)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its bars print blank lines into a piped console; the build says when it is done
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS)
    tokenizer.padding_side = "left"
    return tokenizer


def build_base_model(texts: Sequence[str], vocab_size: int, architecture: PretrainedConfig, out_dir: Path) -> dict:
    """Train the tokenizer, initialise a causal LM from ``architecture`` around it, save both to out_dir."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer(texts, vocab_size)
    eos = tokenizer.eos_token_id
    architecture.update(dict(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos))
    model = AutoModelForCausalLM.from_config(architecture)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer)}


@torch.no_grad()
def mean_token_loss(model_path: str | Path, texts: Sequence[str], batch_size: int = 64, max_length: int = 128) -> float:
    """Mean next-token cross-entropy (nats) of ``texts`` + EOS under the model: the held-out SFT loss."""
    tokenizer = load_tokenizer(model_path)
    tokenizer.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(str(model_path)).eval()
    max_length = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        batch = [t + tokenizer.eos_token for t in texts[start : start + batch_size]]
        enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        labels[:, 0] = -100
        logits = model(**enc).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], reduction="sum")
        total, count = total + nll.item(), count + int((labels[:, 1:] != -100).sum())
    return total / max(count, 1)


def train_sft(
    model_path: str | Path,
    texts: Dataset,
    out_dir: Path,
    *,
    trl_args: Mapping[str, Any],
    eval_texts: Sequence[str] = (),
    callbacks: Sequence[TrainerCallback] = (),
    seed: int = 0,
) -> dict[str, float]:
    """SFT on a dataset with a ``text`` column; returns held-out loss before and after."""
    from trl import SFTConfig, SFTTrainer  # importing trl costs seconds: only when a stage trains

    before = mean_token_loss(model_path, eval_texts) if eval_texts else math.nan
    tokenizer = load_tokenizer(model_path)
    tokenizer.padding_side = "right"
    dtype = model_dtype(trl_args)  # we load the model ourselves, so TRL gets no model_init_kwargs
    trl_args = {k: v for k, v in trl_args.items() if k != "model_init_kwargs"}
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=getattr(torch, dtype))
    args = SFTConfig(**trl_kwargs({"eos_token": tokenizer.eos_token, **trl_args}, out_dir, seed))
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=texts.select_columns(["text"]),
        processing_class=tokenizer, callbacks=list(callbacks),
    )
    result = train_from_checkpoint(trainer)
    save_model(trainer, out_dir)
    load_tokenizer(model_path).save_pretrained(out_dir)  # keep left padding for generation
    after = mean_token_loss(out_dir, eval_texts) if eval_texts and is_main() else math.nan  # rank 0 saved it
    return {"train_loss": float(result.training_loss), "eval_loss_before": before, "eval_loss_after": after}
