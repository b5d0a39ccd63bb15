"""Side-by-side comparison of finished runs: ``python -m mpo.compare PATH... [--out DIR] [--baseline LABEL]``.

Every job writes ``results.json`` in its Hydra output dir (docs/design.md §4). This module gathers them (a run
dir, a multirun dir, single files, or a W&B project), aggregates seeds into one row per
(task, policy, label, β) — the rows of the paper's tables — and writes ``comparison.md``,
``comparison.csv`` and PNG plots (per-objective win-rates, the reward front of each pair of objectives with the MPO
preset-weight sweep, cost). Seeds are aggregated as mean and sample standard deviation (ddof=1), and the
win-rates and min win-rate also get a CI: with several seeds a Student-t interval (df = n − 1) over the
per-seed values, which covers seed-to-seed (training) variation and needs only each run's summary (so W&B runs
and older files work too; with 2-3 seeds a bootstrap over seeds cannot represent the spread); with one seed
the run's own bootstrap CI over prompts. ``min_win_rate`` of a row is the mean of the per-seed minima that
the files report (the quantity the paper reports per run), not the minimum of mean win-rates.

``--baseline LABEL`` adds paired differences of every other row against the row labelled LABEL in the same
(task, policy, β) block: runs paired by seed, evaluated on the same prompts (their ``per_prompt`` fingerprints
must agree), prompts resampled jointly for both runs and within each seed (`mpo.paired`);
written as ``paired_vs_<LABEL>.md`` and ``.csv`` beside the comparison and printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import statistics
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mpo.costs import CATEGORIES as COST_PARTS
from mpo.errors import UserError
from mpo.plots import (  # noqa: F401  (preset_fronts and the plot functions are public here too)
    _varies,
    plot_cost,
    plot_kl,
    plot_reward_front,
    plot_win_rates,
    preset_fronts,
    row_objectives,
)
from mpo.report import write_report
from mpo.stats import t_interval

RESULTS_FILE = "results.json"
# Keys the table needs; everything else in results.json is optional here.
_REQUIRED = ("method", "label", "task", "policy", "seed", "beta", "objectives",
             "reward", "win_rate", "min_win_rate", "cost")
# Row order within one (task, policy, beta) block: method families in this order (others after them, by name),
# then weights in objective order (`_sort_key`)
METHOD_ORDER = ("reference", "single", "mpo", "reward_soups", "morlhf", "maxmin_rlhf", "mixed_po")
_NAN = float("nan")
_SKIP_DIRS = {"wandb", ".hydra"}


# ---------------------------------------------------------------------------------------------- loading
def _natural_key(path: Path) -> list[Any]:
    """Multirun job dirs 0..10 sort as numbers, so a later duplicate is the later job."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _find_files(paths: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    searched = [Path(p) for p in paths]
    for path in searched:
        if path.is_file():
            found.append(path)
        elif path.is_dir():  # W&B and Hydra keep their own copies of files under wandb/ and .hydra/
            found.extend(sorted((f for f in path.rglob(RESULTS_FILE)
                                 if not _SKIP_DIRS & set(f.relative_to(path).parts[:-1])), key=_natural_key))
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise FileNotFoundError(f"no {RESULTS_FILE} found under: {', '.join(map(str, searched)) or '(no paths)'}")
    return unique


def _number(value: Any, source: str, key: str) -> float:
    if value is None:
        return _NAN
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{source}: key '{key}' should be a number, got {value!r}")
    return float(value)


def _get(mapping: Any, dotted: str, source: str) -> Any:
    """``mapping['a']['b']`` for ``'a.b'``, with an error that names the file and the missing key."""
    node, parts = mapping, dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping):
            raise ValueError(f"{source}: key '{'.'.join(parts[:i])}' should be an object")
        if part not in node:
            raise ValueError(f"{source}: missing key '{'.'.join(parts[:i + 1])}'")
        node = node[part]
    return node


