"""Scalarising K (normalised) rewards into the one reward an RL baseline optimises.

MORLHF optimises ``Σ_k λ_k r̃_k``; MaxMin-RLHF (Chakraborty et al. 2024) the per-sample ``min_k r̃_k`` (its public
code) or, as its paper states the objective, ``min_k E[r̃_k]`` (`MinOfExpected`). All are
scorer callables ``score(prompts, responses) -> list[float]`` so they plug into `mpo.training.rl.train_rl`
as a single reward function. Pure Python: no TRL/Hydra/W&B here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mpo.core.simplex import check_simplex

Scorer = Callable[[list[str], list[str]], list[float]]


def _scores(scorers: Sequence[Scorer], prompts: list[str], responses: list[str]) -> list[list[float]]:
    """Each scorer once on the whole batch (scoring is batched), as ``[K][batch]`` floats."""
    table = [[float(v) for v in scorer(prompts, responses)] for scorer in scorers]
    for k, row in enumerate(table):
        if len(row) != len(responses):
            raise ValueError(f"scorer {k} returned {len(row)} scores for {len(responses)} responses")
    return table


class WeightedSum:
    """``Σ_k λ_k r̃_k(x, y)`` per sample (MORLHF's scalarised reward)."""

    def __init__(self, scorers: Sequence[Scorer], weights: Sequence[float]):
        if not scorers:
            raise ValueError("WeightedSum needs at least one scorer")
        self.scorers = list(scorers)
        self.weights = check_simplex(weights, len(self.scorers))
        self.__name__ = "weighted_sum"

    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        table = _scores(self.scorers, list(prompts), list(responses))
        return [sum(w * row[i] for w, row in zip(self.weights, table)) for i in range(len(responses))]


class MinOf:
    """``min_k r̃_k(x, y)`` per sample: MaxMin-RLHF's reward (the worst-off objective on each response)."""

    def __init__(self, scorers: Sequence[Scorer]):
        if not scorers:
            raise ValueError("MinOf needs at least one scorer")
        self.scorers = list(scorers)
        self.__name__ = "min_of"

    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        table = _scores(self.scorers, list(prompts), list(responses))
        return [min(row[i] for row in table) for i in range(len(responses))]


class MinOfExpected:
    """The reward whose policy gradient is that of ``min_k E[r̃_k]`` (MaxMin-RLHF's stated objective): on each batch,
    the objective with the lowest mean reward, ``k* = argmin_k mean_i r̃_k(x_i, y_i)``, scores every sample."""

    def __init__(self, scorers: Sequence[Scorer]):
        if not scorers:
            raise ValueError("MinOfExpected needs at least one scorer")
        self.scorers = list(scorers)
        self.__name__ = "min_of_expected"

    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        table = _scores(self.scorers, list(prompts), list(responses))
        worst = min(range(len(table)), key=lambda k: sum(table[k]) / max(len(table[k]), 1))
        return table[worst]
