"""MaxMin-RLHF (Chakraborty et al. 2024): RL on the per-sample minimum of normalised rewards; with
``em=true`` the reward models are a mixture learned by hard EM over annotators of pooled, unlabelled pairs."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, concatenate_datasets

from mpo.config.schema import MaxMinMethod
from mpo.stages.context import MethodOutput, RunContext, config_data, load_policy, model_path
from mpo.stages.pipeline import preference_pairs, reference_policy
from mpo.stages.rl import normalised_rewards, objective_reward_models, rl_policy
from mpo.store.artifacts import Artifact


def build(ctx: RunContext, method: MaxMinMethod) -> MethodOutput:
    from mpo.baselines.aggregation import MinOf, MinOfExpected

    models = em_reward_models(ctx, method) if method.em else objective_reward_models(ctx)
    prompts, rewards, samples = normalised_rewards(ctx, method.rl, models)
    spec = {"method": "maxmin_rlhf", "em": method.em}
    reward = MinOf(rewards)
    if method.min_of == "expected":  # a key of its own only here: the per-sample runs keep their artifacts
        spec["min_of"], reward = "expected", MinOfExpected(rewards)
    policy = rl_policy(ctx, "rl_maxmin", spec, method.rl, prompts, [reward], None, [*models, samples])
    info = {"reward_models": [m.key for m in models], "rl": policy.info}
    tags = [t for t, on in (("em", method.em), ("expected", method.min_of == "expected")) if on]
    label = "maxmin_rlhf" + (f"[{','.join(tags)}]" if tags else "")
    return MethodOutput(load_policy(ctx, policy), label=label, info=info)


def pooled_pairs(ctx: RunContext, pairs_per_user: int) -> Dataset:
    """Every objective's pairs without their objective label: each run of ``pairs_per_user`` pairs of one
    objective is one synthetic annotator (the group EM must recover), then all are shuffled together."""
    parts = []
    for k in ctx.objectives:
        pairs = preference_pairs(ctx, k)[0].select_columns(["prompt", "chosen", "rejected"])
        users = [f"{k}-{i // pairs_per_user}" for i in range(len(pairs))]
        parts.append(pairs.add_column("user", users))
    return concatenate_datasets(parts).shuffle(seed=ctx.cfg.seed)


def em_reward_models(ctx: RunContext, method: MaxMinMethod) -> list[Artifact]:
    reference = reference_policy(ctx)
    pairs_deps = [preference_pairs(ctx, k)[1] for k in ctx.objectives]
    spec = {"n_groups": method.n_groups, "iterations": method.em_iterations, "pairs_per_user": method.pairs_per_user,
            "trainer": config_data(ctx.cfg.trainer.reward_model), "seed": ctx.cfg.seed}

    def build(out: Path) -> dict:
        from mpo.baselines.em import learn_reward_mixture

        pooled = pooled_pairs(ctx, method.pairs_per_user)
        result = learn_reward_mixture(model_path(reference), pooled, out, n_groups=method.n_groups,
                                      iterations=method.em_iterations, trl_args=ctx.cfg.trainer.reward_model,
                                      seed=ctx.cfg.seed)
        return {**result, "group_purity": purity(result["assignments"])}

    mixture = ctx.build("reward_mixture", "reward_mixture", spec, build, [reference, *pairs_deps])
    return [_group(mixture, h) for h in range(method.n_groups)]


def purity(assignments: dict[str, int]) -> float:
    """Fraction of annotators whose EM group is the majority group of their true objective."""
    by_objective: dict[str, list[int]] = {}
    for user, group in assignments.items():
        by_objective.setdefault(user.rsplit("-", 1)[0], []).append(group)
    agree = sum(max(groups.count(g) for g in set(groups)) for groups in by_objective.values())
    return agree / max(len(assignments), 1)


def _group(mixture: Artifact, h: int) -> Artifact:
    """One group's reward model, seen as an artifact of its own (same manifest, its own directory)."""
    return Artifact(stage=mixture.stage, digest=f"{mixture.digest}/group_{h}", path=mixture.path / f"group_{h}",
                    manifest=mixture.manifest, reused=mixture.reused)
