"""One training budget for every trained stage (docs/design.md §2): optimizer steps × sequences per step.

A DPO or reward-model example is a preference pair (two sequences); an RL example is one sampled completion.
With ``trainer.budget.steps`` set, each of these stages (every single-objective DPO policy, every reward model,
every RL run) takes exactly that many optimizer steps of ``sequences_per_step`` sequences, so a comparison at
equal budget is one override. The per-device batch and gradient accumulation are derived from it (a preset may
fix one of them for memory; the other follows). ``steps: null`` leaves each stage's own trainer keywords.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mpo.infra.errors import ConfigError

# sequences per training example of each budgeted stage
SEQUENCES_PER_EXAMPLE = {"dpo": 2, "reward_model": 2, "rl": 1}
# keywords the budget sets: a preset that also sets them would be silently overridden
OWNED = ("max_steps", "num_train_epochs")


def budgeted(stage: str, kwargs: Mapping[str, Any], steps: int, sequences_per_step: int,
             processes: int = 1) -> dict[str, Any]:
    """``kwargs`` of ``trainer.<stage>`` with max_steps, per-device batch and gradient accumulation set so that
    one optimizer step sees ``sequences_per_step`` sequences; a ConfigError names any conflict."""
    for key in OWNED:
        if key in kwargs:
            raise ConfigError(f"trainer.{stage}.{key}={kwargs[key]} conflicts with trainer.budget.steps={steps}: "
                              f"drop trainer.{stage}.{key}, or set trainer.budget.steps=null to use it")
    unit = SEQUENCES_PER_EXAMPLE[stage]
    if sequences_per_step % unit:
        raise ConfigError(f"trainer.budget.sequences_per_step={sequences_per_step} is odd, but a {stage} example is "
                          f"a pair of {unit} sequences: use an even number")
    examples = sequences_per_step // unit
    batch, accumulation = _split(stage, examples, kwargs, processes)
    out = {**kwargs, "max_steps": steps, "per_device_train_batch_size": batch, "gradient_accumulation_steps": accumulation}
    generations = out.get("num_generations")
    if stage == "rl" and generations and examples % generations:
        raise ConfigError(f"trainer.budget.sequences_per_step={sequences_per_step} completions per step is not a "
                          f"multiple of trainer.rl.num_generations={generations}: change one of them")
    return out


def _split(stage: str, examples: int, kwargs: Mapping[str, Any], processes: int) -> tuple[int, int]:
    """(per-device batch, accumulation steps) with batch × accumulation × processes = examples."""
    batch, accumulation = kwargs.get("per_device_train_batch_size"), kwargs.get("gradient_accumulation_steps")
    if batch is not None and accumulation is not None:
        if batch * accumulation * processes != examples:
            raise ConfigError(
                f"trainer.{stage}: per_device_train_batch_size={batch} × gradient_accumulation_steps={accumulation} × "
                f"{processes} process(es) ≠ {examples} examples per step from trainer.budget: drop one of the two")
        return batch, accumulation
    if batch is None and accumulation is None:
        accumulation = 1  # the whole step in one batch
    fixed = batch if batch is not None else accumulation
    if examples % (fixed * processes):
        key = "per_device_train_batch_size" if batch is not None else "gradient_accumulation_steps"
        raise ConfigError(f"trainer.{stage}.{key}={fixed} × {processes} process(es) does not divide the {examples} "
                          f"examples per step that trainer.budget gives: change trainer.{stage}.{key}")
    other = examples // (fixed * processes)
    return (batch, other) if batch is not None else (other, accumulation)


def global_batch(stage: str, kwargs: Mapping[str, Any], processes: int) -> dict[str, Any]:
    """``kwargs`` of an unbudgeted stage (SFT) with its per-device batch divided between ``processes``, so that
    a multi-process job trains on the batch the preset names (the same problem as one process, not a larger one)."""
    batch = kwargs.get("per_device_train_batch_size")
    if processes == 1 or batch is None:
        return dict(kwargs)
    if batch % processes:
        raise ConfigError(f"trainer.{stage}.per_device_train_batch_size={batch} is the batch of one optimizer step "
                          f"and does not split between {processes} processes: use a multiple of {processes}")
    return {**kwargs, "per_device_train_batch_size": batch // processes}


def split_steps(steps: int, share: float) -> tuple[int, int]:
    """A two-stage method's budget: ``share`` of the steps to its first stage, the rest (at least 1) to the second."""
    first = min(max(1, round(steps * share)), steps - 1) if steps > 1 else 1
    return first, max(1, steps - first)


def trained_sequences(trainer, stage: str) -> int:
    """Sequences a finished TRL trainer's optimizer steps saw (steps × per-device batch × accumulation × world)."""
    args = trainer.args
    examples = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    return int(trainer.state.global_step * examples * SEQUENCES_PER_EXAMPLE[stage])
