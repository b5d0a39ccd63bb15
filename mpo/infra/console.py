"""What a researcher reads on the console while runs go (README "Journey 2"): one progress bar with an ETA per
long step, on a terminal only; one line per artifact built; in a multirun one line per finished job. Everything
else a job prints (its summary block, per-step numbers, libraries' chatter) goes to its log file
(``<job dir>/run.log``) and to W&B. Which log records reach the console is configured in one place,
``conf/hydra/job_logging/mpo.yaml``.

On a terminal a bar is redrawn in place and removed when its step ends; piped into a file (``make run | tee``),
or while several jobs share the terminal (joblib's ``n_jobs`` > 1), there are no bars, so the console holds
only whole lines.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from mpo.infra.hydra_job import in_multirun, parallel_jobs

_steps: list[str] = []  # the artifacts being built now, outermost first: a bar's description names them
_stdout: list[TextIO] = []  # the console while a multirun job's own stdout goes to its log


def console() -> TextIO:
    """Where our lines go: the real stdout, also while a multirun job's prints are redirected to its log."""
    return _stdout[-1] if _stdout else sys.stdout


def say(line: str) -> None:
    """One line on the console; in a multi-process job only rank 0's (the others repeat its steps)."""
    from mpo.infra.distributed import is_main

    if is_main():
        print(line, file=console(), flush=True)


# ------------------------------------------------------------------------------------------------ progress
def interactive() -> bool:
    """Bars only where they redraw in place for one reader: stderr is a terminal and jobs run one at a time."""
    from mpo.infra.distributed import is_main

    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and parallel_jobs() == 1 and is_main()


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str = "it") -> Any:
    """A tqdm bar with ETA, labelled with the artifact being built (``reference: training``); off where the
    console is not interactive (`interactive`), where it iterates and counts without writing anything."""
    from tqdm.auto import tqdm

    label = ": ".join([*_steps[-1:], desc])
    return tqdm(iterable, total=total, desc=label, unit=unit, leave=False, dynamic_ncols=True, mininterval=0.5,
                disable=not interactive())


def current_build() -> str | None:
    """The innermost artifact being built now (None outside any build)."""
    return _steps[-1] if _steps else None


@contextlib.contextmanager
def building(name: str) -> Iterator[None]:
    """Around one artifact's build: its bars carry its name, and when it is done one line says how long it took
    (the console's record of what a run built; a reused artifact prints nothing)."""
    _steps.append(name)
    start = time.perf_counter()
    try:
        yield
    except KeyboardInterrupt as err:  # Ctrl-C: `mpo.cli` names the build it stopped (the innermost)
        if getattr(err, "mpo_building", None) is None:
            err.mpo_building = name
        raise
    finally:
        _steps.pop()
    say(f"  built {name} in {duration(time.perf_counter() - start)}")


def announced(name: str, build: Callable[[Path], Any]) -> Callable[[Path], Any]:
    """``build`` run inside `building`: what `mpo.stages.context.RunContext.build` hands the artifact store."""
    def run(out: Path) -> Any:
        with building(name):
            return build(out)

    return run


def training_progress(stage: str) -> Any:
    """A quiet ``transformers.TrainerCallback``: a bar over the Trainer's optimizer steps, and each logged dict
    as an INFO record (the job's run.log; W&B gets them from `mpo.infra.tracking`). The Trainer's own tqdm and printer
    stay off (`mpo.training.common`). Built on first use so that importing this module does not import
    transformers."""
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        def __init__(self) -> None:
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - HF signature
            self.bar = bar(total=state.max_steps, desc=f"training {stage}", unit="step")

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)  # a resumed run starts past 0

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if logs:
                logging.getLogger("mpo.training").info("%s step %d: %s", stage, state.global_step, logs)

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TrainingProgress()


def duration(seconds: float) -> str:
    """``0.4 s``, ``38 s``, ``4 min 05 s``, ``1 h 02 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# ---------------------------------------------------------------------------------------------- a job
@contextlib.contextmanager
def job() -> Iterator[None]:
    """One job's console: libraries' own bars off (ours are explicit); in a multirun, what the job prints
    (its summary block, libraries' prints) goes to its log file as INFO records of ``mpo.job``, so the
    console keeps one line per job (`job_line`)."""
    os.environ["TQDM_DISABLE"] = "1"  # TRL's reference log-probs bar and the like; `bar` passes `disable` itself
    if not in_multirun():
        yield
        return
    _stdout.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(_LogLines(logging.getLogger("mpo.job"))):
            yield
    finally:
        _stdout.pop()


class _LogLines(io.TextIOBase):
    """A text stream that logs each whole line it is given as one INFO record."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger, self.pending = logger, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if line.strip():
                self.logger.info(line)
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            self.logger.info(self.pending)
        self.pending = ""


def job_line(results: dict) -> str:
    """A finished multirun job in one line: its row label, min win-rate [CI] (worst objective), what its own
    stages cost (CPU-seconds, the table's "own" column) and how long the job took."""
    ci = results.get("min_win_rate_ci") or {}
    interval = (f" [{ci['low']:.3f}, {ci['high']:.3f}]"
                if all(isinstance(ci.get(k), (int, float)) for k in ("low", "high")) else "")
    own = ((results.get("cost") or {}).get("split") or {}).get("own", {}).get("cpu_seconds")
    seconds = ((results.get("cost") or {}).get("run") or {}).get("seconds")
    parts = [f"  {results['label']}: min win-rate {results['min_win_rate']:.3f}{interval} "
             f"({results.get('min_win_rate_objective')})"]
    if isinstance(own, (int, float)) and not math.isnan(own):
        parts.append(f"own {own:.0f} CPU-s")
    if isinstance(seconds, (int, float)):
        parts.append(f"done in {duration(seconds)}")
    return "; ".join(parts)


def job_done(results: dict) -> None:
    """In a multirun, `job_line` on the console (a single run has printed its whole summary already)."""
    if in_multirun():
        say(job_line(results))
