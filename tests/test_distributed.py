"""One job over two real processes (torchrun, gloo on CPU): every rank trains, rank 0 alone builds the rest and
writes; the result is the one-process result up to data order; a dead rank stops the other with one line."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mpo.infra.wandb_offline import find_offline_runs, read_offline_run

REPO = Path(__file__).resolve().parents[1]
METHODS = ("mpo", "morlhf")  # MPO (DPO singles, the mixture) and an RL baseline (reward models, RLOO)
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is exercised on Linux")


def _env(**extra) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", **extra}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None) if var not in extra else None
    return env


def _run(root: Path, method: str, processes: int) -> subprocess.CompletedProcess:
    overrides = ["experiment=smoke", f"method={method}", f"paths.root={root}", f"paths.artifacts={root}/store",
                 "logger.mode=offline"]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [sys.executable])
    return subprocess.run([*launcher, "-m", "mpo.run", *overrides], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each method once with one process and once with two (each set with its own artifact store)."""
    out = {}
    for processes in (1, 2):
        root = tmp_path_factory.mktemp(f"procs{processes}")
        for method in METHODS:
            proc = _run(root, method, processes)
            assert proc.returncode == 0, proc.stderr[-3000:]
            out[processes, method] = proc
        out[processes] = root
    return out


def _results(root: Path) -> dict[str, dict]:
    found = {}
    for path in (root / "runs").rglob("results.json"):
        results = json.loads(path.read_text())
        found[results["method"]] = results
    return found


def test_two_ranks_write_one_run_and_build_each_artifact_once(runs):
    root = runs[2]
    run_dirs = [p for p in (root / "runs").glob("*/*") if p.is_dir()]
    assert len(run_dirs) == len(METHODS)  # rank 1's Hydra dir is a scratch dir outside paths.root
    for run_dir in run_dirs:
        assert (run_dir / "results.json").exists()
        (wandb_dir,) = find_offline_runs(run_dir)  # one W&B run per job, rank 0's
        results = json.loads((run_dir / "results.json").read_text())
        assert read_offline_run(wandb_dir)["summary"]["eval/min_win_rate"] == pytest.approx(results["min_win_rate"])
    built = Counter()  # rank 0's job log records each build (the other ranks log warnings only, elsewhere)
    for log in (root / "runs").glob("*/*/run.log"):
        built.update(re.findall(r"building (\w+) artifact (\w{16})", log.read_text()))
    assert built and max(built.values()) == 1, built  # a sweep of two methods over one store: each key once
    for method in METHODS:  # the console says what was built, once, from rank 0
        lines = [line for line in runs[2, method].stdout.splitlines() if line.startswith("  built ")]
        assert len(lines) == len(set(lines)) > 0
    store = root / "store"
    assert not list(store.rglob(".rank*")) and not list(store.rglob(".build-*"))  # scratch and builds cleaned up


def test_two_ranks_train_the_same_budget_and_agree_with_one_process(runs):
    one, two = _results(runs[1]), _results(runs[2])
    for method in METHODS:
        a, b = one[method], two[method]
        for part in ("singles", "own"):  # the global batch is the budget's, whatever the number of processes
            assert a["cost"]["split"][part]["trained_sequences"] == b["cost"]["split"][part]["trained_sequences"]
        assert a["cost"]["split"]["own"]["trained_sequences"] + a["cost"]["split"]["singles"]["trained_sequences"] > 0
        # data order differs (each rank sees half of every batch), so agreement is within sampling noise
        assert abs(a["min_win_rate"] - b["min_win_rate"]) < 0.12, (method, a["min_win_rate"], b["min_win_rate"])
    for objective, weight in one["mpo"]["weights"].items():
        assert abs(weight - two["mpo"]["weights"][objective]) < 0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_rank_stops_the_other_with_one_line(tmp_path):
    """Rank 1 joins the job and dies; rank 0 must not wait for it: one line naming what it waited for."""
    port = _free_port()
    ranks = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    overrides = ["experiment=smoke", "method=reference", f"paths.root={tmp_path}", "logger=none",
                 "distributed_timeout=60"]
    start = time.monotonic()
    rank0 = subprocess.Popen([sys.executable, "-m", "mpo.run", *overrides], cwd=REPO, text=True,
                             env=_env(**ranks, RANK="0", LOCAL_RANK="0"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    dies = "import os, mpo.infra.distributed as d; d.init(60); os._exit(9)"  # a rank killed after it joined
    subprocess.run([sys.executable, "-c", dies], cwd=REPO, env=_env(**ranks, RANK="1", LOCAL_RANK="1"), timeout=120)
    _, stderr = rank0.communicate(timeout=300)
    assert time.monotonic() - start < 200
    assert rank0.returncode == 2, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "lost the other ranks" in errors[0] and "rank 0 of 2" in errors[0], stderr[-2000:]
    assert "Traceback" not in stderr


def test_sharded_sampling_equals_one_process(tmp_path):
    """Each rank samples every other chunk (each chunk seeded by its position): the gathered samples are exactly
    one process's."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(REPO / "tests" / "ranks_sample.py"), str(tmp_path)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "ranks.json").read_text()) == {"same_samples": True, "same_order": True,
                                                                 "responses": 21}


@pytest.mark.parametrize("name", ["ddp", "zero3", "fsdp"])
def test_shipped_accelerate_configs_load(name):
    """accelerate/<name>.yaml is a config `accelerate launch --config_file` accepts (ZeRO-3 and FSDP are only
    loaded here: they need GPUs)."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.value == {"ddp": "MULTI_GPU", "zero3": "DEEPSPEED", "fsdp": "FSDP"}[name]
    assert config.mixed_precision == "bf16" and config.num_processes == 8


def test_a_rank_lost_mid_training_stops_rank_0_with_one_line(tmp_path):
    """A rank SIGKILLed while TRL trains (gloo reports it inside the trainer's all-reduce, not in our own
    collectives): rank 0's one line names the build, no traceback of rank 0's."""
    from types import SimpleNamespace

    from mpo.studies.soak import run_ranks

    at_once = SimpleNamespace(uniform=lambda low, high: low)  # killed right after the first checkpoint
    killed = run_ranks(tmp_path, "killed.log", kill_rank=1, rng=at_once)
    log = (tmp_path / "killed.log").read_text()
    assert killed["killed_pid"] is not None and killed["exit_code"] != 0, log[-3000:]
    assert killed["rank0_line"].startswith("error: rank 0 of 2 lost the other ranks while training "), log[-3000:]
    assert not killed["rank0_traceback"], log[-3000:]


def test_only_transport_errors_become_the_lost_rank_line(monkeypatch):
    from mpo.infra.distributed import RankError, lost_ranks_said

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    gloo = RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:5013: "
                        "Connection reset by peer. This is typically caused by a remote worker hanging")
    with pytest.raises(RankError, match=r"^rank 0 of 2 lost the other ranks while training x \(Read error "):
        with lost_ranks_said("training x"):
            raise gloo
    for bug in (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), ValueError("Connection reset by peer")):
        with pytest.raises(type(bug), match=str(bug)):  # a bug keeps its own exception and traceback
            with lost_ranks_said("training x"):
                raise bug
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(RuntimeError, match="Read error"):  # one process: nobody to lose
        with lost_ranks_said("training x"):
            raise gloo
