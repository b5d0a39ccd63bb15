"""What every TRL stage shares: trainer arguments that work on a laptop CPU and on a GPU alike, and resuming
a killed stage from its last checkpoint."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mpo.infra import console
from mpo.store.artifacts import CHECKPOINTS


def trl_kwargs(args: Mapping[str, Any], out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments for a TRL ``*Config``: safe defaults, then the stage's own ``args`` on top.

    TRL 1.16 defaults to bf16 and gradient checkpointing, which fail on CPU. Results are saved by us
    (``save_model``); checkpoints (every ``save_steps``, when the trainer preset gives it; only the last one
    kept) go to ``<build dir>/_trainer``, where a rerun of a killed build finds them and resumes
    (`train_from_checkpoint`). W&B logging goes through `mpo.infra.tracking`'s callback, never through ``report_to``
    (one run per job, no stray runs).
    """
    on_gpu = torch.cuda.is_available()
    checkpoints = args.get("save_steps") is not None
    defaults: dict[str, Any] = {
        "output_dir": str(Path(out_dir) / CHECKPOINTS),
        "report_to": "none",
        "save_strategy": "steps" if checkpoints else "no",
        "save_total_limit": 1 if checkpoints else None,
        "bf16": on_gpu and torch.cuda.is_bf16_supported(),
        "use_cpu": not on_gpu,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
        "logging_steps": 10,
        "disable_tqdm": True,
        "ddp_find_unused_parameters": False,  # every parameter of a causal LM takes part in its loss
        "seed": seed,
    }
    return {**defaults, **dict(args)}


def model_dtype(trl_args: Mapping[str, Any]) -> str:
    """The dtype a stage's weights load in: its ``model_init_kwargs`` (set from policy.dtype by
    `mpo.config.load.apply_dtype`), float32 when it has none."""
    return (trl_args.get("model_init_kwargs") or {}).get("dtype", "float32")


def train_and_save(trainer, out_dir: Path, stage: str, logged: Sequence[str] = ()) -> dict[str, float]:
    """Train, save model + tokenizer into ``out_dir``, drop TRL's empty output_dir, and return the loss,
    step count, sequences trained on (``stage``: "dpo" or "reward_model", mpo.config.budget), runtime and the last
    logged value of each key in ``logged`` (as ``train/<key>``)."""
    from mpo.config.budget import trained_sequences

    result = train_from_checkpoint(trainer)
    save_model(trainer, out_dir)  # model + tokenizer (processing_class)
    trainer_dir = Path(trainer.args.output_dir)
    if trainer_dir.is_dir() and not trainer_dir.is_symlink() and not any(trainer_dir.iterdir()):
        trainer_dir.rmdir()  # TRL creates it even with save_strategy="no"
    metrics = {"train/loss": float(result.training_loss), "train/steps": float(result.global_step),
               "train/runtime_seconds": float(result.metrics.get("train_runtime", 0.0)),
               "trained_sequences": trained_sequences(trainer, stage)}
    for key in logged:
        values = [row[key] for row in trainer.state.log_history if key in row]
        if values:
            metrics[f"train/{key}"] = float(values[-1])
    return metrics


def last_checkpoint(trainer_dir: str | Path) -> str | None:
    """The newest complete ``checkpoint-<step>`` under ``trainer_dir`` (the Trainer writes trainer_state.json
    last, so a checkpoint cut short by a kill has none and is skipped), or None."""
    found = []
    for path in Path(trainer_dir).glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        if step.isdigit():
            found.append((int(step), path))
    return str(max(found)[1]) if found else None


def train_from_checkpoint(trainer):
    """``trainer.train()``, resumed from the last checkpoint a killed build of this stage left, if any: the
    Trainer restores weights, optimizer, scheduler and RNG states and skips the batches already seen, so on
    CPU with a fixed seed the result equals an uninterrupted build's (tests/test_resume.py)."""
    from transformers.trainer_callback import PrinterCallback

    from mpo.infra.distributed import barrier, broadcast, is_main, lost_ranks_said, world_size

    trainer.remove_callback(PrinterCallback)  # per-step metric dicts go to W&B (mpo.infra.tracking), not the console
    # every rank resumes from rank 0's checkpoint, which holds every rank's RNG state (mpo.store.artifacts)
    checkpoint = broadcast(last_checkpoint(trainer.args.output_dir) if is_main() else None, "finding the checkpoint")
    with lost_ranks_said(f"training {console.current_build() or type(trainer).__name__}"):
        result = trainer.train(resume_from_checkpoint=checkpoint)
    if world_size() > 1:  # no rank still writes its RNG state into the checkpoints rank 0 is about to remove
        barrier("finishing training")
    return result


def save_model(trainer, out_dir: str | Path) -> None:
    """``trainer.save_model`` without the ``training_args.bin`` it pickles next to the weights: it holds every
    argument, secrets such as ``hub_token`` included, and nothing loads it (the manifest records the spec)."""
    trainer.save_model(str(out_dir))
    (Path(out_dir) / "training_args.bin").unlink(missing_ok=True)
