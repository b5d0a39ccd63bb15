"""Weights & Biases tracking: the only module of the project that imports wandb.

One W&B run per job. Training stages log under ``train/<stage>/...`` with their own step metric, the
evaluation under ``eval/...``, costs under ``cost/...``, MPO's weights and BSMD trace under ``mpo/...``,
and the run summary holds the numbers W&B's run-comparison table should show as columns. Each run also logs
one W&B artifact, ``results-<run id>`` of type ``results``: the job's ``results.json`` and ``lineage.json``
(every stage it used, by artifact-store key ``<stage>/<digest>``, whether it reused it, its cost category and
build cost). The stages themselves are not uploaded (they are models and datasets, in the local store), and
W&B's ``use_artifact`` is refused offline, so the lineage is that file, not W&B's lineage graph.

Tracking must never cost a result: every failure (no API key, no network, a timeout, a W&B bug) becomes a
``logging`` warning that says how to fix it, and the tracker carries on as a no-op. ``wandb`` is imported
lazily so that ``backend="none"`` costs nothing.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import netrc
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mpo.infra.distributed import is_main
from mpo.infra.masking import mask
from mpo.infra.wandb_offline import wait_until_complete

log = logging.getLogger(__name__)

BACKENDS = ("wandb", "none")
MODES = ("online", "offline", "disabled")
DEFAULT_BASE_URL = "https://api.wandb.ai"
# W&B's hosted service answers under several names (wandb 0.31 defaults to the CoreWeave one and also
# accepts a netrc entry for api.wandb.ai); a key for any of them is a key for the service.
SAAS_HOSTS = ("api.wandb.ai", "api.forge.coreweave.com", "forge.coreweave.com")
FINISH_FLUSH_TIMEOUT = 10.0  # seconds finish() waits for an offline run's file to be complete
BSMD_TRACE_MAX_POINTS = 1000  # a longer trace is thinned evenly (its last point always kept)
_TIMESTAMP = re.compile(r"[\d_.:-]+")  # a dir name of Hydra's ${now:...} patterns: 2026-11-23, 14-02-11, ...


@dataclass
class TrackingConfig:
    """Where and how a job reports to W&B (the Hydra ``logger`` node mirrors these fields)."""

    # "wandb" or "none" (no tracking at all, nothing written).
    backend: str = "wandb"
    project: str = "mpo"
    # W&B entity (user or team); None = the API key's default entity.
    entity: str | None = None
    # None = auto: $WANDB_MODE if set, else "online" when an API key is configured, else "offline";
    # or "online" / "offline" / "disabled".
    mode: str | None = None
    # W&B group; None = the group the launcher passes (`sweep_group`: the sweep's name and timestamp).
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    # Directory wandb writes under (it adds wandb/<run>); None = the job's run dir.
    dir: str | None = None
    # Seconds to wait for the W&B server before giving up (wandb's own default is 90).
    init_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"logger.backend={self.backend!r}: use one of {BACKENDS}")
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"logger.mode={self.mode!r}: use null (auto) or one of {MODES}")
        if not self.init_timeout > 0:
            raise ValueError(f"logger.init_timeout={self.init_timeout!r}: must be > 0 seconds")


def wandb_api_key_configured() -> bool:
    """Whether W&B credentials exist locally ($WANDB_API_KEY, an identity token file, or a netrc entry
    for the W&B host, which is what ``wandb login`` writes). Never touches the network."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    url = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL)
    hosts = [url.netloc] + (list(SAAS_HOSTS) if url.hostname in SAAS_HOSTS else [])
    candidates = [os.environ["NETRC"]] if os.environ.get("NETRC") else ["~/.netrc", "~/_netrc"]
    for candidate in candidates:
        path = Path(candidate).expanduser()
        try:
            entries = netrc.netrc(str(path))
        except (OSError, netrc.NetrcParseError):
            continue
        if any((creds := entries.authenticators(host)) and creds[2] for host in hosts):
            return True
    return False


def resolve_mode(mode: str | None) -> str:
    """The W&B mode a job will use: an explicit mode wins, then $WANDB_MODE, then key-based auto."""
    if mode is not None:
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if env_mode in ("dryrun",):
        env_mode = "offline"
    if env_mode in MODES:
        return env_mode
    return "online" if wandb_api_key_configured() else "offline"


