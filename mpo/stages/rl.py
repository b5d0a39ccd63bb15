"""The RL stage: reward models per objective, normalised on reference samples (`mpo.core.normalisation`), and one
RL run (TRL GRPO/RLOO) per reward definition, each an artifact so a sweep trains them once. The RL baselines
(MORLHF, MaxMin-RLHF, Mixed-PO) and RL-trained single policies (`mpo.stages.singles`) are built on it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mpo.config.schema import RLConfig
from mpo.core.normalisation import fit_normalizer
from mpo.scorers.reward_model import RewardModelScore
from mpo.stages.context import RunContext, config_data, lora_spec, model_path
from mpo.stages.pipeline import reference_policy, reference_train_samples, reward_model
from mpo.store.artifacts import Artifact


def uniform_or(weights: Sequence[float] | None, k: int) -> list[float]:
    return list(weights) if weights is not None else [1.0 / k] * k


def normalised_rewards(ctx: RunContext, rl: RLConfig, models: Sequence[Artifact],
               name: str = "reward_normalization") -> tuple[list[str], list[Callable], Artifact]:
    """Reward-model scorers normalised on m reference samples per RL prompt (z-score or the P operator).

    Returns the RL prompts, one normalised scorer per reward model, and the samples' artifact.
    """
    samples, artifact = reference_train_samples(ctx, reference_policy(ctx), rl.n_prompts, rl.normalization_samples,
                                          "rl_reference_samples")
    per_prompt = [samples.responses[i * samples.n : (i + 1) * samples.n] for i in range(len(samples.prompts))]
    # scoring the samples under every reward model: redone by each run, so timed as a stage of its own
    with ctx.timed(name):
        scorers = [fit_normalizer(rl.normalization, RewardModelScore(model_path(m), dtype=ctx.cfg.policy.dtype), samples.prompts, per_prompt,
                                  beta=ctx.cfg.task.beta, unseen="mean") for m in models]
    return samples.prompts, scorers, artifact


def objective_reward_models(ctx: RunContext) -> list[Artifact]:
    return [reward_model(ctx, k) for k in ctx.objectives]


def rl_policy(
    ctx: RunContext,
    name: str,
    spec: dict[str, Any],
    rl: RLConfig,
    prompts: list[str],
    reward_funcs: Sequence[Callable],
    reward_weights: Sequence[float] | None,
    deps: Sequence[Artifact],
    start: Artifact | None = None,
    trl_args: dict[str, Any] | None = None,
) -> Artifact:
    """RL from ``start`` (default: the reference), which is also the KL reference, with the task's β and
    ``trl_args`` (default: ``trainer.rl``, which carries the budget)."""
    start = start or reference_policy(ctx)
    trl_args = dict(ctx.cfg.trainer.rl if trl_args is None else trl_args)
    full_spec = {**spec, "rl": config_data(rl), "trainer": config_data(trl_args), "beta": ctx.cfg.task.beta,
                 "seed": ctx.cfg.seed, **lora_spec(ctx)}

    def build(out: Path) -> dict:
        from mpo.training.rl import train_rl

        eval_prompts = prompts[: min(64, len(prompts))]
        return train_rl(model_path(start), prompts, reward_funcs, out, beta=ctx.cfg.task.beta,
                        algorithm=rl.algorithm, reward_weights=reward_weights, trl_args=trl_args,
                        callbacks=ctx.trainer_callbacks(name), seed=ctx.cfg.seed, eval_prompts=eval_prompts,
                        lora=ctx.cfg.policy.lora)

    return ctx.build(name, "rl_policy", full_spec, build, [start, *deps], collective=True)
