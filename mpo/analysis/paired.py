"""Paired differences against one baseline (``python -m mpo.compare --baseline LABEL``, docs/design.md §5):
for every other row of the same (task, policy, β), method − baseline for the min win-rate and each objective's
win-rate, by a stratified paired bootstrap over the per-prompt win-rates both runs were evaluated on (same
prompts, paired by seed); written as ``paired_vs_<LABEL>.md`` and ``.csv``.

That CI conditions on the trained seeds. Every row also carries the seed-level test (`seed_level_differences`):
a hierarchical bootstrap (seeds, then prompts within each drawn seed) and a Student-t interval over the per-seed
differences; a difference survives it where both exclude 0. Per quantity (``min_win_rate``,
``win_rate/<objective>``) the keys are ``diff``, ``ci_low``, ``ci_high``, ``significant`` (over prompts within
seeds), then ``seed_ci_low``, ``seed_ci_high`` (hierarchical bootstrap), ``seed_t_low``, ``seed_t_high``
(t, n − 1 dof), ``seed_significant`` (both exclude 0) and ``per_seed`` (the per-seed differences, ``;``-joined
in ``seeds`` order). With one seed the seed-level bounds are NaN (empty CSV cells), ``seed_significant`` is
empty and the table reads n/a."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mpo.analysis.plots import varies
from mpo.analysis.results import dotted_get, required_number
from mpo.analysis.table import comparison_table, format_ci, results_by_row, row_key, write_csv
from mpo.infra.errors import DataError, UserError, did_you_mean

_RERUN = ("re-run its evaluation with this version of mpo (the same `python -m mpo.run` command; trained "
          "stages are reused from the artifact store); W&B runs carry no per-prompt data: give their run dirs")


def _per_prompt(result: dict, objectives: list[str]) -> tuple[str, list[list[float]]]:
    """A result's prompts fingerprint and its per-prompt win-rates ``[K][n_prompts]`` in ``objectives``
    order; a `DataError` naming the file and the fix where they are missing or malformed."""
    source, block = result["results_path"], result.get("per_prompt")
    if not isinstance(block, Mapping) or not isinstance(block.get("win_rate"), Mapping):
        raise DataError(f"{source}: no per-prompt win-rates (key 'per_prompt'), which --baseline needs: {_RERUN}")
    fingerprint = block.get("prompts_sha256")
    if not isinstance(fingerprint, str):
        raise DataError(f"{source}: key 'per_prompt.prompts_sha256' should be the prompts' fingerprint: {_RERUN}")
    rates = []
    for o in objectives:
        values = dotted_get(block, f"win_rate.{o}", source)
        if not isinstance(values, list) or not values:
            raise DataError(f"{source}: key 'per_prompt.win_rate.{o}' should be a non-empty list of numbers")
        rates.append([required_number(v, source, f"per_prompt.win_rate.{o}[{i}]") for i, v in enumerate(values)])
    if len({len(v) for v in rates}) > 1:
        raise DataError(f"{source}: the per-prompt win-rate lists of {objectives} differ in length")
    return fingerprint, rates


def _seed_order(seed: Any) -> tuple:
    return (0, seed, "") if isinstance(seed, (int, float)) and not isinstance(seed, bool) else (1, 0, str(seed))


def _paired_seeds(method: list[dict], baseline: list[dict]) -> list[tuple[dict, dict]]:
    """(method run, baseline run) for every seed both have, in seed order; unpaired seeds get a warning."""
    theirs = {r["seed"]: r for r in baseline}
    ours = {r["seed"]: r for r in method}
    unpaired = [s for s in ours if s not in theirs]
    if unpaired:
        warnings.warn(f"{method[0]['label']} beta={method[0]['beta']:g}: seed(s) {unpaired} have no baseline run "
                      f"({baseline[0]['label']}) with the same seed; left out of the paired comparison")
    return [(ours[s], theirs[s]) for s in sorted(ours.keys() & theirs.keys(), key=_seed_order)]


def _paired_data(pairs: list[tuple[dict, dict]]) -> tuple[list[str], list[list], list[list], list[int]]:
    """Objectives, per-seed per-prompt win-rates of both runs, and prompts per seed; a `DataError` where the
    two runs of a seed were not evaluated on the same prompts or objectives."""
    objectives = list(pairs[0][1]["objectives"])
    ours, theirs, sizes = [], [], []
    for method, baseline in pairs:
        where = f"{method['results_path']} and {baseline['results_path']}"
        if set(method["objectives"]) != set(objectives) or set(baseline["objectives"]) != set(objectives):
            raise DataError(f"{where}: objectives differ ({method['objectives']} vs {baseline['objectives']}); "
                            "a paired comparison needs the same objectives")
        fingerprint, method_rates = _per_prompt(method, objectives)
        baseline_fingerprint, baseline_rates = _per_prompt(baseline, objectives)
        if fingerprint != baseline_fingerprint or len(method_rates[0]) != len(baseline_rates[0]):
            raise DataError(f"{where}: evaluated on different prompts (fingerprints {fingerprint} vs "
                            f"{baseline_fingerprint}); a paired comparison needs the same eval prompts: the same "
                            "task, data and eval.n_prompts")
        ours.append(method_rates)
        theirs.append(baseline_rates)
        sizes.append(len(method_rates[0]))
    return objectives, ours, theirs, sizes


def _paired_row(method: list[dict], baseline: list[dict], *, resamples: int, level: float,
                seed: int) -> dict | None:
    """One row of the paired table: method − baseline for the min win-rate and each objective's win-rate,
    with CI and significance; None (with a warning) when no seed has both runs."""
    import torch  # only --baseline needs it

    from mpo.core.stats import paired_differences, seed_level_differences

    pairs = _paired_seeds(method, baseline)
    if not pairs:
        return None
    objectives, ours, theirs, sizes = _paired_data(pairs)
    ours_t = [torch.tensor(r, dtype=torch.float64) for r in ours]
    theirs_t = [torch.tensor(r, dtype=torch.float64) for r in theirs]
    differences = paired_differences(ours_t, theirs_t, resamples=resamples, level=level, seed=seed)
    seed_level = seed_level_differences(ours_t, theirs_t, resamples=resamples, level=level, seed=seed)
    first = method[0]
    row: dict[str, Any] = {
        "task": first["task"], "policy": first["policy"], "method": first["method"], "label": first["label"],
        "baseline": baseline[0]["label"], "beta": float(first["beta"]), "n": len(pairs),
        "seeds": ";".join(str(m["seed"]) for m, _ in pairs),
        "n_prompts": sizes[0] if len(set(sizes)) == 1 else ";".join(map(str, sizes)),
        "resamples": resamples, "ci_level": level,
    }
    names = ["min_win_rate", *(f"win_rate/{o}" for o in objectives)]
    for name, d, e in zip(names, differences, seed_level, strict=True):
        row.update({f"{name}/diff": d.mean, f"{name}/ci_low": d.low, f"{name}/ci_high": d.high,
                    f"{name}/significant": d.significant,
                    f"{name}/seed_ci_low": e.low, f"{name}/seed_ci_high": e.high,
                    f"{name}/seed_t_low": e.t_low, f"{name}/seed_t_high": e.t_high,
                    f"{name}/seed_significant": e.significant,
                    f"{name}/per_seed": ";".join(repr(v) for v in e.per_seed)})
    return row


def paired_table(results: list[dict], baseline: str, *, resamples: int = 2000, level: float = 0.95,
                 seed: int = 0) -> list[dict]:
    """Paired bootstrap differences (method − baseline) of every row against the row labelled ``baseline``
    in the same (task, policy, β) block, in comparison-table order. Raises `UserError` when no run has that
    label and `DataError` when a pair cannot be compared (no per-prompt data, different prompts)."""
    groups = results_by_row(results)
    labels = {key[2] for key in groups}
    if baseline not in labels:
        hint = did_you_mean(baseline, labels).replace("known keys", "labels")
        raise UserError(f"--baseline {baseline!r}: no run has that label{hint}")
    rows = []
    for table_row in comparison_table(results):
        task, policy, label, beta = row_key(table_row)
        if label == baseline:
            continue
        theirs = groups.get((task, policy, baseline, beta))
        if theirs is None:
            warnings.warn(f"{label} beta={beta:g}: no {baseline} run for task={task} policy={policy} "
                          f"beta={beta:g}; no paired comparison for it")
            continue
        row = _paired_row(groups[(task, policy, label, beta)], theirs, resamples=resamples, level=level, seed=seed)
        if row is not None:
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------- markdown
def _paired_objectives(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k.split("/")[1] for r in rows for k in r
                              if k.startswith("win_rate/") and k.endswith("/diff")))


def _fmt_difference(row: dict, name: str) -> str:
    """``+0.031 [+0.010, +0.052] *`` (the star: the CI over prompts within seeds excludes 0)."""
    if f"{name}/diff" not in row:
        return "–"
    text = format_ci(row[f"{name}/diff"], row[f"{name}/ci_low"], row[f"{name}/ci_high"], 3, signed=True)
    return text + (" *" if row[f"{name}/significant"] else "")


def seed_level_text(row: dict, name: str, digits: int = 3) -> str:
    """``[-0.200, +0.030]; t [-0.350, +0.180]``: the seed-level CIs (hierarchical bootstrap; t over per-seed
    differences), or ``n/a (1 seed)`` where they are undefined."""
    bounds = [row.get(f"{name}/{k}", math.nan) for k in ("seed_ci_low", "seed_ci_high", "seed_t_low", "seed_t_high")]
    if any(not isinstance(b, float) or math.isnan(b) for b in bounds):
        return f"n/a ({row['n']} seed)" if row.get("n") == 1 else "n/a"
    low, high, t_low, t_high = (f"{b:+.{digits}f}" for b in bounds)
    return f"[{low}, {high}]; t [{t_low}, {t_high}]"


def _fmt_seed_level(row: dict, name: str) -> str:
    """The seed-level cell: `seed_level_text` and † where the difference survives it."""
    if f"{name}/diff" not in row:
        return "–"
    return seed_level_text(row, name) + (" †" if row.get(f"{name}/seed_significant") else "")


def paired_markdown(rows: list[dict], baseline: str, *, resamples: int, level: float, seed: int) -> str:
    """The paired differences against ``baseline`` as a markdown table with a footnote on the method: per
    quantity the difference with its CI over prompts within seeds, then its seed-level CIs."""
    objectives = _paired_objectives(rows)
    lead = [k for k in ("task", "policy") if varies(rows, k)] if rows else []
    quantities = [("min win-rate", "min_win_rate")] + [(f"win-rate {o}", f"win_rate/{o}") for o in objectives]
    header = lead + ["method", "β", "seeds", "prompts"]
    for title, _ in quantities:
        header += [f"Δ {title}", "seed-level"]
    lines = [f"Paired differences against `{baseline}` (method − baseline), mean [{level:.0%} CI over prompts "
             "within seeds]; * = that CI excludes 0. Seed-level: [hierarchical bootstrap CI]; t [Student-t CI "
             "over the per-seed differences]; † = both exclude 0: the difference survives the seed-level test.",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [str(r[k]) for k in lead] + [str(r["label"]).replace("|", "\\|"), f"{r['beta']:g}",
                                            str(r["seeds"]), str(r["n_prompts"])]
        for _, name in quantities:
            cells += [_fmt_difference(r, name), _fmt_seed_level(r, name)]
        lines.append("| " + " | ".join(cells) + " |")
    if not rows:
        lines.append("| " + " | ".join(["(no other run to compare)"] + [""] * (len(header) - 1)) + " |")
    lines += ["", f"Runs paired by seed, on the same evaluation prompts. Δ [CI]: percentile bootstrap over prompts "
              f"({resamples} resamples, generator seed {seed}) drawing the same prompts for both runs; with "
              "several seeds, prompts are resampled within each seed and the difference is averaged over seeds. "
              "It conditions on the trained seeds: it says how sure the difference is for these trained policies, "
              "not for another training run. Seed-level: the seeds taken as a sample of training runs. The "
              f"hierarchical bootstrap ({resamples} resamples, generator seed {seed}) resamples seeds with "
              "replacement, then prompts within each drawn seed (the same prompts for both runs); with few seeds "
              "it can only reuse the seeds seen, so its interval is about the range of the per-seed differences. "
              f"t: mean ± t(n − 1) · sd / √n over the n per-seed differences (each on all its prompts), at {level:.0%}. "
              "† needs both; n/a: one seed shows no seed-to-seed spread, so the seed-level test needs ≥ 2 seeds. "
              "Δ min win-rate compares each run's own minimum over objectives (possibly different objectives)."]
    return "\n".join(lines) + "\n"


def _slug(label: str) -> str:
    """A label as a file-name part: anything but letters, digits and ``.=,-[]`` becomes ``_``."""
    return re.sub(r"[^\w.=,\-\[\]]+", "_", label)


def write_paired(rows: list[dict], markdown: str, baseline: str, out_dir: str | Path) -> dict[str, Path]:
    """Write ``paired_vs_<baseline>.md`` and ``.csv`` into ``out_dir``; return them by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"paired_vs_{_slug(baseline)}"
    written = {"paired_markdown": out / f"{stem}.md", "paired_csv": out / f"{stem}.csv"}
    written["paired_markdown"].write_text(markdown)
    write_csv(rows, written["paired_csv"])
    return written