def sweep_group(name: str, sweep_dir: str | None) -> str:
    """The W&B group of a job: ``name`` (the sweep's or run's ``experiment_name``) for a single run; for a
    multirun, ``name`` and the timestamp of its sweep dir (``compare_methods-2026-11-23_14-02-11``), so that
    each launch is a group of its own; a sweep dir without a timestamp names the group itself
    (``hydra.sweep.dir=.../two_methods`` -> ``two_methods``)."""
    if sweep_dir is None:
        return name
    parts = Path(sweep_dir).parts or (name,)
    stamp = list(itertools.takewhile(_TIMESTAMP.fullmatch, reversed(parts)))[::-1]
    return f"{name}-{'_'.join(stamp)}" if stamp else parts[-1]


def _number(value: Any) -> float | int | None:
    """A loggable scalar, or None (strings, lists and tensors with more than one element are skipped)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            scalar = item()
        except (ValueError, RuntimeError):
            return None
        return scalar if isinstance(scalar, (int, float)) else None
    return None


def _mpo_diagnostics(info: Mapping[str, Any]) -> dict[str, float | int]:
    """MPO's weight-solve diagnostics as ``mpo/...`` metrics (absent for other methods)."""
    named = {f"mpo/{key}": info.get(key)
             for key in ("duality_gap", "bsmd_l1_from_exact", "bsmd_average_l1_from_exact", "bsmd_gap_from_exact",
                         "certificate_spread_on_support", "neg_objective", "token_median_ess")}
    for group in ("ess", "weights_bsmd", "weights_exact", "weights_win_rate", "weights_token", "token_estimated_kl",
                  "token_estimated_win_rates", "estimated_win_rates", "estimated_win_rates_at_regret_weights",
                  "certificate", "self_check_mixture", "self_check_reference_only"):
        named.update({f"mpo/{group}/{key}": value for key, value in (info.get(group) or {}).items()})
    return {key: number for key, value in named.items() if (number := _number(value)) is not None}


