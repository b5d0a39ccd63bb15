"""The one reader of Hydra's job state: whether a job runs inside ``@hydra.main``, in a multirun, which job of
the sweep it is, its overrides, how many jobs the launcher runs at once, and which preset each group chose.
Outside a Hydra job every answer is the neutral one (no job number, one job at a time, no choices).

Also `record_job`: the job's ``.hydra/`` files and the sweep's ``multirun.yaml``, written with secrets masked.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mpo.infra.masking import mask, mask_overrides, mask_strings, mask_text


def hydra_config() -> Any:
    """Hydra's config of the running job, or None outside ``@hydra.main``."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def in_multirun() -> bool:
    hc = hydra_config()
    return hc is not None and str(hc.mode) == "RunMode.MULTIRUN"


def job_state() -> dict[str, Any]:
    """Overrides (secret-like values as ``***``), job number and sweep dir of the current job; the job number and
    sweep are None in a single run, and everything is empty outside ``@hydra.main``."""
    from omegaconf import OmegaConf

    hc = hydra_config()
    if hc is None:
        return {"overrides": [], "job_num": None, "sweep": None}
    multirun = in_multirun()
    return {
        "overrides": mask_overrides(list(hc.overrides.task)),
        "job_num": OmegaConf.select(hc, "job.num", default=None) if multirun else None,
        "sweep": hc.sweep.dir if multirun else None,
    }


def sweep_job() -> str | None:
    """``#3 (method=mpo seed=1)`` inside a multirun job, None in a single run."""
    if not in_multirun():
        return None
    state = job_state()
    return f"#{'?' if state['job_num'] is None else state['job_num']} ({' '.join(state['overrides'])})"


def parallel_jobs() -> int:
    """How many jobs the Hydra launcher runs at once (joblib's n_jobs; 1 outside a parallel multirun)."""
    from omegaconf import OmegaConf

    hc = hydra_config()
    if hc is None:
        return 1
    n_jobs = OmegaConf.select(hc, "launcher.n_jobs", default=None)
    return int(n_jobs) if isinstance(n_jobs, int) and n_jobs > 0 else 1


def runtime_choices() -> dict[str, Any]:
    """The preset each config group chose (``{"method": "mpo", "hydra/launcher": "basic", ...}``)."""
    hc = hydra_config()
    return dict(hc.runtime.choices) if hc is not None else {}


def record_job(cfg: Any) -> None:
    """What Hydra would write into the job's ``.hydra/`` (``hydra.output_subdir`` is null in conf/config.yaml,
    so it writes nothing) written here with secrets masked; the sweep's ``multirun.yaml`` and ``sys.argv``
    (which W&B records as the run's args) masked in place. Outside a Hydra job: nothing to do."""
    from omegaconf import OmegaConf

    hydra_cfg = hydra_config()
    if hydra_cfg is None:
        return
    sys.argv[:] = [mask_text(arg) for arg in sys.argv]
    out = Path(hydra_cfg.runtime.output_dir) / ".hydra"
    out.mkdir(parents=True, exist_ok=True)
    _write_yaml(out / "config.yaml", mask(OmegaConf.to_container(cfg, resolve=False)))
    _write_yaml(out / "hydra.yaml", {"hydra": mask_strings(OmegaConf.to_container(hydra_cfg, resolve=False))})
    _write_yaml(out / "overrides.yaml", mask_overrides(list(hydra_cfg.overrides.task)))
    sweep = Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml"
    if in_multirun() and sweep.is_file():
        data = OmegaConf.to_container(OmegaConf.load(sweep), resolve=False)
        masked = {k: mask_strings(v) if k == "hydra" else mask(v) for k, v in data.items()}
        if masked != data:  # every job of the sweep may get here: each writes the same text, atomically
            _write_yaml(sweep, masked)


def _write_yaml(path: Path, data: Any) -> None:
    from omegaconf import OmegaConf

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(data)))
    os.replace(tmp, path)
