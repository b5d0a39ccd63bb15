"""One evaluation for every method (docs/design.md §3): the same held-out prompts, decoding config and seed;
per objective the mean reward, the reward minus the reference's, and the win-rate against the reference's
response to the same prompt (tie = ½) with a bootstrap confidence interval over prompts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from mpo.policies import Decoding, TextPolicy

log = logging.getLogger(__name__)

Scorer = Callable[[list[str], list[str]], list[float]]


@dataclass(frozen=True)
class Samples:
    """Responses to ``prompts`` repeated ``n`` times (row-major: prompt i's samples at i*n ... i*n+n-1)."""

    prompts: list[str]
    n: int
    responses: list[str]
    # whether each response ended with EOS; None when the policy does not say
    finished: list[bool] | None = None
    # the sampled token ids per response (prompt, completion with EOS where finished); None for text policies
    prompt_ids: list[list[int]] | None = None
    completion_ids: list[list[int]] | None = None

    @property
    def flat_prompts(self) -> list[str]:
        return [p for p in self.prompts for _ in range(self.n)]


def sample(policy: TextPolicy, prompts: Sequence[str], n: int, decoding: Decoding) -> Samples:
    """n responses per prompt; with their token ids and EOS flags when the policy can say (`HFPolicy`)."""
    flat = [p for p in prompts for _ in range(n)]
    chunk = decoding.batch_size
    detailed = hasattr(policy, "generate_tokens")
    responses: list[str] = []
    finished: list[bool] = []
    prompt_ids: list[list[int]] = []
    completion_ids: list[list[int]] = []
    for start in tqdm(range(0, len(flat), chunk), desc="sampling", leave=False, disable=len(flat) <= chunk):
        # a distinct but reproducible seed per chunk
        step = Decoding(**{**decoding.__dict__, "seed": decoding.seed + start})
        if not detailed:
            responses += policy.generate(flat[start : start + chunk], step)
            continue
        out = policy.generate_tokens(flat[start : start + chunk], step)
        responses += out.responses
        finished += out.finished
        prompt_ids += out.prompt_ids
        completion_ids += out.completion_ids
    if not detailed:
        return Samples(list(prompts), n, responses)
    return Samples(list(prompts), n, responses, finished, prompt_ids, completion_ids)


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
    """1 where the policy's response beats the reference's to the same prompt, ½ on a tie, 0 otherwise."""
    return (policy_scores > reference_scores).double() + 0.5 * (policy_scores == reference_scores).double()


def bootstrap_ci(per_prompt: torch.Tensor, resamples: int, level: float, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over prompts of the mean of ``per_prompt`` values."""
    n = per_prompt.numel()
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (resamples, n), generator=gen)
    means = per_prompt[idx].mean(1)
    alpha = (1 - level) / 2
    return float(torch.quantile(means, alpha)), float(torch.quantile(means, 1 - alpha))


def compare(
    policy_scores: Mapping[str, torch.Tensor],
    reference_scores: Mapping[str, torch.Tensor],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Per-objective reward, reward delta and win-rate (+CI), and the minimum win-rate over objectives."""
    reward, reward_ref, delta, win_rate = {}, {}, {}, {}
    for name, scores in policy_scores.items():
        ref = reference_scores[name]
        reward[name], reward_ref[name] = float(scores.mean()), float(ref.mean())
        delta[name] = reward[name] - reward_ref[name]
        per_prompt = win_indicators(scores, ref).mean(1)
        low, high = bootstrap_ci(per_prompt, resamples, level, seed)
        win_rate[name] = {"mean": float(per_prompt.mean()), "ci_low": low, "ci_high": high}
    worst = min(win_rate, key=lambda k: win_rate[k]["mean"])
    return {
        "reward": reward,
        "reward_reference": reward_ref,
        "reward_delta": delta,
        "win_rate": win_rate,
        "min_win_rate": win_rate[worst]["mean"],
        "min_win_rate_objective": worst,
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
) -> dict:
    """Sample the policy on the reference's prompts and compare objective by objective."""
    start = time.perf_counter()
    samples = sample(policy, reference.prompts, reference.n, decoding)
    scores = score_all(scorers, samples)
    results = compare(scores, reference_scores, resamples=resamples, level=level, seed=decoding.seed)
    results["samples"] = show_samples(samples, reference, n_show)
    results["mean_response_words"] = sum(len(r.split()) for r in samples.responses) / max(len(samples.responses), 1)
    log.info("evaluated %d responses in %.1f s", len(samples.responses), time.perf_counter() - start)
    return results


def reference_seed(decoding: Decoding) -> Decoding:
    """The reference's own samples use a different seed, so reference-vs-itself is a real comparison (~½)."""
    return Decoding(**{**decoding.__dict__, "seed": decoding.seed + 1_000_003})
