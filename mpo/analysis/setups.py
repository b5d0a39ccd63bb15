"""What a finished run was run with, so that runs differing in more than the seed are never averaged into one
row (`refuse_unlike`). A run's `Setup` is read from its ``.hydra/config.yaml`` (every key of the composed config),
else from the W&B run's config, else from what results.json records itself: ``budget``, ``method_config``, the
evaluated prompts (``per_prompt``) and the command-line ``overrides``. `NOT_SETTINGS` lists the few keys that
cannot change a run's numbers and are never compared.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpo.infra.errors import DataError, one_line

# Settings that cannot change a run's numbers, left out when the runs of one row are compared (each covers the
# keys under it): the seed is what a row aggregates over; the others say where files go (paths), what is logged
# (logger; experiment_name names the W&B group), how jobs are launched (hydra, its launcher and sweep dirs), where
# and how fast they run or how long they wait (device, threads, lock_timeout, distributed_timeout), and how many
# samples results.json shows (eval.n_show_samples). Everything else, budget, eval size and decoding included,
# must agree.
NOT_SETTINGS = ("seed", "paths", "logger", "experiment_name", "hydra", "device", "threads", "lock_timeout",
                "distributed_timeout", "eval.n_show_samples")
DEFAULT = "(default)"  # a key that results.json's overrides do not set: the run had its default


@dataclass(frozen=True)
class Setup:
    """A run's settings as dotted config keys, less `NOT_SETTINGS`. ``overridden`` is None where ``values`` hold
    the whole config (``.hydra/config.yaml``, W&B); read from results.json alone, it is the keys the run's
    command-line overrides set, and any other key that a sibling run overrode was at its default in this one."""

    values: dict[str, Any]
    overridden: frozenset[str] | None = None


def is_setting(key: str) -> bool:
    """False for the keys of `NOT_SETTINGS` and those under them (``paths.root``, ``hydra/launcher``)."""
    return not any(key == k or key.startswith((f"{k}.", f"{k}/")) for k in NOT_SETTINGS)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``; lists are values; W&B's ``{"value": x, "desc": ...}`` is ``x``."""
    if isinstance(node, Mapping) and "value" in node and set(node) <= {"value", "desc"}:
        node = node["value"]
    if not isinstance(node, Mapping) or not node:
        return {prefix: node} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def settings(node: Any) -> dict[str, Any]:
    return {key: value for key, value in flatten(node).items() if is_setting(key)}


