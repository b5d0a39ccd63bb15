"""Reward normalisation shared by the RL baselines (docs/design.md §1-2): put K reward models on one scale.

Two normalisers, both fitted on samples from the reference policy and both returning a new scorer callable
``score(prompts, responses) -> list[float]``:

- `ZScore`: ``(r − mean) / std`` with mean and std of ``r`` on the reference samples (population std).
- `PNormalizer`: the paper's operator ``P(r)(x,y) = r(x,y) − β·log E_{y'~π_ref}[exp(r(x,y')/β)]``, the
  per-prompt log-partition estimated with the m reference samples of that prompt,
  ``b(x) = β·(logsumexp_j(r(x,y'_j)/β) − log m)``. ``P(r)`` equals ``β·log(π_r/π_ref)``, the DPO implicit
  reward of the single-objective optimum, so a normalised RL reward is on the same scale as MPO's ``ℓ_k``.
  Applying ``P`` twice with the same reference samples changes nothing: ``b`` of ``P(r)`` is exactly 0.

``b(x)`` exists only for prompts seen at fit time. Scoring another prompt raises a KeyError by default
(``unseen="error"``); ``unseen="mean"`` falls back to the mean of the fitted baselines ``E_x b(x)``, which
keeps the reward's scale but not its per-prompt centring.
Pure Python + torch (float64 log-sum-exp); no TRL/Hydra/W&B.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

Scorer = Callable[[list[str], list[str]], list[float]]


def _flatten(prompts: Sequence[str], responses_per_prompt: Sequence[Sequence[str]]) -> tuple[list[str], list[str]]:
    if len(prompts) != len(responses_per_prompt):
        raise ValueError(f"{len(prompts)} prompts but {len(responses_per_prompt)} lists of reference responses; "
                         "give one list of reference responses per prompt")
    flat_prompts = [x for x, ys in zip(prompts, responses_per_prompt) for _ in ys]
    return flat_prompts, [y for ys in responses_per_prompt for y in ys]


def _score(scorer: Scorer, prompts: list[str], responses: list[str]) -> torch.Tensor:
    rewards = torch.tensor([float(r) for r in scorer(prompts, responses)], dtype=torch.float64)
    if rewards.numel() != len(responses):
        raise ValueError(f"scorer returned {rewards.numel()} scores for {len(responses)} responses")
    if not torch.isfinite(rewards).all():
        raise ValueError("scorer returned non-finite rewards on the reference samples")
    return rewards


@dataclass
class ZScore:
    """``r̃ = (r − mean) / std``, mean and std of ``r`` on reference samples."""

    scorer: Scorer
    mean: float
    std: float
    name: str = "zscore"

    def __post_init__(self) -> None:
        self.__name__ = self.name  # TRL names reward functions (and their logs) by __name__

    @classmethod
    def fit(cls, scorer: Scorer, prompts: Sequence[str], reference_responses: Sequence[str]) -> "ZScore":
        """``prompts[i]`` and ``reference_responses[i]`` are one reference sample (aligned lists)."""
        if len(prompts) != len(reference_responses) or not prompts:
            raise ValueError(f"need aligned, non-empty prompts and reference_responses, got {len(prompts)} and "
                             f"{len(reference_responses)}")
        rewards = _score(scorer, list(prompts), list(reference_responses))
        std = rewards.std(unbiased=False).item()
        if std == 0.0:
            raise ValueError("the reward is constant on the reference samples, so its z-score is undefined; "
                             "use more (or more varied) reference samples, or kind='p'")
        name = f"zscore_{getattr(scorer, '__name__', type(scorer).__name__)}"
        return cls(scorer=scorer, mean=rewards.mean().item(), std=std, name=name)

    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        rewards = _score(self.scorer, list(prompts), list(responses))
        return ((rewards - self.mean) / self.std).tolist()


@dataclass
class PNormalizer:
    """``P(r)(x,y) = r(x,y) − b(x)``, ``b(x) = β·log mean_j exp(r(x,y'_j)/β)`` over reference samples."""

    scorer: Scorer
    beta: float
    baselines: dict[str, float] = field(repr=False)
    unseen: str = "error"
    name: str = "p_normalised"

    def __post_init__(self) -> None:
        self.__name__ = self.name

    @classmethod
    def fit(cls, scorer: Scorer, prompts: Sequence[str], reference_responses_per_prompt: Sequence[Sequence[str]],
            beta: float, unseen: str = "error") -> "PNormalizer":
        """``reference_responses_per_prompt[i]`` are m samples from ``π_ref`` for ``prompts[i]``.

        A prompt listed twice pools its samples (one estimate from all of them).
        """
        if not beta > 0:
            raise ValueError(f"beta must be > 0 (the KL strength of the task), got {beta}")
        if unseen not in ("error", "mean"):
            raise ValueError(f"unseen must be 'error' or 'mean', got {unseen!r}")
        flat_prompts, flat_responses = _flatten(prompts, reference_responses_per_prompt)
        if not flat_responses or any(len(ys) == 0 for ys in reference_responses_per_prompt):
            raise ValueError("every prompt needs at least one reference response to estimate its log-partition")
        rewards = _score(scorer, flat_prompts, flat_responses)
        grouped: dict[str, list[torch.Tensor]] = {}
        for prompt, reward in zip(flat_prompts, rewards):
            grouped.setdefault(prompt, []).append(reward)
        baselines = {x: log_mean_exp(torch.stack(rs), beta) for x, rs in grouped.items()}
        name = f"p_{getattr(scorer, '__name__', type(scorer).__name__)}"
        return cls(scorer=scorer, beta=beta, baselines=baselines, unseen=unseen, name=name)

    def baseline(self, prompt: str) -> float:
        if prompt in self.baselines:
            return self.baselines[prompt]
        if self.unseen == "mean":
            return sum(self.baselines.values()) / len(self.baselines)
        raise KeyError(f"PNormalizer has no reference samples for prompt {prompt[:80]!r}: fit it on the prompts "
                       "you score (e.g. the RL training prompts), or fit with unseen='mean' to fall back to the "
                       "mean baseline over the fitted prompts")

    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        rewards = _score(self.scorer, list(prompts), list(responses))
        return [r - self.baseline(x) for x, r in zip(prompts, rewards.tolist())]


def log_mean_exp(rewards: torch.Tensor, beta: float) -> float:
    """``β·log mean_j exp(r_j/β)``, stably (log-sum-exp in float64)."""
    rewards = rewards.to(torch.float64)
    m = torch.tensor(float(rewards.numel()), dtype=torch.float64)
    return (beta * (torch.logsumexp(rewards / beta, dim=0) - torch.log(m))).item()


def fit_normalizer(kind: str, scorer: Scorer, prompts: Sequence[str],
                   reference_responses: Sequence[Sequence[str]], *, beta: float | None = None,
                   unseen: str = "error") -> ZScore | PNormalizer:
    """Fit ``kind`` ("zscore" | "p") on m reference responses per prompt (``reference_responses[i]`` for
    ``prompts[i]``); z-score pools all samples, P keeps a baseline per prompt and needs ``beta``."""
    if kind == "zscore":
        return ZScore.fit(scorer, *_flatten(prompts, reference_responses))
    if kind == "p":
        if beta is None:
            raise ValueError("kind='p' needs beta (the task's KL strength, the same beta as DPO and RL)")
        return PNormalizer.fit(scorer, prompts, reference_responses, beta, unseen=unseen)
    raise ValueError(f"normalizer kind must be 'zscore' or 'p', got {kind!r}")