def validate_result(result: Any, source: str) -> dict:
    """Check that one results dict has what the table reads; return a copy with numbers as floats."""
    if not isinstance(result, Mapping):
        raise ValueError(f"{source}: expected a JSON object, got {type(result).__name__}")
    for key in _REQUIRED:
        _get(result, key, source)
    out = dict(result)
    objectives = out["objectives"]
    if not isinstance(objectives, list) or not objectives:
        raise ValueError(f"{source}: key 'objectives' should be a non-empty list")
    out["beta"] = _number(out["beta"], source, "beta")
    out["min_win_rate"] = _number(out["min_win_rate"], source, "min_win_rate")
    out["reward"] = {o: _number(_get(out, f"reward.{o}", source), source, f"reward.{o}") for o in objectives}
    out["win_rate"] = {
        o: {s: _number(_get(out, f"win_rate.{o}.{s}", source), source, f"win_rate.{o}.{s}")
            for s in ("mean", "ci_low", "ci_high")}
        for o in objectives
    }
    _number(_get(out, "cost.total.seconds", source), source, "cost.total.seconds")
    ci = out.get("min_win_rate_ci")  # optional: files from before it existed have none
    if ci is not None and not isinstance(ci, Mapping):
        raise ValueError(f"{source}: key 'min_win_rate_ci' should be an object")
    out["min_win_rate_ci"] = {key: _number((ci or {}).get(key), source, f"min_win_rate_ci.{key}")
                              for key in ("low", "high", "level")}
    out["results_path"] = source
    return out


def load_results(paths: Iterable[str | Path]) -> list[dict]:
    """Every ``results.json`` under ``paths`` (run dirs, multirun dirs — searched recursively — or files),
    validated, in path order; each dict gains ``results_path``."""
    results = []
    for file in _find_files(paths):
        try:
            raw = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{file}: not valid JSON ({err})") from err
        results.append(validate_result(raw, str(file)))
    return results


# -------------------------------------------------------------------------------------------------- W&B
def _flat_get(config: Mapping, dotted: str) -> Any:
    """A config value by dotted path, whether W&B stored the config nested or flattened."""
    if dotted in config:
        return config[dotted]
    node: Any = config
    for part in dotted.split("."):
        if isinstance(node, Mapping) and "value" in node and part not in node:
            node = node["value"]  # raw W&B config wraps values as {"value": ...}
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _wandb_objectives(summary: Mapping) -> list[str]:
    """Objectives named by ``eval/win_rate/<obj>`` keys, less their ``<obj>_ci_low``/``_ci_high`` siblings."""
    names = list(dict.fromkeys(k.split("/")[2] for k in summary if k.startswith("eval/win_rate/")))
    return [n for n in names if not (n.endswith(("_ci_low", "_ci_high")) and n.rsplit("_ci_", 1)[0] in names)]


def _weights_source(method: str, config: Mapping) -> str | None:
    """As `mpo.methods.mpo` decides it: preset ``method.weights``, else the solver's (``method.solver``)."""
    if _flat_get(config, "method.weights_source"):
        return _flat_get(config, "method.weights_source")
    if _flat_get(config, "method.weights") is not None:
        return "preset"
    return (_flat_get(config, "method.solver") or "bsmd") if method == "mpo" else None


