"""Soak test (not part of the test suite): a joblib sweep survives a job killed mid-stage and a corrupted artifact.

``python -m mpo.studies.soak [--out DIR] [--seed N]`` runs the same 8-job sweep (experiment=smoke: reference,
single_0, reward_soups, morlhf x seed 0, 1; hydra/launcher=local_parallel) twice, each on its own artifact store:

1. undisturbed, start to finish;
2. disturbed: a randomly chosen joblib worker is killed (SIGKILL) at a random moment once some stage has
   written a training checkpoint (mid-stage), which takes the sweep down; then a block of a randomly chosen
   published artifact is overwritten in place, and a block of a published model's weights is overwritten with
   its size and timestamps restored (bit rot: no `stat` field tells); then the same sweep is launched again
   and must finish, resuming the interrupted builds and rebuilding both damaged artifacts.

It then checks that every job's results.json metrics equal the undisturbed sweep's, and that the disturbed
store holds no leftover build directory.

Then a two-rank job (torchrun, gloo on CPU; experiment=smoke method=single_0) is run undisturbed, and again
on its own store with rank 1 killed (SIGKILL) once a training checkpoint exists; rerun, it must resume and
publish the same weights (sha256 of every published file) and the same metrics as the undisturbed job
(``--skip-ranks`` leaves this part out). Figures go to stdout and ``<out>/soak.json``; exit code 0 on success.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = ["experiment=smoke", "logger=none", "hydra/launcher=local_parallel", "method=reference,single_0,reward_soups,morlhf",
         "seed=0,1"]
METRICS = ("label", "seed", "reward", "reward_reference", "reward_delta", "win_rate", "min_win_rate",
           "min_win_rate_objective", "mean_response_words", "samples", "weights", "reference_correlation")
ROOT = Path(__file__).resolve().parents[2]  # the clone: this file is mpo/studies/soak.py


def sweep_command(out: Path) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "MPO_OUTPUTS": str(out), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    return [sys.executable, "-m", "mpo.run", "-m", *SWEEP, f"hydra.sweep.dir={out}/sweep"], env


def run_sweep(out: Path, log_name: str) -> tuple[int, float]:
    command, env = sweep_command(out)
    start = time.perf_counter()
    with open(out / log_name, "w") as log:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=3600).returncode
    return code, time.perf_counter() - start


def workers(pid: int) -> list[int]:
    """The loky worker processes under ``pid`` (the jobs of a joblib sweep)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat[1]) == pid and "loky" in cmdline and "resource_tracker" not in cmdline:
            found.append(int(proc.name))
    return found


def kill_a_worker(out: Path, rng: random.Random, sweep_seconds: float) -> dict:
    """Launch the sweep; after a random delay (within the undisturbed sweep's duration), wait until some stage
    has written a training checkpoint, SIGKILL a random worker, and wait for the sweep to fail."""
    command, env = sweep_command(out)
    delay = rng.uniform(0.1, 0.6) * sweep_seconds
    start = time.perf_counter()
    with open(out / "killed_sweep.log", "w") as log:
        sweep = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(delay)
        while sweep.poll() is None and not list(out.glob("artifacts/*/.build-*/_trainer/checkpoint-*")):
            time.sleep(0.02)  # mid-stage, after a checkpoint: the case resuming is for
        candidates = workers(sweep.pid)
        victim = rng.choice(candidates) if candidates else None
        building = sorted(p.relative_to(out).as_posix() for p in out.glob("artifacts/*/.build-*"))
        killed_at = time.perf_counter() - start
        if victim is not None:
            os.kill(victim, signal.SIGKILL)
        code = sweep.wait(timeout=3600)
    left = sorted(p.relative_to(out).as_posix() for p in out.glob("artifacts/*/.build-*"))
    return {"delay_s": round(delay, 1), "killed_at_s": round(killed_at, 1), "workers": len(candidates),
            "killed_pid": victim, "sweep_exit_code": code, "builds_in_progress_at_kill": building,
            "build_dirs_left": left,
            "checkpoints_left": sorted(p.relative_to(out).as_posix()
                                       for p in out.glob("artifacts/*/.build-*/_trainer/checkpoint-*")),
            "finished_jobs": len(list((out / "sweep").glob("*/results.json"))),
            "seconds": round(time.perf_counter() - start, 1)}


