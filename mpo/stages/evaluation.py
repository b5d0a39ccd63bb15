"""One evaluation for every method (docs/design.md §5): the same held-out prompts, decoding config and seed;
per objective the mean reward, the reward minus the reference's, and the win-rate against the reference's
responses to the same prompt (every policy sample against every reference sample, tie = ½) with a bootstrap
confidence interval over prompts; the minimum win-rate over objectives with its own bootstrap CI; and the
per-prompt win-rates with a fingerprint of the prompts, which a paired comparison of two runs needs
(`mpo.compare --baseline`)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import torch

from mpo.core.stats import bootstrap_indices, percentile_interval
from mpo.infra import distributed
from mpo.models.policies import Decoding, TextPolicy
from mpo.models.sampling import Samples, sample

log = logging.getLogger(__name__)

Scorer = Callable[[list[str], list[str]], list[float]]
# decimals of the per-prompt win-rates in results.json (exact to 1e-6; keeps the file readable)
PER_PROMPT_DECIMALS = 6


def score_all(scorers: Mapping[str, Scorer], samples: Samples) -> dict[str, torch.Tensor]:
    """Scores per objective as a [n_prompts, n] tensor."""
    flat = samples.flat_prompts
    out = {}
    for name, scorer in scorers.items():
        values = torch.tensor(scorer(flat, samples.responses), dtype=torch.float64)
        if values.numel() != len(flat):
            raise ValueError(f"scorer for {name!r} returned {values.numel()} scores for {len(flat)} responses")
        out[name] = values.view(len(samples.prompts), samples.n)
    return out


def win_indicators(policy_scores: torch.Tensor, reference_scores: torch.Tensor) -> torch.Tensor:
    """1 where the policy's response beats the reference's, ½ on a tie, 0 otherwise (elementwise, broadcast)."""
    return (policy_scores > reference_scores).double() + 0.5 * (policy_scores == reference_scores).double()


def pairwise_win_rates(policy_scores: torch.Tensor, reference_scores: torch.Tensor) -> torch.Tensor:
    """``[n_prompts]``: per prompt, the mean of `win_indicators` over all (policy sample, reference sample)
    pairs: ``[n_prompts, n]`` against ``[n_prompts, m]``. Every pair rather than the j-th against the j-th, so
    the estimate does not depend on how the samples happen to be ordered, and has less variance."""
    return win_indicators(policy_scores[:, :, None], reference_scores[:, None, :]).mean((1, 2))


def bootstrap_ci(per_prompt: torch.Tensor, resamples: int, level: float, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over prompts of the mean of ``per_prompt`` values."""
    idx = bootstrap_indices(per_prompt.numel(), resamples, torch.Generator().manual_seed(seed))
    low, high = percentile_interval(per_prompt[idx].mean(1), level)
    return float(low), float(high)


