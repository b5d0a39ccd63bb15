"""Single-objective policy π_k by DPO (TRL DPOTrainer): the policy whose normalised reward is β·log(π_k/π_ref).

Pairs that carry the sampled token ids (``prompt_ids``, ``chosen_ids``, ``rejected_ids``: pairs labelled
from our own samples) are trained on those ids as they are: EOS only where the sample finished, no
decode/re-tokenise round trip. So the log-ratios MPO later computes on sampled ids measure exactly what DPO
trained. Text-only pairs (a dataset's) go through TRL's own tokenisation (EOS appended).

The reference is loaded from a path (TRL reloads a reference by ``config._name_or_path``, so a model built in
memory would break it); by default it is the initial policy itself, whose log-probabilities TRL precomputes
once (``precompute_ref_log_probs=True``), so no second model sits in memory during training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import DPOConfig, DPOTrainer

from mpo.data.pairs import ID_COLUMNS, has_token_ids, pair_columns
from mpo.infra.distributed import is_main, world_size
from mpo.models.adapters import peft_config, point_at_base
from mpo.models.logprobs import forward_logprobs
from mpo.models.policies import load_causal_lm, load_tokenizer, logprobs_of_ids
from mpo.training.common import model_dtype, train_and_save, trl_kwargs

log = logging.getLogger(__name__)


def train_dpo(
    model_path: str | Path,
    pairs: Dataset,
    out_dir: str | Path,
    *,
    beta: float,
    trl_args: Mapping[str, Any],
    ref_model_path: str | Path | None = None,
    eval_pairs: Dataset | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    seed: int = 0,
    lora: Any = None,
) -> dict[str, float]:
    """DPO from the policy at ``model_path`` against ``ref_model_path`` (default: that same initial policy).

    Saves model + tokenizer into ``out_dir``; with ``lora`` (`mpo.config.schema.LoRAConfig`) the model is a LoRA
    adapter on ``model_path`` (adapter_config.json + weights, pointing at it), and the reference is that base
    with the adapter disabled (TRL does this when given a ``peft_config`` and no ``ref_model``).

    Returns the training loss and TRL's last logged implicit-reward accuracy/margin, and on ``eval_pairs`` the
    held-out implicit-reward accuracy of the SAVED policy: the fraction of pairs with
    β·log(π/π_ref)(chosen) > β·log(π/π_ref)(rejected).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if "beta" in trl_args and float(trl_args["beta"]) != float(beta):
        raise ValueError(f"beta={beta} disagrees with trl_args.beta={trl_args['beta']}; set it in one place")
    if lora is not None and ref_model_path is not None:
        raise ValueError("a LoRA policy's DPO reference is its base (adapter disabled): pass no ref_model_path")
    out_dir = Path(out_dir)
    reference_path = str(ref_model_path or model_path)
    tokenizer = load_tokenizer(model_path, padding_side=None)
    args = {"precompute_ref_log_probs": True, **trl_args, "beta": beta}
    if world_size() > 1 and args["precompute_ref_log_probs"]:
        # TRL caches precomputed reference log-probs of an in-memory dataset in a per-process temp dir, which the
        # other ranks cannot open: a multi-process job scores the reference on the fly instead (the same loss)
        log.info("DPO across %d processes: reference log-probs computed on the fly, not precomputed", world_size())
        args["precompute_ref_log_probs"] = False
    trainer = TokenIdDPOTrainer(
        model=str(model_path),
        ref_model=None if ref_model_path is None else _causal_lm(reference_path, model_dtype(trl_args)),
        args=DPOConfig(**trl_kwargs(args, out_dir, seed)),
        train_dataset=_dpo_columns(pairs),
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=None if lora is None else peft_config(lora, model_path),
    )
    metrics = {"beta": float(beta),
               **train_and_save(trainer, out_dir, "dpo", logged=("rewards/accuracies", "rewards/margins"))}
    if lora is not None and is_main():  # rank 0 saved the adapter
        point_at_base(out_dir, model_path)
    del trainer
    if eval_pairs is not None and len(eval_pairs) > 0 and is_main():  # rank 0 saved the policy
        metrics.update(evaluate_implicit_reward(out_dir, reference_path, eval_pairs, beta=beta))
    return metrics