def _thin(values: list[float], max_points: int) -> list[tuple[int, float]]:
    """(step, value) pairs, at most ``max_points`` evenly spaced, always keeping the last step."""
    if len(values) <= max_points:
        return list(enumerate(values))
    stride = -(-len(values) // max_points)
    steps = list(range(0, len(values), stride))
    if steps[-1] != len(values) - 1:
        steps[-1] = len(values) - 1
    return [(s, values[s]) for s in steps]


class Tracker:
    """One job's W&B run, or a no-op stand-in with the same methods (``active`` is then False)."""

    def __init__(self, run: Any = None, mode: str = "disabled") -> None:
        self._run = run
        self.mode = mode if run is not None else "disabled"
        self._stage_steps: dict[str, int] = {}
        self._warned: set[str] = set()
        self._finished = run is None

    # ------------------------------------------------------------------ start
    @classmethod
    def start(cls, config: TrackingConfig, *, run_config: Mapping[str, Any], name: str, job_type: str,
              group: str | None, run_dir: Path) -> Tracker:
        """Start this job's run; any failure gives a warning and a no-op tracker, never an exception.

        ``config.group`` (set by the user) wins over ``group`` (passed by the launcher: the sweep)."""
        if config.backend == "none" or not is_main():
            return cls()  # one run per job: under DDP only rank 0 reports
        try:
            mode = resolve_mode(config.mode)
            init_kwargs = dict(
                project=config.project, entity=config.entity, group=config.group or group,
                job_type=job_type, tags=list(config.tags) or None, name=name,
                config=mask(run_config), dir=str(Path(config.dir or run_dir).expanduser()),
            )
        except Exception as error:  # noqa: BLE001 - e.g. a config value that cannot be read
            log.warning("W&B tracking is off for this job: %s: %s", type(error).__name__, error)
            return cls()
        if mode == "disabled":
            return cls()
        if mode == "online" and not wandb_api_key_configured():
            if config.mode is not None:
                log.warning(
                    "W&B mode is 'online' but no API key is configured: tracking is off for this job "
                    "(results are still written locally). Fix: `wandb login` or export WANDB_API_KEY, or "
                    "set logger.mode=offline (or null for auto) and upload later with `wandb sync`.")
                return cls()
            log.warning("WANDB_MODE=online but no W&B API key is configured: logging offline instead "
                        "(`wandb login`, then `wandb sync` the run dir to upload it).")
            mode = "offline"
        try:
            return cls(_init_run(mode, config.init_timeout, init_kwargs), mode)
        except Exception as error:  # noqa: BLE001 - tracking must never stop the job
            return cls._after_failed_init(config, mode, init_kwargs, error)

    @classmethod
    def _after_failed_init(cls, config: TrackingConfig, mode: str, init_kwargs: dict[str, Any],
                           error: Exception) -> Tracker:
        """Auto mode falls back to an offline run (to sync later); an explicit mode becomes a no-op."""
        where = os.environ.get("WANDB_BASE_URL") or "W&B's default server"
        what = f"W&B init ({mode}, {where}) failed: {type(error).__name__}: {error}".strip()
        if config.mode is None and mode == "online":
            try:
                tracker = cls(_init_run("offline", config.init_timeout, init_kwargs), "offline")
            except Exception as second:  # noqa: BLE001
                what += f"; offline fallback failed too: {type(second).__name__}: {second}"
            else:
                log.warning("%s. Logging offline instead to %s; upload it later with `wandb sync %s`.",
                            what, tracker.run_dir, tracker.run_dir)
                return tracker
        log.warning(
            "%s. Tracking is off for this job (results are still written locally). Fix: check the network "
            "and WANDB_BASE_URL, the API key (`wandb login`), or raise logger.init_timeout; or run with "
            "logger.mode=offline and upload later with `wandb sync <dir>/wandb/offline-run-*`.", what)
        return cls()

    # ------------------------------------------------------------ properties
    @property
    def active(self) -> bool:
        """True while a real W&B run is attached and not finished."""
        return self._run is not None and not self._finished

    @property
    def run_path(self) -> str | None:
        """``entity/project/id`` (``project/id`` offline, where the entity is unknown), or None."""
        return None if self._run is None else self._run.path

    @property
    def run_dir(self) -> Path | None:
        """The local wandb run directory (``.../wandb/offline-run-<ts>-<id>``), or None."""
        if self._run is None:
            return None
        return Path(self._run.settings.sync_dir)

    # --------------------------------------------------------------- logging
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Run one W&B call; a failure is logged once per kind of call and otherwise ignored."""
        try:
            fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - tracking must never stop the job
            if what not in self._warned:
                self._warned.add(what)
                log.warning("W&B %s failed (%s: %s); carrying on without it.", what,
                            type(error).__name__, error)

    def _define_step_metric(self, prefix: str) -> None:
        self._call("define_metric", self._run.define_metric, f"{prefix}/step")
        self._call("define_metric", self._run.define_metric, f"{prefix}/*", step_metric=f"{prefix}/step")

    def log_stage(self, stage: str, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log a training stage's metrics as ``train/<stage>/<metric>`` against ``train/<stage>/step``
        (its own x-axis, so stages never clash with each other or with W&B's global step)."""
        if not self.active:
            return
        values = {k: v for k, v in ((k, _number(v)) for k, v in metrics.items()) if v is not None}
        if not values:
            return
        if stage not in self._stage_steps:
            self._define_step_metric(f"train/{stage}")
        step = self._stage_steps.get(stage, -1) + 1 if step is None else int(step)
        self._stage_steps[stage] = step
        payload = {f"train/{stage}/{k}": v for k, v in values.items()}
        payload[f"train/{stage}/step"] = step
        self._call("log", self._run.log, payload)

    def log_table(self, key: str, rows: list[Mapping[str, Any]]) -> None:
        """Log ``rows`` (dicts with the same keys) as the W&B table ``key``: text columns first, in reading order
        (prompt before completion), then the numbers."""
        if not self.active or not rows:
            return
        import wandb

        text = [c for c in ("prompt", "completion") if c in rows[0]]
        columns = text + sorted(c for c in rows[0] if c not in text)
        table = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])
        self._call("log", self._run.log, {key: table})

    def callback(self, stage: str) -> Any:
        """A ``transformers.TrainerCallback`` forwarding a (TRL) Trainer's ``on_log`` to `log_stage`."""
        return _stage_callback_class()(self, stage)

    def log_results(self, results: Mapping[str, Any]) -> None:
        """Log one job's evaluation (the ``results.json`` dict): metrics, tables, weights, BSMD trace,
        and the summary columns of W&B's run-comparison table."""
        if not self.active:
            return
        payload: dict[str, Any] = {**_eval_metrics(results), **_cost_metrics(results)}
        payload.update({f"mpo/weight/{k}": v for k, v in (results.get("weights") or {}).items()})
        payload.update(_mpo_diagnostics(results.get("method_info") or {}))
        self._call("tables", lambda: payload.update(_tables(results)))
        self._call("log", self._run.log, payload)
        trace = (results.get("method_info") or {}).get("bsmd_trace")
        if trace:
            self._define_step_metric("mpo/bsmd")
            for step, value in _thin([float(v) for v in trace], BSMD_TRACE_MAX_POINTS):
                self._call("log", self._run.log, {"mpo/bsmd/objective": value, "mpo/bsmd/step": step})
        self._call("summary", self._run.summary.update, _summary(results))
        self._call("log_artifact", self._log_results_artifact, results)

    def _log_results_artifact(self, results: Mapping[str, Any]) -> None:
        """``results.json`` (the file the job wrote, else the dict) and ``lineage.json`` as one artifact."""
        import wandb

        artifact = wandb.Artifact(f"results-{self._run.id}", type=RESULTS_ARTIFACT_TYPE,
                                  metadata=_results_metadata(results))
        written = Path(str(results.get("run_dir") or "")) / "results.json"
        with tempfile.TemporaryDirectory(prefix="mpo-wandb-") as tmp:
            if not (results.get("run_dir") and written.is_file()):
                written = Path(tmp) / "results.json"
                written.write_text(json.dumps(mask(dict(results)), indent=1, default=str))
            lineage = Path(tmp) / "lineage.json"
            lineage.write_text(json.dumps(stage_lineage(results), indent=1))
            artifact.add_file(str(written), name="results.json")
            artifact.add_file(str(lineage), name="lineage.json")
            self._run.log_artifact(artifact)

    def finish(self, exit_code: int = 0) -> None:
        """Close the run (idempotent, safe in ``finally``); W&B errors are logged, not raised."""
        if self._finished:
            return
        self._finished = True
        self._call("finish", self._run.finish, exit_code=exit_code)
        if self.mode == "offline":
            self._call("flush", self._wait_for_run_file)

    def _wait_for_run_file(self) -> None:
        """Return only once the offline run is complete on disk, so a reader (or `wandb sync`) right
        after `finish` sees all of it."""
        if not wait_until_complete(self.run_dir, FINISH_FLUSH_TIMEOUT):
            log.warning("W&B is still writing %s; it is complete once this process has exited.",
                        self.run_dir)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)


