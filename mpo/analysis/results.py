"""Finished runs as data: every ``results.json`` under some paths (run dirs, multirun dirs, files) or the runs of a
W&B project, checked for what the comparison reads (`validate_result`), numbers as floats.

A file that cannot be trusted is refused by its path, never shown as a number: damaged JSON, a missing key, a
NaN or Infinity anywhere in it (mpo writes null for those, so a bare one means the file was not written by a
finished run), or null where the table needs a number (a win-rate, the min win-rate, a reward, β).

Each run also carries its `mpo.analysis.setups.Setup`, the settings it ran with, so that the table can refuse
to average runs of one row that differ in more than the seed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mpo.analysis.setups import Setup, hydra_setup, recorded_settings, recorded_setup, wandb_setup
from mpo.infra.costs import CATEGORIES as COST_PARTS
from mpo.infra.errors import DataError, one_line

RESULTS_FILE = "results.json"
# Keys the table needs; everything else in results.json is optional here.
REQUIRED = ("method", "label", "task", "policy", "seed", "beta", "objectives",
            "reward", "win_rate", "min_win_rate", "cost")
NAN = float("nan")
SKIP_DIRS = {"wandb", ".hydra"}  # W&B and Hydra keep their own copies of files there


# ---------------------------------------------------------------------------------------------- loading
def natural_key(path: Path) -> list[Any]:
    """Multirun job dirs 0..10 sort as numbers, so a later duplicate is the later job."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    searched = [Path(p) for p in paths]
    for path in searched:
        if path.is_file():
            found.append(path)
        elif path.is_dir():  # W&B and Hydra keep their own copies of files under wandb/ and .hydra/
            found.extend(sorted((f for f in path.rglob(RESULTS_FILE)
                                 if not SKIP_DIRS & set(f.relative_to(path).parts[:-1])), key=natural_key))
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise FileNotFoundError(f"no {RESULTS_FILE} found under: {', '.join(map(str, searched)) or '(no paths)'}")
    return unique


def latest_multirun(root: Path) -> Path | None:
    """The sweep dir under ``root/multirun`` (a job dir's parent) with the most recently written results.json."""
    multirun = root / "multirun"
    files = [f for f in multirun.rglob(RESULTS_FILE) if not SKIP_DIRS & set(f.relative_to(multirun).parts[:-1])
             ] if multirun.is_dir() else []
    return max(files, key=lambda f: f.stat().st_mtime).parent.parent if files else None


def rerun_fix(source: str) -> str:
    """The fix for a result that cannot be read: the run's numbers are gone, so only a new run brings them."""
    if source.startswith("wandb:"):
        return "rerun that run, or delete it from the W&B project"
    return "rerun that run, or move this file out of the compared paths"


def as_number(value: Any, source: str, key: str) -> float:
    """An optional number: null is NaN (shown as –); anything but a number is refused."""
    if value is None:
        return NAN
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{source}: key '{key}' should be a number, got {value!r}: {rerun_fix(source)}")
    return float(value)


def required_number(value: Any, source: str, key: str) -> float:
    """A number the comparison cannot do without (a win-rate, the min win-rate, a reward, β): null, NaN or
    infinite is refused, since it would reach the table and the report as "nan"."""
    number = as_number(value, source, key)
    if not math.isfinite(number):
        shown = "null" if value is None else repr(value)
        raise DataError(f"{source}: key '{key}' is {shown}, where a number is needed: {rerun_fix(source)}")
    return number


def dotted_get(mapping: Any, dotted: str, source: str) -> Any:
    """``mapping['a']['b']`` for ``'a.b'``, with an error that names the file and the missing key."""
    node, parts = mapping, dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping):
            raise DataError(f"{source}: key '{'.'.join(parts[:i])}' should be an object: {rerun_fix(source)}")
        if part not in node:
            raise DataError(f"{source}: missing key '{'.'.join(parts[:i + 1])}': {rerun_fix(source)}")
        node = node[part]
    return node


def validate_result(result: Any, source: str, setup: Setup | None = None) -> dict:
    """Check that one results dict has what the table reads; return a copy with numbers as floats and its
    ``setup``: ``setup`` (a run's whole config) with what the results record themselves, else that record
    alone (`recorded_setup`)."""
    if not isinstance(result, Mapping):
        raise DataError(f"{source}: expected a JSON object, got {type(result).__name__}: {rerun_fix(source)}")
    for key in REQUIRED:
        dotted_get(result, key, source)
    out = dict(result)
    objectives = out["objectives"]
    if not isinstance(objectives, list) or not objectives:
        raise DataError(f"{source}: key 'objectives' should be a non-empty list: {rerun_fix(source)}")
    out["beta"] = required_number(out["beta"], source, "beta")
    out["min_win_rate"] = required_number(out["min_win_rate"], source, "min_win_rate")
    out["reward"] = {o: required_number(dotted_get(out, f"reward.{o}", source), source, f"reward.{o}")
                     for o in objectives}
    out["win_rate"] = {o: win_rate_entry(out, o, source) for o in objectives}
    as_number(dotted_get(out, "cost.total.seconds", source), source, "cost.total.seconds")
    ci = out.get("min_win_rate_ci")  # optional: files from before it existed have none
    if ci is not None and not isinstance(ci, Mapping):
        raise DataError(f"{source}: key 'min_win_rate_ci' should be an object: {rerun_fix(source)}")
    out["min_win_rate_ci"] = {key: as_number((ci or {}).get(key), source, f"min_win_rate_ci.{key}")
                              for key in ("low", "high", "level")}
    out["results_path"] = source
    if setup is None:
        out["setup"] = recorded_setup(result)
    else:  # the config's keys in its order and its values, then what only results.json records (the prompts)
        out["setup"] = Setup({**setup.values, **{k: v for k, v in recorded_settings(result).items()
                                                if k not in setup.values}})
    return out


