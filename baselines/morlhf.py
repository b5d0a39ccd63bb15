"""MORLHF: RL from the reference on the weighted sum of normalised per-objective reward models."""

from __future__ import annotations

from mpo.config.schema import MORLHFMethod
from mpo.stages.context import MethodOutput, RunContext, load_policy, weights_label
from mpo.stages.rl import normalised_rewards, objective_reward_models, rl_policy, uniform_or


def build(ctx: RunContext, method: MORLHFMethod) -> MethodOutput:
    weights = uniform_or(method.weights, len(ctx.objectives))
    models = objective_reward_models(ctx)
    prompts, rewards, samples = normalised_rewards(ctx, method.rl, models)
    # each normalised reward is its own TRL reward function, so TRL logs rewards/<name>/mean per objective
    policy = rl_policy(ctx, "rl_morlhf", {"method": "morlhf", "weights": weights}, method.rl, prompts, rewards,
                       weights, [*models, samples])
    label = "morlhf" if method.weights is None else weights_label("morlhf", weights)
    return MethodOutput(load_policy(ctx, policy), label=label, weights=dict(zip(ctx.objectives, weights)),
                        weights_source="preset", info=_info(models, policy))


def _info(models, policy) -> dict:
    return {"reward_models": {m.key: m.info for m in models}, "rl": policy.info}
