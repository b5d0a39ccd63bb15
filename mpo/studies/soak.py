"""Soak test (not part of the test suite): a joblib sweep survives a job killed mid-stage and a corrupted artifact.

``python -m mpo.studies.soak [--out DIR] [--seed N]`` runs the same 8-job sweep (experiment=smoke: reference,
single_0, reward_soups, morlhf x seed 0, 1; hydra/launcher=local_parallel) twice, each on its own artifact store:

1. undisturbed, start to finish;
2. disturbed: a randomly chosen joblib worker is killed (SIGKILL) at a random moment once some stage has
   written a training checkpoint (mid-stage), which takes the sweep down; then a block of a randomly chosen published artifact is overwritten in place; then the same sweep is
   launched again and must finish, resuming the interrupted builds and rebuilding the damaged artifact.

It then checks that every job's results.json metrics equal the undisturbed sweep's, and that the disturbed
store holds no leftover build directory. Figures go to stdout and ``<out>/soak.json``; exit code 0 on success.
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


def corrupt_an_artifact(out: Path, rng: random.Random) -> dict:
    """Overwrite 512 bytes in the middle of a random file of a random published artifact (same size)."""
    files = sorted(p for p in out.glob("artifacts/*/*/*") if p.is_file() and p.name != "manifest.json"
                   and p.stat().st_size >= 1024)
    target = rng.choice(files)
    with open(target, "r+b") as f:
        f.seek(target.stat().st_size // 2)
        f.write(bytes(rng.randrange(256) for _ in range(512)))
    return {"file": target.relative_to(out).as_posix(), "bytes": 512}


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
    code, seconds = run_sweep(disturbed, "rerun.log")
    rerun_log = (disturbed / "rerun.log").read_text()
    figures["rerun"] = {"exit_code": code, "seconds": round(seconds, 1),
                        "resumed_builds": rerun_log.count("resuming the interrupted build"),
                        "artifacts_rebuilt_after_failed_verification": rerun_log.count("failed verification"),
                        "build_dirs_left": sorted(p.name for p in disturbed.glob("artifacts/*/.build-*"))}
    a, b = metrics(clean), metrics(disturbed)
    figures["jobs"] = {"undisturbed": len(a), "disturbed": len(b)}
    figures["equal_metrics"] = len(a) == 8 and a == b
    figures["differing_jobs"] = sorted(str(k) for k in set(a) | set(b) if a.get(k) != b.get(k))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where both sweeps write (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0, help="seeds which worker dies, when, and what is corrupted")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mpo-soak-"))
    figures = soak(out, args.seed)
    (out / "soak.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    kill, rerun = figures["kill"], figures["rerun"]
    ok = (figures["equal_metrics"] and figures["undisturbed"]["exit_code"] == 0 and rerun["exit_code"] == 0
          and kill["killed_pid"] is not None and kill["sweep_exit_code"] != 0
          and rerun["artifacts_rebuilt_after_failed_verification"] >= 1 and not rerun["build_dirs_left"])
    print(f"soak {'passed' if ok else 'FAILED'}; outputs in {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
