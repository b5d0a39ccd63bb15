"""Hydra callbacks: `CompareWhenDone` runs `mpo.compare` on a sweep's directory when its multirun ends, so a
sweep finishes with the comparison table and the path of its report (sweeps/compare_methods.yaml)."""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class CompareWhenDone(Callback):
    """``python -m mpo.compare <sweep dir> [--baseline LABEL] --brief`` after the last job (it prints the table
    and the report's path); a failure of the comparison is a warning (the runs' results.json files stay)."""

    def __init__(self, baseline: str | None = None) -> None:
        self.baseline = baseline

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mpo.compare import main

        sweep_dir = str(config.hydra.sweep.dir)  # Hydra's `now` resolver is cached: the launch's directory
        args = [sweep_dir, *(["--baseline", self.baseline] if self.baseline else []), "--brief"]
        try:
            main(args)  # the table and the report's path: the sweep's last lines
        except (Exception, SystemExit) as err:  # a comparison failure must not hide the finished runs
            log.warning("python -m mpo.compare %s failed (%s); the runs are in %s", " ".join(args), err, sweep_dir)
