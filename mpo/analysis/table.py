"""The comparison table: one row per (task, policy, label, β) with seeds aggregated (mean, std, CIs over seeds or
the run's own bootstrap), in a fixed order; as markdown, CSV and the plots beside them. The runs of a row must
differ in their seed alone (`mpo.analysis.setups.refuse_unlike`): otherwise the table is refused, not averaged."""

from __future__ import annotations

import csv
import math
import re
import statistics
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from mpo.analysis.plots import plot_cost, plot_kl, plot_reward_front, plot_win_rates, row_objectives, varies
from mpo.analysis.results import NAN
from mpo.analysis.setups import refuse_unlike
from mpo.core.stats import t_interval
from mpo.infra.costs import CATEGORIES as COST_PARTS

# Row order within one (task, policy, beta) block: method families in this order (others after them, by name),
# then weights in objective order (`sort_key`)
METHOD_ORDER = ("reference", "single", "mpo", "reward_soups", "morlhf", "maxmin_rlhf", "mixed_po")


# ------------------------------------------------------------------------------------------------ table
def mean_of(values: list[float]) -> float:
    return sum(values) / len(values) if values else NAN


def std_of(values: list[float]) -> float:
    if len(values) < 2 or any(math.isnan(v) for v in values):  # stdev raises on NaN
        return NAN
    return statistics.stdev(values)


def result_objectives(results: list[dict]) -> list[str]:
    return list(dict.fromkeys(o for r in results for o in r["objectives"]))


def row_key(result: dict) -> tuple:
    return (str(result["task"]), str(result["policy"]), str(result["label"]), float(result["beta"]))


def dedupe_seeds(group: list[dict]) -> list[dict]:
    """One result per seed: a second file for the same seed (a re-run) replaces the first, with a warning,
    so that copies do not shrink the spread across seeds."""
    by_seed: dict[Any, dict] = {}
    for result in group:
        if result["seed"] in by_seed:
            warnings.warn(f"two results for {result['label']} beta={result['beta']:g} seed={result['seed']}: "
                          f"using {result['results_path']}, ignoring {by_seed[result['seed']]['results_path']}")
        by_seed[result["seed"]] = result
    return list(by_seed.values())


def seed_ci(values: list[float], run_ci: tuple[float, float], level: float) -> tuple[float, float]:
    """One value: that run's own CI (a bootstrap over prompts); several: the t-interval over the values,
    clipped to [0, 1] where win-rates live (with 2 seeds, t = 12.7 often reaches past either end)."""
    if len(values) == 1:
        return run_ci
    low, high = t_interval(values, level)
    return max(low, 0.0), min(high, 1.0)  # NaN stays NaN: max/min keep their first argument


def aggregate(group: list[dict], objectives: list[str], level: float) -> dict:
    """One table row from one label's runs (one per seed): means and std over seeds, win-rate CIs
    (`seed_ci`: t over seeds, or the one run's bootstrap)."""
    first = group[0]
    n = len(group)
    row: dict[str, Any] = {
        "task": first["task"], "policy": first["policy"], "method": first["method"], "label": first["label"],
        "beta": float(first["beta"]), "n": n, "seeds": ";".join(str(r["seed"]) for r in group),
        "weights_source": first.get("weights_source") or "",
        # which CI the win-rate columns hold: the run's bootstrap over prompts, or a t-interval over seeds
        "ci": "prompt-bootstrap" if n == 1 else "seed-t",
        "ci_level": (first.get("min_win_rate_ci") or {}).get("level", NAN) if n == 1 else level,
    }

    def put(name: str, values: list[float]) -> None:
        row[f"{name}/mean"], row[f"{name}/std"] = mean_of(values), std_of(values)

    for o in objectives:
        values = [r["win_rate"].get(o, {}).get("mean", NAN) for r in group]
        put(f"win_rate/{o}", values)
        run_ci = tuple(first["win_rate"].get(o, {}).get(side, NAN) for side in ("ci_low", "ci_high"))
        row[f"win_rate/{o}/ci_low"], row[f"win_rate/{o}/ci_high"] = seed_ci(values, run_ci, level)
    minima = [r["min_win_rate"] for r in group]
    put("min_win_rate", minima)
    run_ci = tuple((first.get("min_win_rate_ci") or {}).get(side, NAN) for side in ("low", "high"))
    row["min_win_rate/ci_low"], row["min_win_rate/ci_high"] = seed_ci(minima, run_ci, level)
    kls = [as_float((r.get("kl") or {}).get("mean")) for r in group]
    put("kl", kls)
    run_ci = tuple(as_float((first.get("kl") or {}).get(side)) for side in ("ci_low", "ci_high"))
    row["kl/ci_low"], row["kl/ci_high"] = run_ci if n == 1 else t_interval(kls, level)  # NaN where a run has none
    worst = Counter(r.get("min_win_rate_objective") or "" for r in group)
    row["min_win_rate_objective"] = worst.most_common(1)[0][0]
    for o in objectives:
        put(f"reward/{o}", [r["reward"].get(o, NAN) for r in group])
    for o in objectives:
        put(f"reward_delta/{o}", [as_float((r.get("reward_delta") or {}).get(o)) for r in group])
    for o in objectives:  # BSMD weights differ between seeds: their mean
        row[f"weights/{o}"] = mean_of([as_float((r.get("weights") or {}).get(o)) for r in group])
    put("cost_seconds", [as_float(r["cost"]["total"].get("seconds")) for r in group])
    put("cost_cpu_seconds", [as_float(r["cost"]["total"].get("cpu_seconds")) for r in group])
    for part in COST_PARTS:  # NaN for results.json files from before the split
        entries = [(r["cost"].get("split") or {}).get(part) or {} for r in group]
        put(f"cost_{part}_cpu_seconds", [as_float(e.get("cpu_seconds")) for e in entries])
        put(f"trained_sequences_{part}", [as_float(e.get("trained_sequences")) for e in entries])
    row["singles"] = first.get("singles") or ""
    return row


