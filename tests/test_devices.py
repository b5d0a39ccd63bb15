"""Per-worker GPU claims of a parallel sweep (mpo.infra.devices), exercised without GPUs: the claim is a file lock."""

import subprocess
import sys
import time

import pytest
import torch

from mpo.infra.devices import assign_gpu, claim_gpu

CLAIM = "import sys, time; from mpo.infra.devices import claim_gpu; print(claim_gpu(sys.argv[1], 2, 5), flush=True); time.sleep(30)"


def test_workers_claim_distinct_gpus_then_share_round_robin(tmp_path):
    workers = [subprocess.Popen([sys.executable, "-c", CLAIM, str(tmp_path)], stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        claimed = sorted(int(w.stdout.readline()) for w in workers)
        assert claimed == [0, 1]  # two live workers, two GPUs: one each
        assert claim_gpu(tmp_path, 2, job_num=5) == 1  # a third worker shares: job 5 -> 5 % 2
    finally:
        for w in workers:
            w.kill()
            w.wait()
    time.sleep(0.1)
    # a dead worker's GPU is free again; this process keeps what it took first
    fresh = tmp_path / "fresh"
    assert claim_gpu(fresh, 2, job_num=3) == 0 and claim_gpu(fresh, 2, job_num=4) == 0


def test_no_claim_without_a_parallel_launcher(tmp_path):
    assert assign_gpu(tmp_path, parallel_jobs=1, job_num=0) is None
    assert not (tmp_path / ".gpus").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine a parallel worker does claim a GPU")
def test_no_claim_without_gpus(tmp_path):
    assert assign_gpu(tmp_path, parallel_jobs=4, job_num=2) is None
    assert not (tmp_path / ".gpus").exists()