def win_rate_entry(result: Mapping, objective: str, source: str) -> dict[str, float]:
    """One objective's win-rate: the mean is needed; its CI may be unknown (null: W&B runs may lack it)."""
    key = f"win_rate.{objective}"
    values = {s: dotted_get(result, f"{key}.{s}", source) for s in ("mean", "ci_low", "ci_high")}
    return {"mean": required_number(values["mean"], source, f"{key}.mean"),
            **{s: as_number(values[s], source, f"{key}.{s}") for s in ("ci_low", "ci_high")}}


class _NotFinite:
    """What a NaN, Infinity or overflowing number in a results.json parses to, so the reader can name its key."""

    def __init__(self, text: str) -> None:
        self.text = text


def _finite_float(text: str) -> float | _NotFinite:
    value = float(text)
    return value if math.isfinite(value) else _NotFinite(text)


def not_finite_key(node: Any, path: str = "") -> tuple[str, str] | None:
    """The dotted key (``per_prompt.win_rate.sentiment[3]``) and text of the first non-finite number, if any."""
    if isinstance(node, _NotFinite):
        return path or "(the whole file)", node.text
    items = node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found = not_finite_key(value, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key)
        if found is not None:
            return found
    return None


def read_results_file(file: Path) -> Any:
    """A results.json's JSON, refused by path where it is damaged or holds a NaN or Infinity (mpo writes null for
    a value it does not have, so a bare one is no number a finished run wrote)."""
    try:
        raw = json.loads(file.read_text(), parse_constant=_NotFinite, parse_float=_finite_float)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{file}: not valid JSON ({one_line(err)}), damaged or cut short: "
                        f"{rerun_fix(str(file))}") from err
    found = not_finite_key(raw)
    if found is not None:
        raise DataError(f"{file}: key '{found[0]}' is {found[1]}, not a number: {rerun_fix(str(file))}")
    return raw


def load_results(paths: Iterable[str | Path]) -> list[dict]:
    """Every ``results.json`` under ``paths`` (run dirs, multirun dirs — searched recursively — or files),
    validated, in path order; each dict gains ``results_path`` and ``setup``."""
    return [validate_result(read_results_file(file), str(file), hydra_setup(file)) for file in find_files(paths)]


# -------------------------------------------------------------------------------------------------- W&B
def flat_get(config: Mapping, dotted: str) -> Any:
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


def wandb_objectives(summary: Mapping) -> list[str]:
    """Objectives named by ``eval/win_rate/<obj>`` keys, less their ``<obj>_ci_low``/``_ci_high`` siblings."""
    names = list(dict.fromkeys(k.split("/")[2] for k in summary if k.startswith("eval/win_rate/")))
    return [n for n in names if not (n.endswith(("_ci_low", "_ci_high")) and n.rsplit("_ci_", 1)[0] in names)]


def weights_source(method: str, config: Mapping) -> str | None:
    """As `mpo.methods.mpo` decides it: preset ``method.weights``; else ``<criterion>/token`` for the token-level
    target, ``win_rate`` for that criterion, or the regret solver's (``method.solver``)."""
    if flat_get(config, "method.weights_source"):
        return flat_get(config, "method.weights_source")
    if flat_get(config, "method.weights") is not None:
        return "preset"
    criterion = flat_get(config, "method.criterion") or "regret"
    if method == "mpo" and flat_get(config, "method.target") == "token":
        return f"{criterion}/token"
    if method == "mpo" and criterion == "win_rate":
        return "win_rate"
    return (flat_get(config, "method.solver") or "bsmd") if method == "mpo" else None


def result_from_wandb(summary: Mapping, config: Mapping, *, run_path: str, job_type: str | None = None) -> dict:
    """The results.json fields rebuilt from a W&B run, as `mpo.infra.tracking` logs them: summary keys
    ``eval/win_rate/<obj>`` (+ ``_ci_low``/``_ci_high``), ``eval/min_win_rate`` (+ ``_ci_low``/``_ci_high``),
    ``eval/reward/<obj>``,
    ``eval/reward_delta/<obj>``, ``cost/total_seconds``, ``weight/<obj>`` and the flat ``method``, ``label``,
    ``task``, ``seed``, ``beta``; where the summary lacks one, the config (``method`` or ``method.name``,
    ``label``, ``task.name``, ``task.beta``, ``policy.name``, ``seed``) or the job type stands in."""
    objectives = wandb_objectives(summary)

    def stat(*keys: str) -> Any:
        for key in keys:
            value = summary.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return value
        return None

    def from_config(dotted: str) -> Any:
        node = flat_get(config, dotted)
        return node.get("name") if isinstance(node, Mapping) else node

    method = summary.get("method") or from_config("method") or job_type or "unknown"
    beta = next((b for b in (summary.get("beta"), flat_get(config, "task.beta"), flat_get(config, "beta"))
                 if b is not None), None)
    weights = {o: stat(f"weight/{o}") for o in objectives}
    return {
        "method": method,
        # W&B run names are random words, so they are no fallback for a row label
        "label": (summary.get("label") or flat_get(config, "label") or flat_get(config, "method.label")
                  or method),
        "task": summary.get("task") or from_config("task") or "", "policy": from_config("policy") or "",
        "seed": summary.get("seed", flat_get(config, "seed")), "beta": beta, "objectives": objectives,
        "weights": weights if any(w is not None for w in weights.values()) else None,
        "weights_source": weights_source(method, config),
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
            results.append(validate_result(raw, f"wandb:{path}", wandb_setup(config)))
    if not results:
        raise RuntimeError(f"W&B project '{project}' has no finished runs with eval/win_rate/* summaries")
    return results
