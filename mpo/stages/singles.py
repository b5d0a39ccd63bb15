"""The single-objective policies π_k every post-processing method (MPO, Reward Soups) combines: DPO from the
reference on objective k's pairs, or RL from the reference on objective k's normalised reward model."""

from __future__ import annotations

from pathlib import Path

from mpo.config.schema import SINGLES, RLConfig
from mpo.data.pairs import pair_columns
from mpo.stages.context import RunContext, config_data, lora_spec, model_path
from mpo.stages.pipeline import preference_pairs, reference_policy, reward_model
from mpo.stages.rl import normalised_rewards, rl_policy
from mpo.store.artifacts import Artifact


def single_policy(ctx: RunContext, objective: str, by: str = "dpo") -> Artifact:
    """π_k, charged to the run's "singles" cost, trained ``by`` DPO from the reference on objective k's pairs,
    or by RL from the reference on objective k's normalised reward model; the task's β."""
    if by not in SINGLES:
        raise ValueError(f"single policies are trained by one of {SINGLES}, got {by!r}")
    with ctx.charged_to("singles"):
        return rl_single_policy(ctx, objective) if by == "rl" else dpo_single_policy(ctx, objective)


def dpo_single_policy(ctx: RunContext, objective: str) -> Artifact:
    reference = reference_policy(ctx)
    pairs, pairs_artifact = preference_pairs(ctx, objective)
    spec = {"beta": ctx.cfg.task.beta, "trainer": config_data(ctx.cfg.trainer.dpo), "seed": ctx.cfg.seed,
            **lora_spec(ctx)}

    def build(out: Path) -> dict:
        from mpo.training.dpo import train_dpo

        split = pairs.train_test_split(test_size=min(0.1, 256 / max(len(pairs), 1)), seed=ctx.cfg.seed)
        return train_dpo(model_path(reference), pair_columns(split["train"]), out, beta=ctx.cfg.task.beta,
                         trl_args=ctx.cfg.trainer.dpo, eval_pairs=pair_columns(split["test"]),
                         callbacks=ctx.trainer_callbacks(f"dpo_{objective}"), seed=ctx.cfg.seed, lora=ctx.cfg.policy.lora)

    return ctx.build(f"single_{objective}", "single_policy", spec, build, [reference, pairs_artifact],
                     collective=True)


def rl_single_policy(ctx: RunContext, objective: str) -> Artifact:
    """RL (the RL baselines' default settings, `RLConfig`) on objective k's reward model alone."""
    rl = RLConfig()
    model = reward_model(ctx, objective)
    prompts, (reward,), samples = normalised_rewards(ctx, rl, [model], name=f"reward_normalization_{objective}")
    return rl_policy(ctx, f"single_rl_{objective}", {"method": "single", "objective": objective}, rl, prompts,
                     [reward], [1.0], [model, samples])