def corrupt_an_artifact(out: Path, rng: random.Random, weights: bool = False) -> dict:
    """Overwrite 512 bytes in the middle of a random file of a random published artifact (same size); with
    ``weights``, of a model's safetensors, its access and modification times then restored (bit rot)."""
    pattern = "artifacts/*/*/*.safetensors" if weights else "artifacts/*/*/*"
    files = sorted(p for p in out.glob(pattern) if p.is_file() and p.name != "manifest.json"
                   and p.stat().st_size >= 1024)
    target = rng.choice(files)
    before = target.stat()
    with open(target, "r+b") as f:
        f.seek(target.stat().st_size // 2)
        f.write(bytes(rng.randrange(256) for _ in range(512)))
    if weights:
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    return {"file": target.relative_to(out).as_posix(), "bytes": 512, "stat_restored": weights}


def repaired(out: Path, relative: str) -> bool:
    """Whether the damaged file's artifact was rebuilt: its file now matches the checksum its manifest records."""
    from mpo.store.files import sha256_file

    path = out / relative
    manifest = json.loads((path.parent / "manifest.json").read_text())
    return path.exists() and sha256_file(path) == manifest["files"][path.name]["sha256"]


def metrics(out: Path) -> dict[tuple[str, int], dict]:
    results = [json.loads(p.read_text()) for p in (out / "sweep").glob("*/results.json")]
    return {(r["label"], r["seed"]): {k: r.get(k) for k in METRICS} for r in results}


def soak(out: Path, seed: int) -> dict:
    rng = random.Random(seed)
    clean, disturbed = out / "undisturbed", out / "disturbed"
    for d in (clean, disturbed):
        d.mkdir(parents=True, exist_ok=True)
    figures: dict = {"seed": seed, "sweep": SWEEP}
    code, seconds = run_sweep(clean, "sweep.log")
    figures["undisturbed"] = {"exit_code": code, "seconds": round(seconds, 1)}
    figures["kill"] = kill_a_worker(disturbed, rng, seconds)
    figures["corruption"] = corrupt_an_artifact(disturbed, rng)
    figures["bit_rot"] = corrupt_an_artifact(disturbed, rng, weights=True)
    code, seconds = run_sweep(disturbed, "rerun.log")
    rerun_log = (disturbed / "rerun.log").read_text()
    figures["rerun"] = {"exit_code": code, "seconds": round(seconds, 1),
                        "resumed_builds": rerun_log.count("resuming the interrupted build"),
                        "artifacts_rebuilt_after_failed_verification": rerun_log.count("failed verification"),
                        "build_dirs_left": sorted(p.name for p in disturbed.glob("artifacts/*/.build-*"))}
    figures["damaged_repaired"] = all(repaired(disturbed, figures[c]["file"]) for c in ("corruption", "bit_rot"))
    a, b = metrics(clean), metrics(disturbed)
    figures["jobs"] = {"undisturbed": len(a), "disturbed": len(b)}
    figures["equal_metrics"] = len(a) == 8 and a == b
    figures["differing_jobs"] = sorted(str(k) for k in set(a) | set(b) if a.get(k) != b.get(k))
    return figures


RANKS_RUN = ["experiment=smoke", "method=single_0", "logger=none"]


def ranks_command(out: Path) -> tuple[list[str], dict[str, str]]:
    env = {**sweep_command(out)[1], "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "mpo.run",
            *RANKS_RUN, f"paths.root={out}"], env


def run_ranks(out: Path, log_name: str, kill_rank: int | None = None, rng: random.Random | None = None) -> dict:
    """The two-rank job; with ``kill_rank``, that rank is SIGKILLed a random moment after the first checkpoint."""
    command, env = ranks_command(out)
    start, killed = time.perf_counter(), None
    with open(out / log_name, "w") as log:
        job = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if kill_rank is not None:
            while job.poll() is None and not list(out.glob("artifacts/*/.build-*/_trainer/checkpoint-*")):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.0))
            killed = rank_process(job.pid, kill_rank)
            if killed is not None:
                os.kill(killed, signal.SIGKILL)
        code = job.wait(timeout=3600)
    text = (out / log_name).read_text()
    said = [line for line in text.splitlines() if "lost the other ranks while" in line]
    return {"exit_code": code, "killed_pid": killed, "seconds": round(time.perf_counter() - start, 1),
            "resumed_builds": text.count("resuming the interrupted build"),
            "rank0_line": said[0] if said else None, "rank0_traceback": "[rank0]: Traceback" in text}