def result_from_wandb(summary: Mapping, config: Mapping, *, run_path: str, job_type: str | None = None) -> dict:
    """The results.json fields rebuilt from a W&B run, as `mpo.tracking` logs them: summary keys
    ``eval/win_rate/<obj>`` (+ ``_ci_low``/``_ci_high``), ``eval/min_win_rate`` (+ ``_ci_low``/``_ci_high``),
    ``eval/reward/<obj>``,
    ``eval/reward_delta/<obj>``, ``cost/total_seconds``, ``weight/<obj>`` and the flat ``method``, ``label``,
    ``task``, ``seed``, ``beta``; where the summary lacks one, the config (``method`` or ``method.name``,
    ``label``, ``task.name``, ``task.beta``, ``policy.name``, ``seed``) or the job type stands in."""
    objectives = _wandb_objectives(summary)

    def stat(*keys: str) -> Any:
        for key in keys:
            value = summary.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return value
        return None

    def from_config(dotted: str) -> Any:
        node = _flat_get(config, dotted)
        return node.get("name") if isinstance(node, Mapping) else node

    method = summary.get("method") or from_config("method") or job_type or "unknown"
    beta = next((b for b in (summary.get("beta"), _flat_get(config, "task.beta"), _flat_get(config, "beta"))
                 if b is not None), None)
    weights = {o: stat(f"weight/{o}") for o in objectives}
    return {
        "method": method,
        # W&B run names are random words, so they are no fallback for a row label
        "label": (summary.get("label") or _flat_get(config, "label") or _flat_get(config, "method.label")
                  or method),
        "task": summary.get("task") or from_config("task") or "", "policy": from_config("policy") or "",
        "seed": summary.get("seed", _flat_get(config, "seed")), "beta": beta, "objectives": objectives,
        "weights": weights if any(w is not None for w in weights.values()) else None,
        "weights_source": _weights_source(method, config),
        "reward": {o: stat(f"eval/reward/{o}") for o in objectives},
        "reward_delta": {o: stat(f"eval/reward_delta/{o}") for o in objectives},
        "win_rate": {o: {"mean": stat(f"eval/win_rate/{o}"),
                         "ci_low": stat(f"eval/win_rate/{o}_ci_low", f"eval/win_rate/{o}/ci_low"),
                         "ci_high": stat(f"eval/win_rate/{o}_ci_high", f"eval/win_rate/{o}/ci_high")}
                     for o in objectives},
        "min_win_rate": stat("eval/min_win_rate", "min_win_rate"),
        "min_win_rate_ci": {"low": stat("eval/min_win_rate_ci_low", "min_win_rate_ci_low"),
                            "high": stat("eval/min_win_rate_ci_high", "min_win_rate_ci_high")},
        "min_win_rate_objective": summary.get("min_win_rate_objective"),
        "kl": {"mean": stat("eval/kl"), "ci_low": stat("eval/kl_ci_low"), "ci_high": stat("eval/kl_ci_high")},
        "cost": {"total": {"seconds": stat("cost/total_seconds", "total_seconds", "cost/total/seconds"),
                           "cpu_seconds": stat("cost/total_cpu_seconds", "cost/total/cpu_seconds")},
                 "split": {part: {"cpu_seconds": stat(f"cost/{part}_cpu_seconds"),
                                  "trained_sequences": stat(f"cost/{part}_trained_sequences")}
                           for part in COST_PARTS}},
        "wandb": run_path,
    }


def load_wandb_runs(project: str, *, timeout: int = 20) -> list[dict]:
    """Results of every finished run in W&B project ``ENTITY/PROJECT``. Needs network and a login; any
    failure (no key, no network: bounded by ``timeout`` seconds per request) raises ``RuntimeError``."""
    try:
        import wandb

        fetched = [("/".join(run.path), dict(run.summary), dict(run.config), run.job_type)
                   for run in wandb.Api(timeout=timeout).runs(project) if run.state == "finished"]
    except Exception as err:  # wandb raises its own CommError/UsageError, or requests' errors
        raise RuntimeError(f"could not read W&B project '{project}' (network reachable? logged in with "
                           f"`wandb login`?): {type(err).__name__}: {err}") from err
    results = []
    for path, summary, config, job_type in fetched:
        raw = result_from_wandb(summary, config, run_path=path, job_type=job_type)
        if raw["objectives"]:  # runs without an evaluation (crashed, other job types) have no row
            results.append(validate_result(raw, f"wandb:{path}"))
    if not results:
        raise RuntimeError(f"W&B project '{project}' has no finished runs with eval/win_rate/* summaries")
    return results


# ------------------------------------------------------------------------------------------------ table
def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else _NAN


def _std(values: list[float]) -> float:
    if len(values) < 2 or any(math.isnan(v) for v in values):  # stdev raises on NaN
        return _NAN
    return statistics.stdev(values)


def _objectives(results: list[dict]) -> list[str]:
    return list(dict.fromkeys(o for r in results for o in r["objectives"]))


def _row_key(result: dict) -> tuple:
    return (str(result["task"]), str(result["policy"]), str(result["label"]), float(result["beta"]))


def _dedupe_seeds(group: list[dict]) -> list[dict]:
    """One result per seed: a second file for the same seed (a re-run) replaces the first, with a warning,
    so that copies do not shrink the spread across seeds."""
    by_seed: dict[Any, dict] = {}
    for result in group:
        if result["seed"] in by_seed:
            warnings.warn(f"two results for {result['label']} beta={result['beta']:g} seed={result['seed']}: "
                          f"using {result['results_path']}, ignoring {by_seed[result['seed']]['results_path']}")
        by_seed[result["seed"]] = result
    return list(by_seed.values())


def _seed_ci(values: list[float], run_ci: tuple[float, float], level: float) -> tuple[float, float]:
    """One value: that run's own CI (a bootstrap over prompts); several: the t-interval over the values,
    clipped to [0, 1] where win-rates live (with 2 seeds, t = 12.7 often reaches past either end)."""
    if len(values) == 1:
        return run_ci
    low, high = t_interval(values, level)
    return max(low, 0.0), min(high, 1.0)  # NaN stays NaN: max/min keep their first argument