def _dpo_columns(pairs: Dataset) -> Dataset:
    """The sampled token ids when the pairs have them, else the text columns TRL tokenises."""
    if has_token_ids(pairs):
        return pairs.select_columns(list(ID_COLUMNS))
    return pair_columns(pairs, token_ids=False)


class TokenIdDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer that also takes pairs already given as token ids (it tokenises text itself).

    TRL's own preparation would map text → ids (adding EOS to every completion); with id columns there is
    nothing to map, only TRL's filter of prompts that alone fill ``max_length`` is kept.
    """

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if not has_token_ids(dataset):
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if args.max_length is not None and args.truncation_mode == "keep_start":
            dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length)
        return dataset


def evaluate_implicit_reward(policy_path: str | Path, reference_path: str | Path, pairs: Dataset, *,
                             beta: float, batch_size: int = 32) -> dict[str, float]:
    """Held-out accuracy and mean margin of the DPO implicit reward β·(log π − log π_ref) on preference pairs."""
    tokenizer = load_tokenizer(policy_path, padding_side=None)
    margin = torch.zeros(len(pairs), dtype=torch.float64)
    for path, sign in ((policy_path, 1.0), (reference_path, -1.0)):  # one model in memory at a time
        model = _causal_lm(path)
        margin += sign * beta * _pair_log_ratio(model, tokenizer, pairs, batch_size)
        del model
    return {"eval/reward_accuracy": float((margin > 0).float().mean()), "eval/reward_margin": float(margin.mean()),
            "eval/pairs": float(len(pairs))}


def _pair_log_ratio(model, tokenizer, pairs: Dataset, batch_size: int) -> torch.Tensor:
    """log π(chosen|x) − log π(rejected|x), on the sampled ids when the pairs have them (as DPO trained)."""
    if has_token_ids(pairs):
        prompt_ids, pad = list(pairs["prompt_ids"]), tokenizer.pad_token_id
        return (logprobs_of_ids(model, prompt_ids, list(pairs["chosen_ids"]), pad, batch_size)
                - logprobs_of_ids(model, prompt_ids, list(pairs["rejected_ids"]), pad, batch_size))
    prompts = list(pairs["prompt"])
    return (completion_logprobs(model, tokenizer, prompts, list(pairs["chosen"]), batch_size)
            - completion_logprobs(model, tokenizer, prompts, list(pairs["rejected"]), batch_size)).double()


@torch.no_grad()
def completion_logprobs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                        completions: list[str], batch_size: int = 32) -> torch.Tensor:
    """log π(y | x) summed over the completion's tokens, EOS included — the quantity DPO trains.

    Tokenized as TRL does: ``prompt`` and ``prompt + completion + eos`` as whole texts, the completion starting
    where the two token sequences diverge. Rows are right-padded so positions match the unpadded sequence.
    """
    rows = [_prompt_and_full_ids(tokenizer, p, c) for p, c in zip(prompts, completions)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(ids) for _, ids in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        completion_mask = torch.zeros((len(chunk), width), dtype=torch.bool)
        for i, (prompt_len, ids) in enumerate(chunk):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            completion_mask[i, prompt_len : len(ids)] = True
        attention_mask = (torch.arange(width)[None] < torch.tensor([len(ids) for _, ids in chunk])[:, None]).long()
        token_logp = forward_logprobs(model, input_ids, attention_mask)
        out.append((token_logp.cpu() * completion_mask[:, 1:]).sum(-1))
    return torch.cat(out) if out else torch.zeros(0)


def _prompt_and_full_ids(tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str) -> tuple[int, list[int]]:
    eos = tokenizer.eos_token or ""
    full_text = prompt + completion if completion.endswith(eos) else prompt + completion + eos
    prompt_ids, full_ids = tokenizer(prompt)["input_ids"], tokenizer(full_text)["input_ids"]
    shared = 0
    while shared < min(len(prompt_ids), len(full_ids)) and prompt_ids[shared] == full_ids[shared]:
        shared += 1
    return max(shared, 1), full_ids  # the first token has no prediction; a completion starts at ≥ 1


def _causal_lm(path: str | Path, dtype: str = "float32") -> PreTrainedModel:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_causal_lm(path, dtype).to(device).eval()  # a LoRA adapter's policy comes merged into its base