def rank_process(parent: int, wanted: int) -> int | None:
    """The pid of the torchrun worker under ``parent`` whose RANK is ``wanted``."""
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and f"RANK={wanted}".encode() in environ:
            return int(proc.name)
    return None


def published_files(out: Path) -> dict[str, str]:
    """``{stage/digest/file: sha256}`` of every file every published artifact's manifest records."""
    found = {}
    for manifest in out.glob("artifacts/*/*/manifest.json"):
        key = manifest.parent.relative_to(out / "artifacts").as_posix()
        for name, record in json.loads(manifest.read_text())["files"].items():
            found[f"{key}/{name}"] = record["sha256"]
    return found


def run_metrics(out: Path) -> dict:
    (results,) = [json.loads(p.read_text()) for p in (out / "runs").rglob("results.json")]
    return {k: results.get(k) for k in METRICS}


def soak_ranks(out: Path, rng: random.Random) -> dict:
    clean, disturbed = out / "ranks_undisturbed", out / "ranks_disturbed"
    for d in (clean, disturbed):
        d.mkdir(parents=True, exist_ok=True)
    figures = {"run": RANKS_RUN, "undisturbed": run_ranks(clean, "job.log"),
               "kill": run_ranks(disturbed, "killed_job.log", kill_rank=1, rng=rng)}
    figures["rerun"] = run_ranks(disturbed, "rerun.log")
    a, b = published_files(clean), published_files(disturbed)
    figures["differing_files"] = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    figures["equal_metrics"] = run_metrics(clean) == run_metrics(disturbed)
    figures["ok"] = (figures["undisturbed"]["exit_code"] == 0 and figures["kill"]["killed_pid"] is not None
                     and figures["kill"]["exit_code"] != 0 and figures["rerun"]["exit_code"] == 0
                     and figures["kill"]["rank0_line"] is not None and not figures["kill"]["rank0_traceback"]
                     and figures["rerun"]["resumed_builds"] >= 1 and not figures["differing_files"]
                     and figures["equal_metrics"])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where both sweeps write (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0, help="seeds which worker dies, when, and what is corrupted")
    parser.add_argument("--skip-sweep", action="store_true", help="only the two-rank kill")
    parser.add_argument("--skip-ranks", action="store_true", help="only the sweep (no torchrun)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mpo-soak-"))
    figures = {} if args.skip_sweep else soak(out, args.seed)
    if not args.skip_ranks:
        figures["ranks"] = soak_ranks(out, random.Random(args.seed))
    (out / "soak.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    ok = (args.skip_sweep or sweep_ok(figures)) and (args.skip_ranks or figures["ranks"]["ok"])
    print(f"soak {'passed' if ok else 'FAILED'}; outputs in {out}")
    return 0 if ok else 1


def sweep_ok(figures: dict) -> bool:
    kill, rerun = figures["kill"], figures["rerun"]
    return (figures["equal_metrics"] and figures["undisturbed"]["exit_code"] == 0 and rerun["exit_code"] == 0
            and kill["killed_pid"] is not None and kill["sweep_exit_code"] != 0
            and rerun["artifacts_rebuilt_after_failed_verification"] >= 1 and figures["damaged_repaired"] and not rerun["build_dirs_left"])


if __name__ == "__main__":
    sys.exit(main())
