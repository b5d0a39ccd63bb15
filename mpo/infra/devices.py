"""Which GPU a job uses when a parallel launcher runs several jobs on one machine.

joblib (``hydra/launcher=local_parallel``) starts ``n_jobs`` worker processes that would all land on cuda:0. Each
worker claims the first GPU no other worker of the same artifact store holds, by a kernel lock on
``<store>/.gpus/<index>.lock`` kept for the worker's lifetime (a worker that dies frees its GPU), and makes it
the current device, so "cuda" means that GPU for our code and TRL's trainers alike. With more jobs than GPUs the
extra workers share, round-robin by job number, and say so. Under SLURM (submitit) or torchrun each process
already sees its own GPU(s), and nothing is claimed.

`check_device` refuses, as the job starts, a device the machine lacks (``device=cuda`` without a GPU) and a
dtype the device cannot train in (float16 on CPU).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from filelock import FileLock, Timeout

from mpo.infra.errors import ConfigError

log = logging.getLogger(__name__)
FLOAT16_ON_CPU = ("policy.dtype=float16 on the CPU ({why}): float16 training on CPU turns the weights to NaN; "
                  "use policy.dtype=float32 (the default) or policy.dtype=bfloat16 on CPU, float16 only on a GPU")
_held: dict[str, tuple[int, FileLock]] = {}  # lock dir -> (GPU index, its lock), for the life of the process


def claim_gpu(lock_dir: str | Path, n_gpus: int, job_num: int = 0) -> int:
    """The index of the GPU this process uses: the one it already holds, the first free one, or (all taken)
    ``job_num % n_gpus`` shared with another worker."""
    lock_dir = Path(lock_dir)
    if str(lock_dir) in _held:
        return _held[str(lock_dir)][0]
    lock_dir.mkdir(parents=True, exist_ok=True)
    for index in range(n_gpus):
        lock = FileLock(str(lock_dir / f"{index}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        _held[str(lock_dir)] = (index, lock)
        return index
    index = job_num % n_gpus
    log.warning("more parallel jobs than the %d GPUs: job %d shares cuda:%d (set hydra.launcher.n_jobs=%d)",
                n_gpus, job_num, index, n_gpus)
    return index


def assign_gpu(store_root: str | Path, parallel_jobs: int, job_num: int | None) -> str | None:
    """In a parallel sweep on a machine with GPUs, make this worker's claimed GPU the current device and return
    its name; otherwise None (the default device stays)."""
    import torch

    if parallel_jobs <= 1 or not torch.cuda.is_available():
        return None
    index = claim_gpu(Path(store_root) / ".gpus", torch.cuda.device_count(), job_num or 0)
    torch.cuda.set_device(index)
    log.info("job %s runs on cuda:%d", job_num, index)
    return f"cuda:{index}"


def check_device(device: str, dtype: str) -> None:
    """``device`` (already a valid name: `mpo.config.schema.check_device`) is there, and ``dtype`` trains on the
    device the job will use (``auto`` resolved). Imports torch only when a GPU is asked for, or float16."""
    if not device.startswith("cuda") and dtype != "float16":
        return
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.startswith("cuda") and visible == 0:
        raise ConfigError(f"device={device}: no CUDA GPU is visible to torch ({_why_no_gpu(torch)}); use "
                          "device=auto (cuda if a GPU is visible, else cpu) or device=cpu")
    index = device.partition(":")[2]
    if index and int(index) >= visible:
        raise ConfigError(f"device={device}: only {visible} CUDA GPU(s) are visible (cuda:0 to cuda:{visible - 1}); "
                          "pick one of them, or device=cuda")
    if dtype == "float16" and visible == 0:
        raise ConfigError(FLOAT16_ON_CPU.format(why=f"device={device}, and no CUDA GPU is visible"))


def _why_no_gpu(torch) -> str:  # noqa: ANN001 - the torch module, imported by the caller
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"torch {torch.__version__} was built without CUDA"
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None and not os.environ["CUDA_VISIBLE_DEVICES"].strip(" ,"):
        return "CUDA_VISIBLE_DEVICES is empty"
    return "no GPU or driver found"