def as_float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else NAN


def weights_key(row: dict, objectives: list[str]) -> tuple:
    """Rows without weights first, then the first objective's weight from high to low, then the second's...:
    a single-objective policy counts as all its weight on its objective (``single[conciseness]``), so the
    singles and any preset-weight sweep read in objective order."""
    single = re.fullmatch(r"single\w*\[(.+)\]", str(row["label"])) if row["method"] == "single" else None
    if single and single.group(1) in objectives:
        weights = [float(o == single.group(1)) for o in objectives]
    else:
        weights = [row.get(f"weights/{o}", NAN) for o in objectives]
    if any(math.isnan(w) for w in weights):
        return (0,)
    return (1, *(-w for w in weights))


def sort_key(row: dict, objectives: list[str]) -> tuple:
    """(task, policy, β), the method family (`METHOD_ORDER`), weights in objective order, the label: a stable
    order that does not move when a number changes."""
    family = METHOD_ORDER.index(row["method"]) if row["method"] in METHOD_ORDER else len(METHOD_ORDER)
    return (row["task"], row["policy"], row["beta"], family, row["method"], weights_key(row, objectives),
            row["label"])


def results_by_row(results: list[dict]) -> dict[tuple, list[dict]]:
    """Results by table row (`row_key`), one per seed (`dedupe_seeds`); a `DataError` where the runs of a row
    differ in more than the seed (`refuse_unlike`), checked first so a re-run with another budget is refused,
    never taken for a copy."""
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        groups.setdefault(row_key(result), []).append(result)
    for group in groups.values():
        refuse_unlike(group)
    return {key: dedupe_seeds(group) for key, group in groups.items()}


def comparison_table(results: list[dict], level: float = 0.95) -> list[dict]:
    """One row per (task, policy, label, beta), seeds aggregated (CIs at ``level`` where over seeds); in a
    fixed order (`sort_key`): reference, singles, mpo, reward_soups, morlhf, maxmin_rlhf, mixed_po, then any
    other method, each by weights in objective order. Every row has the same keys (NaN where not applicable)."""
    objectives = result_objectives(results)
    rows = [aggregate(group, objectives, level) for group in results_by_row(results).values()]
    return sorted(rows, key=lambda row: sort_key(row, objectives))


# --------------------------------------------------------------------------------------------- markdown
def format_spread(mean: float, std: float, n: int, digits: int) -> str:
    """``mean ± std`` over seeds, or the mean alone (one seed), or – for no value."""
    if math.isnan(mean):
        return "–"
    text = f"{mean:.{digits}f}"
    if n > 1 and not math.isnan(std):
        return f"{text} ± {std:.{digits}f}"
    return text


