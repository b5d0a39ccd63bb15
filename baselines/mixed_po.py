"""Mixed Preference Optimization (Gou & Nguyen 2024, arXiv 2403.19443): DPO on easy pairs, then RL on hard.

The paper splits the preference data with a trained reward model: for a pair ``(x, y_w, y_l)`` it takes the
reward gap ``r(x,y_w) − r(x,y_l)``. Pairs with a large gap, on which the reward model agrees with the label
by a margin, form the *easy* set (DPO learns them quickly and robustly); pairs with a small gap form the
*difficult* set, which goes to online RL (PPO in the paper; TRL GRPO/RLOO here) with the DPO policy as the
reference model. We follow that split on the *signed* gap:

- easy  ⇔ ``gap > δ`` with ``δ ≥ 0``: the label and the reward model agree, by more than ``δ``;
- hard  ⇔ the rest, i.e. small gaps *and* pairs the reward model ranks the other way round (``gap ≤ 0``,
  likely label noise, which the paper wants kept out of DPO; RL only uses their prompts, so a wrong label
  cannot hurt there).

``δ`` is given directly (``threshold``) or as a quantile of the gaps (``quantile=q`` puts about the top
``1 − q`` of pairs by gap into the easy set, the median by default). The paper fixes the threshold per
dataset; a quantile is the scale-free equivalent when reward models differ between runs. A threshold takes
precedence over the quantile. With K objectives, ``gaps`` is the scalarised gap (e.g. ``Σ_k λ_k`` of the
normalised per-objective gaps) computed by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from datasets import Dataset


def easy_threshold(gaps: Sequence[float], *, threshold: float | None = None, quantile: float | None = 0.5) -> float:
    """The ``δ`` above which a pair is easy: ``threshold``, else ``max(0, quantile of the gaps)``."""
    if threshold is not None:
        if not threshold >= 0 or not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number >= 0 (pairs the reward model ranks against "
                             f"their label must stay in the hard set), got {threshold}")
        return float(threshold)
    if quantile is None:
        raise ValueError("give either threshold (a reward gap) or quantile (in [0, 1]) to split the pairs")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must lie in [0, 1], got {quantile}")
    values = torch.tensor([float(g) for g in gaps], dtype=torch.float64)
    return max(0.0, torch.quantile(values, quantile).item())


def split_pairs(pairs: Dataset, gaps: Sequence[float], *, threshold: float | None = None,
                quantile: float | None = 0.5) -> tuple[Dataset, Dataset]:
    """``(easy, hard)`` subsets of ``pairs`` (order kept); ``gaps[i] = r(chosen_i) − r(rejected_i)``.

    Easy: ``gap > δ`` (see `easy_threshold`); hard: every other pair. Each pair lands in exactly one set.
    """
    gaps = [float(g) for g in gaps]
    if len(gaps) != len(pairs):
        raise ValueError(f"got {len(gaps)} gaps for {len(pairs)} pairs; give one reward gap per pair")
    if not gaps:
        raise ValueError("split_pairs got no pairs")
    if not all(math.isfinite(g) for g in gaps):
        raise ValueError("reward gaps must be finite")
    delta = easy_threshold(gaps, threshold=threshold, quantile=quantile)
    easy = [i for i, g in enumerate(gaps) if g > delta]
    hard = [i for i, g in enumerate(gaps) if not g > delta]
    return pairs.select(easy), pairs.select(hard)


def unique_pairs(pairs: Dataset, gaps: Sequence[float]) -> tuple[Dataset, list[float]]:
    """One row per unordered response pair ``(prompt, {chosen, rejected})``, first-seen order.

    Pooling K objectives' pairs repeats a pair once per objective that compared it, often with opposite
    labels (sentiment prefers a, conciseness b): DPO would then push both ways on the same two responses and
    the split would count the pair twice. A pair whose copies agree is kept once; one whose copies disagree
    is kept once in the orientation the scalarised reward prefers (``gap ≥ 0``), the preference of the
    weighted objective Mixed-PO optimises. Returns the pairs and their gaps (``r(chosen) − r(rejected)``).
    """
    gaps = [float(g) for g in gaps]
    if len(gaps) != len(pairs):
        raise ValueError(f"got {len(gaps)} gaps for {len(pairs)} pairs; give one reward gap per pair")
    chosen_column = pairs["chosen"]  # one read of the column, not a row fetch per repeated pair
    first: dict[tuple, int] = {}
    conflicted: set[tuple] = set()
    for i, (prompt, chosen, rejected) in enumerate(zip(pairs["prompt"], chosen_column, pairs["rejected"])):
        key = (prompt, frozenset((chosen, rejected)))
        if key not in first:
            first[key] = i
        elif chosen_column[first[key]] != chosen:
            conflicted.add(key)
    rows, kept_gaps = [], []
    for key, i in first.items():
        rows.append(i)
        kept_gaps.append(abs(gaps[i]) if key in conflicted else gaps[i])
    kept = pairs.select(rows)
    flip = [key in conflicted and gaps[i] < 0 for key, i in first.items()]
    if any(flip):
        kept = kept.map(lambda row, j: {"chosen": row["rejected"], "rejected": row["chosen"]} if flip[j] else row,
                        with_indices=True)
    return kept, kept_gaps


def hard_prompts(hard_pairs: Dataset) -> list[str]:
    """The unique prompts of the hard pairs, in first-seen order: RL's training prompts."""
    if "prompt" not in hard_pairs.column_names:
        raise ValueError(f"pairs need a 'prompt' column, have {hard_pairs.column_names}")
    return list(dict.fromkeys(hard_pairs["prompt"]))


