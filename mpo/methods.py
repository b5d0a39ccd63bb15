"""The reference, single-objective and MPO rows. A method builds a policy from the shared stages; evaluation
is the same for all of them (`mpo.experiment`). Baselines live in `baselines/` with the same signature:
``build(ctx, method_cfg) -> MethodOutput``."""

from __future__ import annotations

import logging
from typing import Any

from mpo.config.schema import MPOMethod, ReferenceMethod, SingleMethod
from mpo.stages.context import MethodOutput, RunContext, load_components, load_policy, weights_label
from mpo.stages.estimation import max_min_weights
from mpo.stages.pipeline import reference_policy
from mpo.stages.singles import single_policy

log = logging.getLogger(__name__)


def mpo_label(method: MPOMethod, weights: list[float]) -> str:
    """MPO's row label, naming every setting that changes its numbers away from the default, e.g. ``mpo``,
    ``mpo[w=0.30,0.70]``, ``mpo[bsmd,proposal=reference]``, ``mpo[token]``, ``mpo[seq×16]``, ``mpo[-sentiment]``: two runs
    that differ only in decoding or estimator must not share a row (compare keeps one result per seed).
    ``weights`` are the mixture's, one per objective (shown for preset weights, which skip the solve, so
    solver and estimator settings do not show beside them)."""
    if method.label:
        return method.label + (f"[-{method.drop}]" if method.drop is not None else "")
    tags = []
    if method.weights is not None:
        label = weights_label("mpo", weights)
    else:
        label = "mpo"
        if method.criterion != "regret":
            tags.append(method.criterion)
        if method.target != "sequence":
            tags.append(f"target={method.target}")
        if method.solver == "bsmd":
            tags.append("bsmd")
        if method.estimator.proposal != "mixture":
            tags.append(f"proposal={method.estimator.proposal}")
        if method.estimator.round2_samples:
            tags.append(f"round2={method.estimator.round2_samples}")
    default = MPOMethod()
    if method.target == "token" and method.weights is None:
        pass  # the decoding is the target's (decoding=token): the tag says it
    elif method.decoding != default.decoding or method.num_candidates != default.num_candidates:
        tags.append("token" if method.decoding == "token" else f"seq×{method.num_candidates}")
    if method.defensive_share is not None:
        tags.append(f"defensive={method.defensive_share:g}")
    if method.singles != "dpo":
        tags.append(f"{method.singles}-singles")
    if tags:
        label += "[" + ",".join(tags) + "]"
    if method.drop is not None:
        label += f"[-{method.drop}]"
    return label


def reference(ctx: RunContext, method: ReferenceMethod) -> MethodOutput:
    return MethodOutput(load_policy(ctx, reference_policy(ctx)), label="reference")


def single(ctx: RunContext, method: SingleMethod) -> MethodOutput:
    artifact = single_policy(ctx, method.objective, by=method.singles)
    name = "single" if method.singles == "dpo" else f"single_{method.singles}"
    return MethodOutput(load_policy(ctx, artifact), label=f"{name}[{method.objective}]", info=artifact.info)


def mpo(ctx: RunContext, method: MPOMethod) -> MethodOutput:
    """Mix the single-objective policies log-linearly with preset weights or the max-min weights."""
    import torch

    from mpo.models.mixing import LogLinearMixture, MixturePolicy

    objectives = [k for k in ctx.objectives if k != method.drop]
    info: dict[str, Any] = {"mixed_objectives": objectives}
    if method.weights is not None:
        preset = dict(zip(ctx.objectives, method.weights))
        total = sum(preset[k] for k in objectives)
        if total <= 0:
            raise ValueError(f"method.weights give all mass to the dropped objective {method.drop!r}")
        weights, source = torch.tensor([preset[k] / total for k in objectives], dtype=torch.float64), "preset"
    else:
        weights, solved = max_min_weights(ctx, method, objectives)
        info.update(solved)
        source = method.solver if method.criterion == "regret" else method.criterion
        if method.target == "token":
            source = f"{method.criterion}/token"
    models, tokenizers = load_components(ctx, [single_policy(ctx, k, by=method.singles) for k in objectives])
    mixture = LogLinearMixture(models, weights.tolist(), tokenizers=tokenizers)
    # one policy with all the weight: its token-level and sequence-level mixtures coincide, resampling is moot
    mode = method.decoding if int((weights > 0).sum()) > 1 else "token"
    policy = MixturePolicy(mixture, tokenizers[0], mode=mode, num_candidates=method.num_candidates,
                           defensive_share=method.defensive_share)
    all_weights = {k: 0.0 for k in ctx.objectives} | dict(zip(objectives, map(float, weights)))
    label = mpo_label(method, [all_weights[k] for k in ctx.objectives])
    return MethodOutput(policy, label=label, weights=all_weights, weights_source=source, info=info)
