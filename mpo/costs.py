"""A method's cost, split the way the comparison needs it (docs/design.md §3).

Every stage a run used is charged to one category:

- ``shared``: what every method's comparison needs and pays once (task data, base model, SFT reference, the
  reference's samples and preference pairs, the reference's evaluation samples);
- ``singles``: the single-objective policies π_k (and, for RL singles, their reward models): "given" for a
  post-processing method such as MPO or Reward Soups;
- ``own``: the method's own stages (reward models and RL for the RLHF baselines, the weight estimate for MPO);
- ``evaluation``: sampling and scoring the method's responses (inference: MPO's sequence-level decoding shows here).

``given_singles`` is ``own``: what the method costs once the single policies exist (the paper's claim for MPO).
Each category sums wall seconds, CPU seconds (all threads; stable under load, unlike wall time), trained
sequences (mpo.budget) and takes the peak memory of its stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CATEGORIES = ("shared", "singles", "own", "evaluation")
SHARED_STAGES = frozenset({"data", "base_model", "reference", "eval_reference", "reference_samples"})
# keys of results.json's "cost" that are not stages
SUMMARY_KEYS = frozenset({"split", "given_singles", "total", "run"})


def category(stage: str, charge: str) -> str:
    """The category of ``stage`` recorded while the run was charging ``charge`` (own, singles, evaluation)."""
    if stage in SHARED_STAGES or stage.startswith("pairs_"):
        return "shared"
    return charge


def stages(cost: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The per-stage entries of results.json's ``cost`` (without the summaries)."""
    return {name: entry for name, entry in cost.items() if name not in SUMMARY_KEYS}


def split(costs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per category: seconds, cpu_seconds, trained_sequences summed; peak_memory_mb the largest; stage names."""
    out = {name: {"seconds": 0.0, "cpu_seconds": 0.0, "trained_sequences": 0, "peak_memory_mb": 0.0, "stages": []}
           for name in CATEGORIES}
    for stage, entry in costs.items():
        total = out[entry.get("category", "own")]
        for key in ("seconds", "cpu_seconds", "trained_sequences"):
            total[key] += entry.get(key) or 0
        total["peak_memory_mb"] = max(total["peak_memory_mb"], entry.get("peak_memory_mb") or 0.0)
        total["stages"].append(stage)
    return out


def summary(costs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """results.json's ``cost``: the stages, their split, ``given_singles`` and the ``total`` of all stages."""
    parts = split(costs)
    total = {key: sum(part[key] for part in parts.values()) for key in ("seconds", "cpu_seconds", "trained_sequences")}
    total["peak_memory_mb"] = max(part["peak_memory_mb"] for part in parts.values())
    return {**costs, "split": parts, "given_singles": {k: v for k, v in parts["own"].items() if k != "stages"},
            "total": total}
