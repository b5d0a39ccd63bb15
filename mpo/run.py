"""`mpo-run [overrides]` (or `python -m mpo.run`): compose policy x task x method, run it, evaluate it, report it."""

from __future__ import annotations

import sys
from contextlib import nullcontext

import hydra
from omegaconf import DictConfig

from mpo.cli import register_help_resolver
from mpo.config.dirs import CONF_DIR, with_shipped_sweeps
from mpo.config.load import load_config
import mpo.config.schema  # noqa: F401  (registers the schemas in Hydra's ConfigStore)
from mpo.infra import console
from mpo.infra.devices import check_device
from mpo.infra.errors import ConfigError
from mpo.infra.hydra_job import record_job, runtime_choices, sweep_job

register_help_resolver()  # `--help` lists each group's presets (conf/hydra/help/mpo.yaml)


# the clone's conf/ (live edits), or the copy an installed wheel ships: mpo.config.dirs
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    record_job(cfg)  # .hydra/ files, multirun.yaml and sys.argv, with secrets masked
    try:
        refuse_schema_entries()
        config = load_config(cfg)  # every config check, before torch/transformers are imported (~1 s, not ~8)
        check_device(config.device, config.policy.dtype)  # the GPU asked for is there (torch only if one is asked for)
        from mpo.experiment import run

        with console.job():  # in a multirun, the job's prints go to its log: the console gets one line per job
            results = run(cfg)
    except Exception as err:
        err.mpo_job = sweep_job()  # which job of a sweep failed, told by `mpo.cli` (secrets masked)
        raise
    except KeyboardInterrupt as err:  # `mpo.cli` says what the store kept
        err.mpo_job, err.mpo_store = sweep_job(), _store(cfg)
        raise
    console.job_done(results)
    return results["min_win_rate"]  # what a Hydra sweeper would optimise


def _store(cfg: DictConfig) -> str | None:
    try:
        return str(cfg.paths.artifacts)
    except Exception:  # noqa: BLE001 - interrupted before the paths resolve: the line names no store
        return None


def refuse_schema_entries() -> None:
    """``method=_mpo`` composes (the schema is stored under that name) but is no preset: it would skip the
    preset's YAML and run with schema defaults only."""
    for group, choice in runtime_choices().items():
        if isinstance(choice, str) and choice.startswith("_") and not group.startswith("hydra"):
            raise ConfigError(f"{group}={choice} is an internal schema entry, not a preset: use "
                              f"{group}={choice.lstrip('_')} (python -m mpo.run --help lists the presets)")


def cli() -> None:
    """A user's mistake is one line naming the key and the fix (exit code 2); a bug keeps its traceback."""
    from mpo.cli import exit_on_user_error
    from mpo.infra.distributed import hydra_overrides
    from mpo.infra.masking import mask_log_records, masked_printing, prints_only

    mask_log_records()
    sys.argv = with_shipped_sweeps(sys.argv) + hydra_overrides()  # torchrun: ranks > 0 get a scratch run dir
    # --help, --cfg and --info: Hydra prints the config itself, so it is masked on its way out
    with exit_on_user_error(), masked_printing(sys.argv) if prints_only(sys.argv) else nullcontext():
        main()


if __name__ == "__main__":
    cli()