def min_bootstrap_ci(per_prompt: Mapping[str, torch.Tensor], resamples: int, level: float,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over prompts of min over objectives of the mean per-prompt win-rate: each resample
    draws one set of prompt indices for all objectives (the same draws as `bootstrap_ci` with this seed), so
    the objectives stay paired prompt by prompt. The minimum of resampled means is biased low when objectives
    are close, so this interval leans low: conservative for a claim that the minimum is high."""
    stacked = torch.stack([values.double() for values in per_prompt.values()])  # [K, n_prompts]
    idx = bootstrap_indices(stacked.shape[1], resamples, torch.Generator().manual_seed(seed))
    low, high = percentile_interval(stacked[:, idx].mean(2).min(0).values, level)
    return float(low), float(high)


def prompts_fingerprint(prompts: Sequence[str]) -> str:
    """First 16 hex digits of the sha256 of the prompts as a JSON list (UTF-8, ``ensure_ascii=False``):
    two runs with the same fingerprint were evaluated on the same prompts in the same order."""
    text = json.dumps(list(prompts), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def compare(
    policy_scores: Mapping[str, torch.Tensor],
    reference_scores: Mapping[str, torch.Tensor],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    prompts: Sequence[str] | None = None,
) -> dict:
    """Per-objective reward, reward delta and win-rate (+CI), the minimum win-rate over objectives (+CI), and
    ``per_prompt``: the per-prompt win-rates (rounded to `PER_PROMPT_DECIMALS`), the number of prompts, the
    bootstrap seed and the prompts' fingerprint (None without ``prompts``), for paired tests across runs."""
    reward, reward_ref, delta, win_rate, per_prompt = {}, {}, {}, {}, {}
    for name, scores in policy_scores.items():
        ref = reference_scores[name]
        reward[name], reward_ref[name] = float(scores.mean()), float(ref.mean())
        delta[name] = reward[name] - reward_ref[name]
        per_prompt[name] = pairwise_win_rates(scores, ref)
        low, high = bootstrap_ci(per_prompt[name], resamples, level, seed)
        win_rate[name] = {"mean": float(per_prompt[name].mean()), "ci_low": low, "ci_high": high}
    worst = min(win_rate, key=lambda k: win_rate[k]["mean"])
    min_low, min_high = min_bootstrap_ci(per_prompt, resamples, level, seed)
    return {
        "reward": reward,
        "reward_reference": reward_ref,
        "reward_delta": delta,
        "win_rate": win_rate,
        "min_win_rate": win_rate[worst]["mean"],
        "min_win_rate_ci": {"low": min_low, "high": min_high, "level": level},
        "min_win_rate_objective": worst,
        "per_prompt": {
            "prompts_sha256": None if prompts is None else prompts_fingerprint(prompts),
            "n_prompts": len(next(iter(per_prompt.values()))),
            "seed": seed,
            "win_rate": {name: [round(float(v), PER_PROMPT_DECIMALS) for v in values]
                         for name, values in per_prompt.items()},
        },
    }


def objective_correlations(scores: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Pearson correlation of every pair of objectives over the same responses: negative = they conflict."""
    names = list(scores)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            x, y = scores[a].flatten(), scores[b].flatten()
            out[f"{a}~{b}"] = float(torch.corrcoef(torch.stack([x, y]))[0, 1])
    return out


def show_samples(samples: Samples, reference: Samples, k: int) -> list[dict[str, str]]:
    """The first response to each of the first ``k`` prompts, beside the reference's."""
    return [
        {"prompt": p, "response": samples.responses[i * samples.n], "reference": reference.responses[i * reference.n]}
        for i, p in enumerate(samples.prompts[:k])
    ]


def evaluate(
    policy: TextPolicy,
    reference: Samples,
    reference_scores: Mapping[str, torch.Tensor],
    scorers: Mapping[str, Scorer],
    decoding: Decoding,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    n_show: int = 8,
    reference_policy=None,
    shard: bool = False,
) -> dict | None:
    """Sample the policy on the reference's prompts and compare objective by objective; with
    ``reference_policy`` (an `HFPolicy` of π_ref), also estimate KL(π‖π_ref) (`kl_to_reference`). With ``shard``
    every rank of a multi-process job samples its share; rank 0 scores and gets the metrics, the others None."""
    start = time.perf_counter()
    samples = sample(policy, reference.prompts, reference.n, decoding, desc="evaluating", shard=shard)
    if shard and not distributed.is_main():
        return None
    scores = score_all(scorers, samples)
    results = compare(scores, reference_scores, resamples=resamples, level=level, seed=decoding.seed,
                      prompts=reference.prompts)
    results["kl"] = kl_to_reference(policy, reference_policy, samples, decoding, resamples=resamples, level=level)
    results["samples"] = show_samples(samples, reference, n_show)
    results["mean_response_words"] = sum(len(r.split()) for r in samples.responses) / max(len(samples.responses), 1)
    log.info("evaluated %d responses in %.1f s", len(samples.responses), time.perf_counter() - start)
    return results


def kl_to_reference(policy, reference_policy, samples: Samples, decoding: Decoding, *, resamples: int, level: float
                    ) -> dict | None:
    """KL(π‖π_ref) in nats per response, on the policy's own evaluation samples: per prompt the mean of
    log π(y|x) − log π_ref(y|x) over its samples, then the mean over prompts with a bootstrap CI over prompts.

    None (logged) where no density is available: a text-only policy, or a decoding that is not the policies'
    own distribution (temperature or top-p ≠ 1) — an estimate there would be a wrong number, not a noisy one.
    """
    if reference_policy is None or samples.prompt_ids is None or not hasattr(policy, "response_logprobs"):
        return None
    if decoding.temperature != 1.0 or decoding.top_p != 1.0:
        log.warning("KL to the reference not reported: it needs samples from the policies' own distributions "
                    "(eval.temperature=1, eval.top_p=1), got temperature %s, top_p %s", decoding.temperature,
                    decoding.top_p)
        return None
    log_policy = policy.response_logprobs(samples.prompt_ids, samples.completion_ids, samples.log_normaliser)
    log_reference = reference_policy.response_logprobs(samples.prompt_ids, samples.completion_ids)
    per_prompt = (log_policy - log_reference).view(len(samples.prompts), samples.n).mean(1)
    if not torch.isfinite(per_prompt).all():
        raise FloatingPointError("the KL estimate to the reference is not finite: a sampled response has zero "
                                 "probability under the reference (mismatched tokenizers or models?)")
    low, high = bootstrap_ci(per_prompt, resamples, level, decoding.seed)
    return {"mean": float(per_prompt.mean()), "ci_low": low, "ci_high": high,
            "estimator": "sequence-level, log Ẑ from candidates" if samples.log_normaliser else "exact density"}


def reference_seed(decoding: Decoding) -> Decoding:
    """The reference's own samples use a different seed, so reference-vs-itself is a real comparison (~½)."""
    return Decoding(**{**decoding.__dict__, "seed": decoding.seed + 1_000_003})
