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
sequences (mpo.config.budget) and takes the peak memory of its stages.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping
from typing import Any

CATEGORIES = ("shared", "singles", "own", "evaluation")
# keys of results.json's "cost" that are not stages
SUMMARY_KEYS = frozenset({"split", "given_singles", "total", "run"})


def cpu_seconds() -> float:
    """CPU time of this process and its finished children, all threads (stable under load, unlike wall time)."""
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Meter:
    """The one cost meter: wall and CPU seconds since it was started, and the process's peak memory."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()

    def reading(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall0, "cpu_seconds": cpu_seconds() - self.cpu0,
                "peak_memory_mb": peak_memory_mb()}


def stage_entry(cost: Mapping[str, float], category: str, *, reused: bool = False, artifact: str | None = None,
                trained_sequences: int | None = None) -> dict[str, Any]:
    """One stage of results.json's ``cost``: its seconds, CPU-seconds and peak memory (a `Meter` reading), the
    category it is charged to, whether it was reused from the store and which artifact it is."""
    entry = {"seconds": cost.get("seconds", 0.0), "cpu_seconds": cost.get("cpu_seconds", 0.0),
             "peak_memory_mb": cost.get("peak_memory_mb", 0.0)}
    if trained_sequences is not None:
        entry["trained_sequences"] = trained_sequences
    return {**entry, "category": category, "reused": reused, "artifact": artifact}


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