def parse_overrides(items: Iterable[Any]) -> dict[str, Any]:
    """``["trainer.budget.steps=288", "+x=a", "~y"]`` as ``{"trainer.budget.steps": 288, "x": "a", "y":
    "(deleted)"}``, values read as YAML as Hydra reads simple ones. ``method=...`` is left out: results.json
    records the method node itself, and ``method=single_0`` is ``method=single method.objective=...``."""
    import yaml

    parsed: dict[str, Any] = {}
    for item in map(str, items):
        key, has_value, text = item.partition("=")
        if key.startswith("~"):
            parsed[key.lstrip("~")] = "(deleted)"
            continue
        key = key.lstrip("+")
        if not has_value or key == "method":
            continue
        try:
            parsed[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            parsed[key] = text
    return {key: value for key, value in parsed.items() if is_setting(key)}


def recorded_settings(result: Mapping) -> dict[str, Any]:
    """The settings a results.json records as keys of its own: the budget, the method node and the prompts it
    was evaluated on, as config keys (``trainer.budget.steps``, ``method.decoding``, ``per_prompt.n_prompts``)."""
    recorded: dict[str, Any] = {}
    if isinstance(result.get("budget"), Mapping):
        recorded["trainer"] = {"budget": result["budget"]}
    if isinstance(result.get("method_config"), Mapping):
        recorded["method"] = result["method_config"]
    per_prompt = result.get("per_prompt")
    if isinstance(per_prompt, Mapping):  # what was evaluated, which eval.n_prompts caps at the eval split
        recorded["per_prompt"] = {k: per_prompt.get(k) for k in ("n_prompts", "prompts_sha256") if k in per_prompt}
    return settings(recorded)


def recorded_setup(result: Mapping) -> Setup:
    """What results.json alone tells of its run's settings: `recorded_settings` and its command-line overrides
    (`parse_overrides`), for a file without ``.hydra/config.yaml`` beside it."""
    values = recorded_settings(result)
    overrides = result.get("overrides")
    if not isinstance(overrides, list):
        return Setup(values)
    overridden = parse_overrides(overrides)
    return Setup({**overridden, **values}, frozenset(overridden))


def hydra_setup(file: Path) -> Setup | None:
    """The composed config mpo.run saved beside ``file`` (``.hydra/config.yaml``, secrets masked); None where
    there is none. A damaged one is warned about and skipped: results.json's own record (`recorded_setup`)
    stands in, so a side file does not block the comparison."""
    import yaml

    config = file.parent / ".hydra" / "config.yaml"
    if not config.is_file():
        return None
    try:
        node = yaml.safe_load(config.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        warnings.warn(f"{config}: not readable ({one_line(err)}); comparing {file} by what it records itself")
        return None
    if not isinstance(node, Mapping):
        return None
    return Setup(settings(node))


def wandb_setup(config: Mapping) -> Setup:
    """A W&B run's settings: the validated config `mpo.infra.tracking` logs."""
    return Setup(settings(config))


UNKNOWN = object()  # a run that does not record a key: it is not compared on that key


def setting(setup: Setup, key: str, overridden: set[str]) -> Any:
    """One run's value of ``key``: recorded, at its default (a key only its siblings' overrides set), or
    `UNKNOWN`."""
    if key in setup.values:
        return setup.values[key]
    if setup.overridden is not None and key in overridden:
        return DEFAULT
    return UNKNOWN


def canonical(value: Any) -> str:
    """A setting as text that equal settings share: 3 and 3.0 alike, keys sorted."""
    def plain(v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return {str(k): plain(x) for k, x in v.items()} if isinstance(v, Mapping) else v
    return json.dumps(plain(value), sort_keys=True, default=str)


def shown(value: Any) -> str:
    """A setting as a short text for a message: ``288``, ``[0.8, 0.2]``, ``"sequence"``, ``(default)``."""
    text = value if value == DEFAULT else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def unlike_settings(group: list[dict]) -> dict[str, dict[str, list[str]]]:
    """The keys on which the runs of one row disagree: key -> {value: results paths}, in recorded order."""
    setups = [r.get("setup") or Setup({}) for r in group]
    overridden = set().union(*(s.overridden or () for s in setups))
    keys = dict.fromkeys(k for s in setups for k in s.values)
    unlike = {}
    for key in keys:
        by_value: dict[str, tuple[str, list[str]]] = {}
        for result, setup in zip(group, setups):
            value = setting(setup, key, overridden)
            if value is not UNKNOWN:
                _, found = by_value.setdefault(canonical(value), (shown(value), []))
                found.append(str(result.get("results_path", "?")))
        if len(by_value) > 1:
            unlike[key] = dict(by_value.values())
    return unlike


def _values_text(key: str, by_value: dict[str, list[str]]) -> str:
    """``trainer.budget.steps = 96 in a/results.json vs 288 in b/results.json, c/results.json``."""
    def paths(found: list[str]) -> str:
        return ", ".join(found[:2]) + (f" (+{len(found) - 2} more)" if len(found) > 2 else "")
    return f"{key} = " + " vs ".join(f"{value} in {paths(found)}" for value, found in by_value.items())


def refuse_unlike(group: list[dict]) -> None:
    """Runs of one table row may differ in their seed alone: a mean over runs with different budgets, eval
    prompts or decoding is no number any run measured. Refused in one line naming the row, the first few
    differing keys with each value and its files, and the fix. Not split into rows: the method's label names
    the row (``--baseline`` and the report find rows by it), and no setting gives a run another label."""
    unlike = unlike_settings(group)
    if not unlike:
        return
    first, keys = group[0], list(unlike)
    detail = "; ".join(_values_text(key, unlike[key]) for key in keys[:3])
    if len(keys) > 3:
        rest = ", ".join(keys[3:9]) + (", ..." if len(keys) > 9 else "")
        detail += f"; and {len(keys) - 3} more key(s): {rest}"
    raise DataError(
        f"runs labelled {first['label']!r} (task {first['task']}, policy {first['policy']}, β {first['beta']:g}) "
        f"differ in more than the seed, so they cannot be averaged into one row: {detail}. Compare each "
        "setting's runs on their own (python -m mpo.compare with the run dirs of one setting), or rerun them "
        "with the same settings")
