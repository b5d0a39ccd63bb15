"""``report.md``: the comparison's table, its paired differences and a reading of them, generated from the rows
`mpo.compare` builds (docs/design.md §5). Every sentence is computed from the numbers; none is written by hand.

The reading answers the paper's two claims per β: is MPO's min win-rate at least that of the baseline (and of
Reward Soups), by the paired test when there is one (over prompts within the trained seeds, and whether that
verdict survives the seed-level test: seeds taken as a sample of training runs, `mpo.analysis.paired`); and what MPO costs against the baseline's own stages,
with and without training its single-objective policies (the paper: about a quarter of MaxMin-RLHF's).
"""

from __future__ import annotations

import math
from pathlib import Path

from mpo.analysis.paired import seed_level_text

MPO, SOUPS = "mpo", "reward_soups"


def _row(rows: list[dict], label: str, beta: float, task: str) -> dict | None:
    return next((r for r in rows if r["label"] == label and r["beta"] == beta and r["task"] == task), None)


def _num(value: float, spec: str) -> str:
    """``value`` in ``spec``, or – where it is unknown (a cost an older file does not split): never "nan"."""
    return "–" if not math.isfinite(value) else f"{value:{spec}}"


def _ratio(a: float, b: float) -> str:
    return "–" if math.isnan(a) or math.isnan(b) or b <= 0 else f"{a / b:.2f}"


def _seed_verdict(match: dict) -> str:
    """``seed-level [-0.200, +0.030]; t [-0.350, +0.180]: does not survive``: whether the prompt-level verdict
    holds when the seeds are taken as a sample of training runs; with one seed, that it needs two."""
    if match["n"] < 2 or match.get("min_win_rate/seed_significant") is None:
        return f"the seed-level test needs ≥ 2 seeds (this pair has {match['n']})"
    survives, prompt_level = match["min_win_rate/seed_significant"], match["min_win_rate/significant"]
    if prompt_level:
        verdict = "survives" if survives else "does not survive"
    else:
        verdict = "significant at seed level only" if survives else "not significant either"
    return f"seed-level {seed_level_text(match, 'min_win_rate')}: {verdict}"


def _versus(ours: dict, theirs: dict, paired: list[dict]) -> str:
    """``0.669 vs 0.516: Δ +0.153 [+0.09, +0.21] over prompts within 3 seeds, significant; seed-level [...];
    t [...]: survives`` (paired), or the two means."""
    text = f"{_num(ours['min_win_rate/mean'], '.3f')} vs {_num(theirs['min_win_rate/mean'], '.3f')}"
    match = next((p for p in paired if p["label"] == ours["label"] and p["baseline"] == theirs["label"]
                  and p["beta"] == ours["beta"] and p["task"] == ours["task"]), None)
    if match is None:
        return text + " (no paired test)"
    verdict = "significant" if match["min_win_rate/significant"] else "not significant"
    diff, low, high = (_num(match[f"min_win_rate/{k}"], "+.3f") for k in ("diff", "ci_low", "ci_high"))
    return (text + f": Δ {diff} [{low}, {high}] over prompts within {match['n']} seed(s), {verdict}; "
            + _seed_verdict(match))


def _cost_line(ours: dict, theirs: dict) -> str:
    own, singles = ours["cost_own_cpu_seconds/mean"], ours["cost_singles_cpu_seconds/mean"]
    base = theirs["cost_own_cpu_seconds/mean"]
    evaluation = [_num(r["cost_evaluation_cpu_seconds/mean"], ".0f") for r in (ours, theirs)]
    return (f"MPO's own stages {_num(own, '.0f')} CPU-s, {_ratio(own, base)}× {theirs['label']}'s "
            f"{_num(base, '.0f')} (given the single policies); with training its single policies "
            f"({_num(singles, '.0f')} CPU-s) {_ratio(own + singles, base)}×; its evaluation (sequence-level "
            f"decoding) {evaluation[0]} CPU-s vs {evaluation[1]}")


def reading(rows: list[dict], paired: list[dict], baseline: str) -> list[str]:
    """One bullet per (task, β) that has an MPO row: min win-rate against the baseline and Reward Soups, cost."""
    lines = []
    for ours in (r for r in rows if r["label"] == MPO):
        head = f"- **{ours['task']}, β = {ours['beta']:g}** ({ours['n']} seed(s)): MPO min win-rate "
        parts = []
        for label in dict.fromkeys([baseline, SOUPS]):
            theirs = _row(rows, label, ours["beta"], ours["task"])
            if theirs is not None:
                parts.append(f"vs {label} {_versus(ours, theirs, paired)}")
        theirs = _row(rows, baseline, ours["beta"], ours["task"])
        cost = f". {_cost_line(ours, theirs)}." if theirs is not None else "."
        lines.append(head + "; ".join(parts or ["(no baseline row)"]) + cost)
    return lines


def _budget(rows: list[dict]) -> str:
    own = sorted({f"{r['trained_sequences_own/mean']:.0f}" for r in rows
                  if not math.isnan(r["trained_sequences_own/mean"]) and r["trained_sequences_own/mean"] > 0})
    return ", ".join(own) if own else "–"


def write_report(rows: list[dict], table: str, paired: list[dict] | None, paired_table: str | None,
                 baseline: str | None, written: dict[str, Path], out_dir: Path, command: str) -> Path:
    """Write ``report.md`` into ``out_dir``: setup, the reading, the table, the paired table, the plots."""
    tasks = sorted({r["task"] for r in rows})
    betas = sorted({r["beta"] for r in rows})
    seeds = sorted({s for r in rows for s in str(r["seeds"]).split(";")})
    lines = ["# Comparison report", "",
             f"Task(s) {', '.join(tasks)}; β {', '.join(f'{b:g}' for b in betas)}; seeds {', '.join(seeds)}. "
             f"Sequences trained in each method's own stages (one budget per trained stage, trainer.budget): "
             f"{_budget(rows)}.", "", f"Made by `{command}`.", ""]
    if baseline is not None:
        lines += ["## Reading", "", *reading(rows, paired or [], baseline), ""]
    lines += ["## Table", "", table, ""]
    if paired_table is not None:
        lines += ["## Paired differences", "", paired_table, ""]
    plots = [f"- `{path.name}`" for name, path in written.items() if path.suffix == ".png"]
    lines += ["## Plots", "", *plots, ""]
    path = Path(out_dir) / "report.md"
    path.write_text("\n".join(lines))
    return path