def _aggregate(group: list[dict], objectives: list[str], level: float) -> dict:
    """One table row from one label's runs (one per seed): means and std over seeds, win-rate CIs
    (`_seed_ci`: t over seeds, or the one run's bootstrap)."""
    first = group[0]
    n = len(group)
    row: dict[str, Any] = {
        "task": first["task"], "policy": first["policy"], "method": first["method"], "label": first["label"],
        "beta": float(first["beta"]), "n": n, "seeds": ";".join(str(r["seed"]) for r in group),
        "weights_source": first.get("weights_source") or "",
        # which CI the win-rate columns hold: the run's bootstrap over prompts, or a t-interval over seeds
        "ci": "prompt-bootstrap" if n == 1 else "seed-t",
        "ci_level": (first.get("min_win_rate_ci") or {}).get("level", _NAN) if n == 1 else level,
    }

    def put(name: str, values: list[float]) -> None:
        row[f"{name}/mean"], row[f"{name}/std"] = _mean(values), _std(values)

    for o in objectives:
        values = [r["win_rate"].get(o, {}).get("mean", _NAN) for r in group]
        put(f"win_rate/{o}", values)
        run_ci = tuple(first["win_rate"].get(o, {}).get(side, _NAN) for side in ("ci_low", "ci_high"))
        row[f"win_rate/{o}/ci_low"], row[f"win_rate/{o}/ci_high"] = _seed_ci(values, run_ci, level)
    minima = [r["min_win_rate"] for r in group]
    put("min_win_rate", minima)
    run_ci = tuple((first.get("min_win_rate_ci") or {}).get(side, _NAN) for side in ("low", "high"))
    row["min_win_rate/ci_low"], row["min_win_rate/ci_high"] = _seed_ci(minima, run_ci, level)
    kls = [_as_float((r.get("kl") or {}).get("mean")) for r in group]
    put("kl", kls)
    run_ci = tuple(_as_float((first.get("kl") or {}).get(side)) for side in ("ci_low", "ci_high"))
    row["kl/ci_low"], row["kl/ci_high"] = run_ci if n == 1 else t_interval(kls, level)  # NaN where a run has none
    worst = Counter(r.get("min_win_rate_objective") or "" for r in group)
    row["min_win_rate_objective"] = worst.most_common(1)[0][0]
    for o in objectives:
        put(f"reward/{o}", [r["reward"].get(o, _NAN) for r in group])
    for o in objectives:
        put(f"reward_delta/{o}", [_as_float((r.get("reward_delta") or {}).get(o)) for r in group])
    for o in objectives:  # BSMD weights differ between seeds: their mean
        row[f"weights/{o}"] = _mean([_as_float((r.get("weights") or {}).get(o)) for r in group])
    put("cost_seconds", [_as_float(r["cost"]["total"].get("seconds")) for r in group])
    put("cost_cpu_seconds", [_as_float(r["cost"]["total"].get("cpu_seconds")) for r in group])
    for part in COST_PARTS:  # NaN for results.json files from before the split
        entries = [(r["cost"].get("split") or {}).get(part) or {} for r in group]
        put(f"cost_{part}_cpu_seconds", [_as_float(e.get("cpu_seconds")) for e in entries])
        put(f"trained_sequences_{part}", [_as_float(e.get("trained_sequences")) for e in entries])
    row["singles"] = first.get("singles") or ""
    return row


def _as_float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _NAN


def _weights_key(row: dict, objectives: list[str]) -> tuple:
    """Rows without weights first, then the first objective's weight from high to low, then the second's...:
    a single-objective policy counts as all its weight on its objective (``single[conciseness]``), so the
    singles and any preset-weight sweep read in objective order."""
    single = re.fullmatch(r"single\w*\[(.+)\]", str(row["label"])) if row["method"] == "single" else None
    if single and single.group(1) in objectives:
        weights = [float(o == single.group(1)) for o in objectives]
    else:
        weights = [row.get(f"weights/{o}", _NAN) for o in objectives]
    if any(math.isnan(w) for w in weights):
        return (0,)
    return (1, *(-w for w in weights))


def _sort_key(row: dict, objectives: list[str]) -> tuple:
    """(task, policy, β), the method family (`METHOD_ORDER`), weights in objective order, the label: a stable
    order that does not move when a number changes."""
    family = METHOD_ORDER.index(row["method"]) if row["method"] in METHOD_ORDER else len(METHOD_ORDER)
    return (row["task"], row["policy"], row["beta"], family, row["method"], _weights_key(row, objectives),
            row["label"])


