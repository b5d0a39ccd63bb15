"""An objective's scorer as every stage calls it: built from its config node, and checked on every call.

A scorer is any callable ``score(prompts, responses) -> list[float]``. What comes back is checked before
anything uses it: one finite real number per response. NaN, inf, strings, ``None`` or a list of the wrong
length would otherwise flow into preference labels, normalisers and win-rates as plausible numbers (a NaN
compares False, so it silently loses every pairwise comparison). A scorer that raises is reported with its
objective. Either way the run stops with a `ScorerError` naming the objective, the scorer and the fix.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mpo.infra.errors import ConfigError, ScorerError, one_line

Scorer = Callable[[list[str], list[str]], list[float]]


def build_scorer(objective: str, node: Mapping[str, Any]) -> CheckedScorer:
    """Instantiate ``task.objectives.<objective>.scorer``. A plain function named by ``_target_`` is the scorer
    itself (Hydra would call it with no arguments): it is passed as a callable, its other keys bound as
    keyword arguments, as ``_partial_: true`` would. A function that *returns* a scorer says ``_partial_: false``."""
    from hydra.utils import get_object, instantiate

    node = dict(node)
    target = str(node.get("_target_"))
    try:
        if "_partial_" not in node and not inspect.isclass(get_object(target)):
            node["_partial_"] = True
        scorer = instantiate(node)
    except Exception as err:  # noqa: BLE001 - an import or constructor error: name the objective
        raise ScorerError(f"task.objectives.{objective}.scorer ({target}) could not be built: "
                          f"{type(err).__name__}: {_first_line(err)}") from err
    if not callable(scorer):
        raise ConfigError(f"task.objectives.{objective}.scorer: {target} gave a {type(scorer).__name__}, which "
                          "cannot be called; a scorer is a callable score(prompts, responses) -> list[float]")
    return CheckedScorer(objective, target, scorer)


class CheckedScorer:
    """A scorer whose every answer is checked (see the module docstring); attributes pass through."""

    def __init__(self, objective: str, target: str, scorer: Scorer):
        self.objective, self.target, self.scorer = objective, target, scorer
        self.__name__ = getattr(scorer, "__name__", None) or target.rsplit(".", 1)[-1]  # TRL logs rewards by it

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        try:
            values = self.scorer(list(prompts), list(responses))
        except ScorerError:
            raise
        except Exception as err:  # noqa: BLE001 - whatever the scorer raised, said with its objective
            raise ScorerError(f"the scorer of objective {self.objective!r} ({self.target}) raised "
                              f"{type(err).__name__}: {_first_line(err)}") from err
        return check_scores(values, len(responses), self.objective, self.target)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scorer, name)


def check_scores(values: Any, n: int, objective: str, target: str) -> list[float]:
    """``values`` as a list of ``n`` finite floats, or a `ScorerError` saying what is wrong with it."""
    where = f"the scorer of objective {objective!r} ({target})"
    fix = "a scorer must return one finite float per response"
    if hasattr(values, "tolist"):  # numpy arrays and torch tensors
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ScorerError(f"{where} returned a {type(values).__name__}, not a list: {fix}")
    if len(values) != n:
        raise ScorerError(f"{where} returned {len(values)} scores for {n} responses: {fix}")
    out = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ScorerError(f"{where} returned {value!r} ({type(value).__name__}) for response {i}: {fix}")
        if not math.isfinite(value):
            raise ScorerError(f"{where} returned {value} for response {i}: {fix} (no NaN or inf)")
        out.append(float(value))
    return out


def _first_line(err: BaseException) -> str:
    return one_line(str(err))[:300]