def _init_run(mode: str, init_timeout: float, init_kwargs: dict[str, Any]) -> Any:
    """``wandb.init`` with a bounded wait. ``WANDB_BASE_URL`` is read now, not when wandb first set
    itself up in this process (a Hydra job may set it through ``hydra.job.env_set``)."""
    import wandb

    Path(init_kwargs["dir"]).mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {"init_timeout": float(init_timeout)}
    if os.environ.get("WANDB_BASE_URL"):
        settings["base_url"] = os.environ["WANDB_BASE_URL"]
    return wandb.init(mode=mode, settings=wandb.Settings(**settings), **init_kwargs)


def _eval_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    reward, delta = results.get("reward") or {}, results.get("reward_delta") or {}
    win_rate = results.get("win_rate") or {}
    metrics: dict[str, float] = {}
    for objective in _objectives(results):
        if objective in reward:
            metrics[f"eval/reward/{objective}"] = reward[objective]
        if objective in delta:
            metrics[f"eval/reward_delta/{objective}"] = delta[objective]
        if objective in win_rate:
            win = win_rate[objective]
            metrics[f"eval/win_rate/{objective}"] = win["mean"]
            metrics[f"eval/win_rate/{objective}_ci_low"] = win["ci_low"]
            metrics[f"eval/win_rate/{objective}_ci_high"] = win["ci_high"]
    if results.get("min_win_rate") is not None:
        metrics["eval/min_win_rate"] = results["min_win_rate"]
    metrics.update({f"eval/min_win_rate_{key}": value for key, value in _min_win_rate_ci(results).items()})
    kl = results.get("kl") or {}
    metrics.update({f"eval/kl{'' if key == 'mean' else '_' + key}": kl[key] for key in ("mean", "ci_low", "ci_high")
                    if _number(kl.get(key)) is not None})
    return metrics


def _min_win_rate_ci(results: Mapping[str, Any]) -> dict[str, float]:
    """``{"ci_low": .., "ci_high": ..}`` from results.json's ``min_win_rate_ci`` (empty where absent or null)."""
    ci = results.get("min_win_rate_ci") or {}
    return {f"ci_{side}": ci[side] for side in ("low", "high") if _number(ci.get(side)) is not None}


def _cost_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """``cost/<stage>_seconds`` (+ ``_cpu_seconds``) per stage, ``cost/<category>_…`` per category of the split
    (shared, singles, own, evaluation; mpo.infra.costs) and ``cost/total_…``."""
    from mpo.infra.costs import stages

    cost = results.get("cost") or {}
    metrics: dict[str, float] = {}
    parts = {**stages(cost), **(cost.get("split") or {})}
    if cost.get("total") is not None:
        parts["total"] = cost["total"]
    else:
        parts["total"] = {"seconds": sum(entry["seconds"] for entry in stages(cost).values())}
    for name, entry in parts.items():
        for key in ("seconds", "cpu_seconds", "trained_sequences"):
            if _number(entry.get(key)) is not None:
                metrics[f"cost/{name}_{key}"] = entry[key]
    return metrics