def _groups(results: list[dict]) -> dict[tuple, list[dict]]:
    """Results by table row (`_row_key`), one per seed (`_dedupe_seeds`)."""
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        groups.setdefault(_row_key(result), []).append(result)
    return {key: _dedupe_seeds(group) for key, group in groups.items()}


def comparison_table(results: list[dict], level: float = 0.95) -> list[dict]:
    """One row per (task, policy, label, beta), seeds aggregated (CIs at ``level`` where over seeds); in a
    fixed order (`_sort_key`): reference, singles, mpo, reward_soups, morlhf, maxmin_rlhf, mixed_po, then any
    other method, each by weights in objective order. Every row has the same keys (NaN where not applicable)."""
    objectives = _objectives(results)
    rows = [_aggregate(group, objectives, level) for group in _groups(results).values()]
    return sorted(rows, key=lambda row: _sort_key(row, objectives))


# --------------------------------------------------------------------------------------------- markdown
def _fmt(mean: float, std: float, n: int, digits: int) -> str:
    """``mean ± std`` over seeds, or the mean alone (one seed), or – for no value."""
    if math.isnan(mean):
        return "–"
    text = f"{mean:.{digits}f}"
    if n > 1 and not math.isnan(std):
        return f"{text} ± {std:.{digits}f}"
    return text


