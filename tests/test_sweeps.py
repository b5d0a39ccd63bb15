"""Hydra multiruns as a user launches them (`python -m mpo.run -m ...`), read back from the offline W&B
run files and compared by `python -m mpo.compare`; joblib and submitit launchers; every sweep file composes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpo.analysis.results import load_results
from mpo.infra.wandb_offline import find_offline_runs, read_offline_run

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["experiment=smoke", "eval.n_prompts=8"]


def launch(tmp_path: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPO_OUTPUTS": str(tmp_path / "outputs")}
    proc = subprocess.run([sys.executable, "-m", "mpo.run", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    proc = launch(tmp, "-m", "method=reference,single_1", *SMOKE, "logger.mode=offline",
                  f"hydra.sweep.dir={tmp}/outputs/multirun/two_methods")
    return tmp / "outputs" / "multirun" / "two_methods", proc


@pytest.fixture(scope="module")
def multirun(launched):
    return launched[0]


def test_a_piped_multirun_console_has_a_line_per_build_and_per_job(launched):
    """Not a terminal: no bars, no INFO records, no summary blocks; Hydra's line per job, one line per artifact
    built, one per finished job. What the console leaves out is in each job's run.log."""
    sweep, proc = launched
    lines = (proc.stdout + proc.stderr).splitlines()
    assert lines[0] == "Launching 2 jobs locally" and lines[1].startswith("\t#0 : method=reference")
    built = [line for line in lines if line.startswith("  built ")]
    assert {line.split()[1] for line in built} >= {"data", "base_model", "reference", "pairs_conciseness",
                                                   "single_conciseness"}
    done = [line for line in lines if ": min win-rate " in line]
    assert [line.split(":")[0].strip() for line in done] == ["reference", "single[conciseness]"]
    assert all(line.endswith("s") and "own " in line for line in done)
    assert len(lines) == 1 + 2 + len(built) + len(done), "\n".join(lines)  # nothing else: no warnings either
    log = (sweep / "0" / "run.log").read_text()
    assert "== reference on reviews" in log and "building reference artifact" in log


def test_multirun_is_one_wandb_group_with_job_types_config_and_metrics(multirun):
    results = {r["method"]: r for r in load_results([multirun])}
    assert set(results) == {"reference", "single"}
    runs = [read_offline_run(d) for d in find_offline_runs(multirun)]
    assert len(runs) == 2
    assert {r["group"] for r in runs} == {"two_methods"}
    assert {r["job_type"] for r in runs} == {"reference", "single"}
    for logged in runs:
        result = results[logged["job_type"]]
        assert logged["config"]["task"]["name"] == "reviews" and logged["config"]["seed"] == 0
        assert logged["summary"]["eval/min_win_rate"] == pytest.approx(result["min_win_rate"])
        for k in result["objectives"]:
            assert logged["summary"][f"eval/win_rate/{k}"] == pytest.approx(result["win_rate"][k]["mean"])
        assert result["wandb"].endswith(logged["id"])
    single = next(r for r in runs if r["job_type"] == "single")
    assert any(k.startswith("train/dpo_conciseness/") for row in single["history"] for k in row)


def test_compare_on_a_multirun_dir(multirun, tmp_path):
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "-m", "mpo.compare", str(multirun), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "single[conciseness]" in proc.stdout and "reference" in proc.stdout
    results = {r["label"]: r for r in load_results([multirun])}
    import csv

    rows = {row["label"]: row for row in csv.DictReader((out / "comparison.csv").open())}
    for label, result in results.items():
        assert float(rows[label]["min_win_rate/mean"]) == pytest.approx(result["min_win_rate"])
        for k in result["objectives"]:
            assert float(rows[label][f"win_rate/{k}/mean"]) == pytest.approx(result["win_rate"][k]["mean"])
            assert float(rows[label][f"reward/{k}/mean"]) == pytest.approx(result["reward"][k])
    for png in ("win_rates.png", "reward_front.png", "cost.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_joblib_launcher_builds_each_shared_artifact_once(tmp_path):
    launch(tmp_path, "-m", "hydra/launcher=local_parallel", "method=single_0,single_1", *SMOKE, "logger=none",
           f"hydra.sweep.dir={tmp_path}/outputs/multirun/parallel")
    store = tmp_path / "outputs" / "artifacts"
    for stage in ("data", "base_model", "reference", "reference_samples"):
        manifests = list((store / stage).glob("*/manifest.json"))
        assert len(manifests) == (2 if stage == "reference_samples" else 1), stage  # pairs + eval samples
    # both jobs used the same reference: one built it, the other waited on the lock and reused it
    jobs = [json.loads(p.read_text()) for p in (tmp_path / "outputs/multirun/parallel").glob("*/results.json")]
    assert len(jobs) == 2
    assert len({j["cost"]["reference"]["artifact"] for j in jobs}) == 1
    assert sorted(j["cost"]["reference"]["reused"] for j in jobs) == [False, True]


def test_submitit_local_launcher(tmp_path):
    launch(tmp_path, "-m", "hydra/launcher=submitit_local", "method=reference", *SMOKE, "logger=none",
           f"hydra.sweep.dir={tmp_path}/outputs/multirun/submitit", "hydra.launcher.timeout_min=10")
    (result,) = load_results([tmp_path / "outputs/multirun/submitit"])
    assert result["method"] == "reference"


@pytest.mark.parametrize("name", ["compare_methods", "beta", "pareto", "ablation", "reviews_paper"])
def test_sweep_files_compose(name):
    proc = subprocess.run([sys.executable, "-m", "mpo.run", "--config-dir", "sweeps", "--config-name", name,
                           "--cfg", "hydra"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "params:" in proc.stdout and "mode: MULTIRUN" in proc.stdout


@pytest.mark.parametrize("launcher,target", [("slurm", "SlurmLauncher"), ("local_parallel", "JoblibLauncher")])
def test_launcher_presets_compose(launcher, target):
    proc = subprocess.run([sys.executable, "-m", "mpo.run", f"hydra/launcher={launcher}", "--cfg", "hydra"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert target in proc.stdout
