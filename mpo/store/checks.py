"""What a finished build must hold before the store publishes it under its key: at least one file, datasets
with at least one row, weights that are all finite. A published artifact is reused by every later run with
that key, so a NaN reference (float16 arithmetic on a CPU) or an empty pairs set (every pair tied) would
poison them all with a wrong number and exit code 0; refused here, the run stops and nothing is stored.

Reads the files with pyarrow and safetensors (memory-mapped); imports nothing from mpo.
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS = "*.safetensors"


def unpublishable(work: Path) -> str | None:
    """Why the build in ``work`` must not be published (what is wrong; the fix), or None."""
    if not any(p.is_file() for p in work.rglob("*")):
        return "no files: its builder wrote nothing, which is a bug in that stage (report it)"
    datasets = dataset_dirs(work)
    if datasets and sum(dataset_rows(d) for d in datasets) == 0:
        return ("an empty dataset (0 rows): no example survived its filters (for preference pairs: every pair "
                "tied, so the scorer gave both responses of every pair the same score); check the objective's "
                "scorer and the task's sizes")
    for file in sorted(work.rglob(WEIGHTS)):
        bad, total = non_finite(file)
        if bad:
            return (f"{bad} non-finite weights of {total} in {file.relative_to(work)}: the training diverged or "
                    "its dtype overflowed (float16 arithmetic on a CPU does: use policy.dtype=float32 or bfloat16 "
                    "there); lower the learning rate or change the dtype")
    return None


def dataset_dirs(root: Path) -> list[Path]:
    """Directories holding one saved `datasets.Dataset` (its ``state.json`` lists its arrow files)."""
    return sorted(p.parent for p in root.rglob("state.json") if (p.parent / "dataset_info.json").exists())


def dataset_rows(directory: Path) -> int:
    import pyarrow as pa

    state = json.loads((directory / "state.json").read_text())
    rows = 0
    for entry in state.get("_data_files", []):
        with pa.memory_map(str(directory / entry["filename"])) as source:
            rows += sum(batch.num_rows for batch in pa.ipc.open_stream(source))
    return rows


def non_finite(file: Path) -> tuple[int, int]:
    """(non-finite floating-point values, all values) in one safetensors file."""
    import torch
    from safetensors import safe_open

    bad = total = 0
    with safe_open(str(file), framework="pt") as weights:
        for name in weights.keys():
            tensor = weights.get_tensor(name)
            total += tensor.numel()
            if tensor.is_floating_point():
                bad += int((~torch.isfinite(tensor)).sum())
    return bad, total