def _fmt_ci(mean: float, low: float, high: float, digits: int, signed: bool = False) -> str:
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
    lead = [k for k in ("task", "policy") if _varies(rows, k)]
    header = lead + ["method", "β", "n"] + [f"win-rate {o}" for o in objectives] + ["min win-rate", "KL (nats)"]
    header += [f"reward {o}" for o in objectives]
    header += ["trained seqs: own", "singles", "CPU-s: own", "singles", "evaluation"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [str(r[k]) for k in lead] + [str(r["label"]).replace("|", "\\|"), f"{r['beta']:g}", str(r["n"])]
        cells += [_fmt_ci(*(r[f"win_rate/{o}/{s}"] for s in ("mean", "ci_low", "ci_high")), 3) for o in objectives]
        cells.append(_fmt_ci(*(r[f"min_win_rate/{s}"] for s in ("mean", "ci_low", "ci_high")), 3))
        cells.append(_fmt_ci(*(r[f"kl/{s}"] for s in ("mean", "ci_low", "ci_high")), 2))
        cells += [_fmt(r[f"reward/{o}/mean"], r[f"reward/{o}/std"], r["n"], 3) for o in objectives]
        cells += [_fmt(r[f"trained_sequences_{part}/mean"], _NAN, 1, 0) for part in ("own", "singles")]
        cells += [_fmt(r[f"cost_{part}_cpu_seconds/mean"], r[f"cost_{part}_cpu_seconds/std"], r["n"], 0)
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
            f"reference, reference samples, pairs) cost {_shared_cpu(rows)} CPU-s, paid once for all rows.")


def _shared_cpu(rows: list[dict]) -> str:
    values = [r["cost_shared_cpu_seconds/mean"] for r in rows if not math.isnan(r["cost_shared_cpu_seconds/mean"])]
    return f"{max(values):.0f}" if values else "–"


def _write_csv(rows: list[dict], path: Path) -> None:
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
    _write_csv(rows, written["csv"])
    if rows:
        written["win_rates"] = plot_win_rates(rows, out / "win_rates.png")
        if len(row_objectives(rows)) >= 2:  # one panel per pair of objectives
            written["reward_front"] = plot_reward_front(rows, results, out / "reward_front.png")
        written["cost"] = plot_cost(rows, out / "cost.png")
        written["kl"] = plot_kl(rows, out / "kl.png")
    return written


# -------------------------------------------------------------------------------------------------- CLI
_EXAMPLES = """examples:
  python -m mpo.compare                                  # the latest multirun under outputs/multirun
  python -m mpo.compare outputs/multirun/compare_methods # every compare_methods sweep, seeds aggregated
  python -m mpo.compare outputs/multirun/beta outputs/runs/2026-11-23 --out cmp   # several dirs at once
  python -m mpo.compare --baseline maxmin_rlhf           # also each row minus maxmin_rlhf's, paired by seed
  python -m mpo.compare --wandb-project ENTITY/PROJECT   # the runs logged to a W&B project

Runs live under outputs/ (paths.root), or under the MPO_OUTPUTS directory when that is set."""


def outputs_root() -> Path:
    """Where runs are written unless paths.root is overridden (conf/paths/default.yaml)."""
    return Path(os.environ.get("MPO_OUTPUTS") or "outputs")


def latest_multirun(root: Path) -> Path | None:
    """The sweep dir under ``root/multirun`` (a job dir's parent) with the most recently written results.json."""
    multirun = root / "multirun"
    files = [f for f in multirun.rglob(RESULTS_FILE) if not _SKIP_DIRS & set(f.relative_to(multirun).parts[:-1])
             ] if multirun.is_dir() else []
    return max(files, key=lambda f: f.stat().st_mtime).parent.parent if files else None


def _default_paths(parser: argparse.ArgumentParser) -> list[str]:
    root = outputs_root()
    latest = latest_multirun(root)
    if latest is None:
        parser.error(f"no PATH given, and no multirun under {root / 'multirun'} has a {RESULTS_FILE} yet: give run "
                     "or multirun dirs, or --wandb-project")
    print(f"comparing the latest multirun: {latest} (give PATHs to compare others)", file=sys.stderr)
    return [str(latest)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mpo.compare", epilog=_EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Compare runs side by side from their results.json files.")
    parser.add_argument("paths", nargs="*", help="run dirs, multirun dirs (searched recursively), results.json "
                                                 "files; none: the latest multirun")
    parser.add_argument("--out", help="output dir (default: the first PATH if it is a dir, else the cwd)")
    parser.add_argument("--wandb-project", help="also read the runs of this W&B ENTITY/PROJECT")
    parser.add_argument("--wandb-timeout", type=int, default=20, help="seconds per W&B request")
    parser.add_argument("--baseline", metavar="LABEL",
                        help="also write paired bootstrap differences of every row against the row with this "
                             "label (as the table labels rows, e.g. maxmin_rlhf, mpo)")
    parser.add_argument("--level", type=float, default=0.95,
                        help="CI level of the t-interval over seeds and of --baseline's differences (0.95)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples for --baseline (2000)")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="generator seed for --baseline (0)")
    parser.add_argument("--brief", action="store_true",
                        help="print the table alone and the report's path (the files are written all the same): "
                             "how a sweep ends")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Path]:
    from mpo.paired import paired_markdown, paired_table, write_paired

    parser = _parser()
    args = parser.parse_args(argv)
    if not args.paths and not args.wandb_project:
        args.paths = _default_paths(parser)
    if not 0 < args.level < 1 or args.resamples < 1:
        parser.error(f"--level must be in (0, 1) and --resamples >= 1, got {args.level} and {args.resamples}")
    try:
        results = load_results(args.paths) if args.paths else []
        if args.wandb_project:
            results += load_wandb_runs(args.wandb_project, timeout=args.wandb_timeout)
        paired = None if args.baseline is None else paired_table(
            results, args.baseline, resamples=args.resamples, level=args.level, seed=args.bootstrap_seed)
    except (OSError, ValueError, RuntimeError, UserError) as err:
        parser.error(str(err))
    rows = comparison_table(results, level=args.level)
    table = to_markdown(rows, level=args.level)
    print("\n".join(table_lines(rows)) if args.brief else table)
    first = Path(args.paths[0]) if args.paths else None
    out_dir = Path(args.out) if args.out else first if first is not None and first.is_dir() else Path.cwd()
    written = write_outputs(rows, results, out_dir, level=args.level)
    markdown = None
    if paired is not None:
        markdown = paired_markdown(paired, args.baseline, resamples=args.resamples, level=args.level,
                                   seed=args.bootstrap_seed)
        if not args.brief:
            print(markdown)
        written.update(write_paired(paired, markdown, args.baseline, out_dir))
    command = " ".join(["python -m mpo.compare", *(argv if argv is not None else sys.argv[1:])])
    written["report"] = write_report(rows, table, paired, markdown, args.baseline, written, out_dir, command)
    if args.brief:
        print(f"report: {written['report']} (the table's notes, paired differences, plots)")
    else:
        for path in written.values():
            print(f"wrote {path}", file=sys.stderr)
    return written


def cli() -> None:
    """`mpo-compare`: `main` without its return value, which a console script would take for an exit status."""
    main()


if __name__ == "__main__":
    cli()
