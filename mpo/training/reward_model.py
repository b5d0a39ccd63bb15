"""Bradley–Terry reward model on one objective's preference pairs, through TRL's RewardTrainer.

The model is ``AutoModelForSequenceClassification(num_labels=1)`` built from a causal-LM backbone (its transformer
weights, a fresh scalar head) or from an earlier reward model (warm start, as EM does). TRL 1.16 takes the
explicit-prompt preference format as is: it appends EOS to ``chosen``/``rejected`` and tokenizes
``prompt + chosen`` and ``prompt + rejected`` as whole texts, and `mpo.scorers.reward_model.RewardModelScore`
reads texts the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import RewardConfig, RewardTrainer

from mpo.data.pairs import pair_columns
from mpo.infra.distributed import is_main
from mpo.models.policies import load_tokenizer
from mpo.scorers.reward_model import RewardModelScore
from mpo.training.common import train_and_save, trl_kwargs



def train_reward_model(
    backbone_path: str | Path,
    pairs: Dataset,
    out_dir: str | Path,
    *,
    trl_args: Mapping[str, Any],
    eval_pairs: Dataset | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    seed: int = 0,
) -> dict[str, float]:
    """Fit r(x, y) so that σ(r(x, chosen) − r(x, rejected)) is the preference probability; save into ``out_dir``.

    Returns the final training loss/accuracy and, given ``eval_pairs``, the held-out pair accuracy and mean
    margin of the SAVED model (reloaded and scored by plain forward passes, so the artifact itself is checked).
    """
    out_dir = Path(out_dir)
    tokenizer = load_tokenizer(backbone_path, padding_side=None)
    # Passing the path lets TRL build the num_labels=1 model (seeded head init, pad_token_id copied into the
    # config, harmless missing-head/unexpected-lm_head warnings silenced); an RM path reloads its own head.
    trainer = RewardTrainer(
        model=str(backbone_path),
        args=RewardConfig(**trl_kwargs(trl_args, out_dir, seed)),
        train_dataset=pair_columns(pairs, token_ids=False),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    metrics = train_and_save(trainer, out_dir, "reward_model", logged=("accuracy", "margin"))
    del trainer
    if eval_pairs is not None and len(eval_pairs) > 0 and is_main():  # rank 0 saved the model
        metrics.update(evaluate_reward_model(out_dir, eval_pairs))
    return metrics


def evaluate_reward_model(path: str | Path, pairs: Dataset, batch_size: int = 64) -> dict[str, float]:
    """Held-out pair accuracy (strictly r(chosen) > r(rejected)) and mean margin of a saved reward model."""
    chosen, rejected = pair_rewards(RewardModelScore(path, batch_size=batch_size), pairs)
    return {"eval/accuracy": float((chosen > rejected).float().mean()),
            "eval/margin": float((chosen - rejected).mean()),
            "eval/pairs": float(len(pairs))}


def pair_rewards(score: RewardModelScore, pairs: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """r(x, chosen) and r(x, rejected) for every pair, as two float tensors."""
    prompts = list(pairs["prompt"])
    chosen = torch.tensor(score(prompts, list(pairs["chosen"])))
    rejected = torch.tensor(score(prompts, list(pairs["rejected"])))
    return chosen, rejected