def shared_budget(trainer, dpo_share: float) -> tuple[dict, dict]:
    """trainer.dpo and trainer.rl with one budget between them: ``dpo_share`` of trainer.budget.steps for the
    DPO stage, the rest for RL (each stage keeps its batch). Without a budget, each stage's own max_steps."""
    from mpo.config.budget import split_steps

    dpo, rl = dict(trainer.dpo), dict(trainer.rl)
    if trainer.budget.steps is not None:
        dpo["max_steps"], rl["max_steps"] = split_steps(trainer.budget.steps, dpo_share)
    return dpo, rl


def build(ctx, method):
    """Mixed-PO on the union of every objective's pairs: DPO from the reference on the pairs the scalarised,
    normalised reward models agree with by a large margin ("easy"), then RL on the remaining ("hard")
    prompts from the DPO policy, which is also the KL reference."""
    from pathlib import Path

    from mpo.baselines.aggregation import WeightedSum
    from mpo.baselines.maxmin_rlhf import pooled_pairs
    from mpo.stages.context import MethodOutput, config_data, load_policy, lora_spec, model_path
    from mpo.stages.pipeline import preference_pairs, reference_policy
    from mpo.stages.rl import normalised_rewards, objective_reward_models, rl_policy, uniform_or

    weights = uniform_or(method.weights, len(ctx.objectives))
    models = objective_reward_models(ctx)
    rl_prompts, rewards, samples = normalised_rewards(ctx, method.rl, models)
    scalar = WeightedSum(rewards, weights)
    pairs = pooled_pairs(ctx, pairs_per_user=1).remove_columns("user")
    gaps = [c - r for c, r in zip(scalar(pairs["prompt"], pairs["chosen"]), scalar(pairs["prompt"], pairs["rejected"]))]
    pooled = len(pairs)
    pairs, gaps = unique_pairs(pairs, gaps)
    easy, hard = split_pairs(pairs, gaps, threshold=method.threshold, quantile=method.quantile)
    reference = reference_policy(ctx)
    dpo_args, rl_args = shared_budget(ctx.cfg.trainer, method.dpo_share)
    spec = {"weights": weights, "threshold": method.threshold, "quantile": method.quantile,
            "normalization": method.rl.normalization, "beta": ctx.cfg.task.beta,
            "trainer": config_data(dpo_args), "seed": ctx.cfg.seed, **lora_spec(ctx)}

    def train_easy(out: Path) -> dict:
        from mpo.training.dpo import train_dpo

        return {"easy_pairs": len(easy), "hard_pairs": len(hard),
                **train_dpo(model_path(reference), easy, out, beta=ctx.cfg.task.beta, trl_args=dpo_args,
                            callbacks=ctx.trainer_callbacks("dpo_easy"), seed=ctx.cfg.seed, lora=ctx.cfg.policy.lora)}

    deps = [reference, samples, *models, *(preference_pairs(ctx, k)[1] for k in ctx.objectives)]
    dpo = ctx.build("dpo_easy", "mixed_po_dpo", spec, train_easy, deps, collective=True)
    policy = rl_policy(ctx, "rl_mixed_po", {"method": "mixed_po", "weights": weights}, method.rl,
                       hard_prompts(hard), rewards, weights, [*models, samples], start=dpo, trl_args=rl_args)
    info = {"pooled_pairs": pooled, "easy_pairs": len(easy), "hard_pairs": len(hard), "dpo": dpo.info,
            "rl": policy.info}
    return MethodOutput(load_policy(ctx, policy), label="mixed_po", weights=dict(zip(ctx.objectives, weights)),
                        weights_source="preset", info=info)