def format_ci(mean: float, low: float, high: float, digits: int, signed: bool = False) -> str:
    """``mean [low, high]``, or the mean alone where the CI is unknown (NaN), or – for no value."""
    if math.isnan(mean):
        return "–"
    sign = "+" if signed else ""
    text = f"{mean:{sign}.{digits}f}"
    if math.isnan(low) or math.isnan(high):
        return text
    return f"{text} [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def to_markdown(rows: list[dict], level: float = 0.95) -> str:
    """The comparison as a markdown table (win-rates vs the reference, ties count ½; mean [CI], the CI
    over seeds at ``level``), then a paragraph saying what each column holds."""
    return "\n".join([*table_lines(rows), "", table_notes(rows, level)]) + "\n"


def table_lines(rows: list[dict]) -> list[str]:
    """The markdown table alone: a header and one line per row."""
    objectives = row_objectives(rows)
    lead = [k for k in ("task", "policy") if varies(rows, k)]
    header = lead + ["method", "β", "n"] + [f"win-rate {o}" for o in objectives] + ["min win-rate", "KL (nats)"]
    header += [f"reward {o}" for o in objectives]
    header += ["trained seqs: own", "singles", "CPU-s: own", "singles", "evaluation"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [str(r[k]) for k in lead] + [str(r["label"]).replace("|", "\\|"), f"{r['beta']:g}", str(r["n"])]
        cells += [format_ci(*(r[f"win_rate/{o}/{s}"] for s in ("mean", "ci_low", "ci_high")), 3) for o in objectives]
        cells.append(format_ci(*(r[f"min_win_rate/{s}"] for s in ("mean", "ci_low", "ci_high")), 3))
        cells.append(format_ci(*(r[f"kl/{s}"] for s in ("mean", "ci_low", "ci_high")), 2))
        cells += [format_spread(r[f"reward/{o}/mean"], r[f"reward/{o}/std"], r["n"], 3) for o in objectives]
        cells += [format_spread(r[f"trained_sequences_{part}/mean"], NAN, 1, 0) for part in ("own", "singles")]
        cells += [format_spread(r[f"cost_{part}_cpu_seconds/mean"], r[f"cost_{part}_cpu_seconds/std"], r["n"], 0)
                  for part in ("own", "singles", "evaluation")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def table_notes(rows: list[dict], level: float = 0.95) -> str:
    """What the table's columns hold, in one paragraph."""
    return ("Win-rate against the reference policy's responses to the same prompt (every pair of responses, "
            "tie = ½), as mean [CI]. One seed (n = 1): the run's own percentile bootstrap CI over prompts "
            "(at the run's eval.ci). Several seeds: the mean over seeds and a Student-t "
            f"{level:.0%} interval over the n per-seed values (df = n − 1; seed-to-seed variation; "
            "clipped to [0, 1]). KL(π‖π_ref): nats per response on the method's own evaluation samples, "
            "the same CIs (unclipped). "
            "Rewards and CPU-seconds: mean ± std over seeds. Trained seqs: sequences the method's "
            "optimizer steps saw (a preference pair = 2, an RL completion = 1; trainer.budget) in its own "
            "stages and in the single-objective policies it uses. CPU-s (all threads, process time): own = "
            "the method's own stages, i.e. its cost once the single policies exist; singles = training the "
            "π_k it uses; evaluation = sampling and scoring its responses. The shared stages (data, SFT "
            f"reference, reference samples, pairs) cost {shared_cpu(rows)} CPU-s, paid once for all rows.")


def shared_cpu(rows: list[dict]) -> str:
    values = [r["cost_shared_cpu_seconds/mean"] for r in rows if not math.isnan(r["cost_shared_cpu_seconds/mean"])]
    return f"{max(values):.0f}" if values else "–"


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        for row in rows:  # repr keeps every float exactly; NaN becomes an empty cell
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                                 repr(v) if isinstance(v, float) else v) for k, v in row.items()})


def write_outputs(rows: list[dict], results: list[dict], out_dir: str | Path,
                  level: float = 0.95) -> dict[str, Path]:
    """Write comparison.md, comparison.csv, win_rates.png, cost.png, kl.png (min win-rate and rewards vs KL)
    and reward_front.png (a panel per pair of objectives) into ``out_dir``; return them by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"markdown": out / "comparison.md", "csv": out / "comparison.csv"}
    written["markdown"].write_text(to_markdown(rows, level))
    write_csv(rows, written["csv"])
    if rows:
        written["win_rates"] = plot_win_rates(rows, out / "win_rates.png")
        if len(row_objectives(rows)) >= 2:  # one panel per pair of objectives
            written["reward_front"] = plot_reward_front(rows, results, out / "reward_front.png")
        written["cost"] = plot_cost(rows, out / "cost.png")
        written["kl"] = plot_kl(rows, out / "kl.png")
    return written