RESULTS_ARTIFACT_TYPE = "results"
LINEAGE_KEYS = ("artifact", "reused", "category", "seconds", "cpu_seconds", "trained_sequences")


def stage_lineage(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per stage of results.json's ``cost``: its artifact-store key (``<stage>/<digest>`` under
    ``paths.artifacts``; None for work every run redoes, such as the evaluation), whether this run reused it,
    its cost category and what it cost to build."""
    from mpo.infra.costs import stages

    return {name: {key: entry.get(key) for key in LINEAGE_KEYS if key in entry}
            for name, entry in stages(results.get("cost") or {}).items()}


def _results_metadata(results: Mapping[str, Any]) -> dict[str, Any]:
    """What W&B's artifact page shows without opening the files: the run's identity, its min win-rate and the
    store keys of the stages it used."""
    meta = {k: results[k] for k in ("method", "label", "task", "policy", "seed", "beta", "min_win_rate",
                                    "min_win_rate_objective") if results.get(k) is not None}
    meta["stages"] = {name: entry.get("artifact") for name, entry in stage_lineage(results).items()}
    return meta


def _objectives(results: Mapping[str, Any]) -> list[str]:
    if results.get("objectives"):
        return list(results["objectives"])
    return sorted({*(results.get("reward") or {}), *(results.get("win_rate") or {})})


def per_objective_rows(results: Mapping[str, Any]) -> list[list[Any]]:
    """Rows of the ``eval/per_objective`` table, in `PER_OBJECTIVE_COLUMNS` order."""
    rows = []
    for objective in _objectives(results):
        win = (results.get("win_rate") or {}).get(objective) or {}
        rows.append([objective, *((results.get(key) or {}).get(objective)
                                  for key in ("reward", "reward_reference", "reward_delta")),
                     win.get("mean"), win.get("ci_low"), win.get("ci_high")])
    return rows


PER_OBJECTIVE_COLUMNS = ["objective", "reward", "reward_reference", "reward_delta", "win_rate", "ci_low",
                         "ci_high"]
SAMPLE_COLUMNS = ["prompt", "response", "reference"]


def _tables(results: Mapping[str, Any]) -> dict[str, Any]:
    import wandb

    tables = {"eval/per_objective": wandb.Table(columns=PER_OBJECTIVE_COLUMNS,
                                                data=per_objective_rows(results))}
    samples = results.get("samples") or []
    if samples:
        rows = [[str(s.get(c) if s.get(c) is not None else "") for c in SAMPLE_COLUMNS] for s in samples]
        tables["eval/samples"] = wandb.Table(columns=SAMPLE_COLUMNS, data=rows)
    return tables


def _summary(results: Mapping[str, Any]) -> dict[str, Any]:
    """Flat top-level summary keys: the columns W&B's run table shows side by side across runs."""
    summary = {k: results[k] for k in ("method", "label", "task", "seed", "beta", "min_win_rate",
                                       "min_win_rate_objective") if results.get(k) is not None}
    summary.update({f"min_win_rate_{key}": value for key, value in _min_win_rate_ci(results).items()})
    for objective, win in (results.get("win_rate") or {}).items():
        summary[f"win_rate/{objective}"] = win["mean"]
    for key in ("reward", "reward_delta"):
        summary.update({f"{key}/{k}": v for k, v in (results.get(key) or {}).items()})
    summary.update({f"weight/{k}": v for k, v in (results.get("weights") or {}).items()})
    cost = results.get("cost") or {}
    if cost.get("total") is not None:
        summary["total_seconds"] = cost["total"]["seconds"]
    if cost.get("given_singles") is not None:
        summary["given_singles_cpu_seconds"] = cost["given_singles"]["cpu_seconds"]
    return summary


@functools.cache
def _stage_callback_class() -> type:
    """Built on first use so that importing this module does not import transformers."""
    from transformers import TrainerCallback

    class StageLogCallback(TrainerCallback):
        """Forwards a Trainer's logs to `Tracker.log_stage` at the trainer's global step."""

        def __init__(self, tracker: Tracker, stage: str) -> None:
            self.tracker, self.stage = tracker, stage

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - HF signature
            if logs and state.is_world_process_zero:
                self.tracker.log_stage(self.stage, logs, step=state.global_step)

    return StageLogCallback
