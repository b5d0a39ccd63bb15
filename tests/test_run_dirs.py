"""Run and sweep directories that no two processes share, even when started in the same second."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import mpo.config.schema  # noqa: F401  (registers the schemas and the ${mpo.unique:} resolver)
from conftest import CONF_DIR

REPO = Path(__file__).resolve().parents[1]


def _dirs() -> tuple[str, str, str]:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["paths.root=/r", "hydra.job.num=0"], return_hydra_config=True)
    return str(cfg.hydra.run.dir), str(cfg.hydra.run.dir), str(cfg.hydra.sweep.dir)


def test_two_configs_composed_in_the_same_second_name_different_run_dirs():
    first, first_again, sweep = _dirs()
    second, _, other_sweep = _dirs()
    assert first == first_again  # one job reads one run dir
    assert first != second and sweep != other_sweep
    suffix = r"\d{2}-\d{2}-\d{2}-[0-9a-f]{6}"
    assert re.search(rf"/runs/\d{{4}}-\d{{2}}-\d{{2}}/{suffix}-reviews-", first), first
    assert re.search(rf"/multirun/\d{{4}}-\d{{2}}-\d{{2}}/{suffix}$", sweep), sweep


def test_every_shipped_sweep_names_a_unique_sweep_dir():
    for path in sorted((REPO / "sweeps").glob("*.yaml")):
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        sweep = (data.get("hydra") or {}).get("sweep") or {}
        if "dir" in sweep:
            assert "${mpo.unique:}" in sweep["dir"], path.name


def test_two_runs_started_together_keep_both_results(tmp_path):
    """The repro: two jobs launched at once (a shell loop with `&`) each keep their own results.json."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mpo.run", "experiment=smoke", "method=reference", f"paths.root={tmp_path}",
               "logger=none"]
    jobs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [job.communicate(timeout=600) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    written = sorted((tmp_path / "runs").rglob("results.json"))
    assert len(written) == 2 and written[0].parent != written[1].parent
    assert all(json.loads(p.read_text())["method"] == "reference" for p in written)
