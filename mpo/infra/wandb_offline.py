"""Read a W&B run directory without network: for tests, and for users who ran offline and want numbers.

wandb 0.31 writes an offline run as one binary ``run-<id>.wandb`` (plus ``files/``); it has no
``wandb-summary.json`` or ``config.yaml`` and no Python reader (``wandb.sdk.internal.datastore`` is gone;
the reader lives in the Go core). The file is a LevelDB-style log: a 7-byte file header
(``:W&B``, magic 0xBEE1 little-endian, version 0), then 32 KiB blocks of chunks, each with a 7-byte header
(CRC-32 of type byte + payload, 2-byte little-endian length, 1-byte type: full / first / middle / last);
a block's tail shorter than a header is padding. Each assembled payload is a ``wandb_internal_pb2.Record``.

Why a parser of our own, checked against wandb 0.31.0 (the version the tests run with): wandb ships no Python
API that reads these records. wandb 0.31's CLI can print them, ``wandb leet inspect --json PATH`` (one JSON
object per record, values decoded; ``--summary --json`` for the final state), but that is a terminal tool of
the Go core run as a subprocess (~1 s per run here), and its JSON layout is not documented as a stable format.
Older releases that ``pyproject.toml``'s ``wandb>=0.18`` admits have the opposite: wandb 0.18.0 has the Python
reader ``wandb.sdk.internal.datastore`` and no ``leet``. Neither spans the versions we support, so this module
reads the file format itself, with the record schema the installed wandb ships (``wandb.proto``); a change of
format fails loudly here (bad header, checksum) and in tests/test_tracking.py.
"""

from __future__ import annotations

import json
import re
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FILE_IDENT = b":W&B"
FILE_MAGIC = 0xBEE1
FILE_HEADER_LEN = 7
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TABLE_FILE = re.compile(r"^(?P<name>.+)_(?P<step>\d+)_(?P<digest>[0-9a-f]+)\.table\.json$")


def _payloads(data: bytes) -> Iterator[bytes]:
    """Assembled record payloads; a torn record at the end (a job still running or killed) ends the
    stream quietly, a bad checksum raises."""
    if data[:4] != FILE_IDENT or int.from_bytes(data[4:6], "little") != FILE_MAGIC:
        raise ValueError("not a W&B transaction log (bad file header)")
    pos, pending = FILE_HEADER_LEN, None
    while pos + CHUNK_HEADER.size <= len(data):
        if BLOCK_SIZE - pos % BLOCK_SIZE < CHUNK_HEADER.size:
            pos += BLOCK_SIZE - pos % BLOCK_SIZE  # block padding
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        start, pos = pos + CHUNK_HEADER.size, pos + CHUNK_HEADER.size + length
        if kind == 0 or pos > len(data):
            return  # zero-filled or truncated tail
        chunk = data[start:pos]
        if zlib.crc32(bytes([kind]) + chunk) != crc:
            raise ValueError(f"W&B log checksum mismatch at byte {start - CHUNK_HEADER.size}")
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind in (MIDDLE, LAST) and pending is not None:
            pending += chunk
            if kind == LAST:
                yield pending
                pending = None
        else:
            raise ValueError(f"W&B log: unexpected chunk type {kind} at byte {start - CHUNK_HEADER.size}")


def iter_records(path: str | Path) -> Iterator[Any]:
    """Every ``wandb_internal_pb2.Record`` in a ``run-<id>.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    for payload in _payloads(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        yield record


def _path(item: Any) -> list[str]:
    return list(item.nested_key) or [item.key]


def _set(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        node = target.get(key)
        target = target.setdefault(key, {}) if isinstance(node, dict) or node is None else {}
    target[path[-1]] = value


def _remove(target: dict[str, Any], path: list[str]) -> None:
    for key in path[:-1]:
        target = target.get(key)
        if not isinstance(target, dict):
            return
    target.pop(path[-1], None)


def _apply(target: dict[str, Any], updates: Any, removes: Any = ()) -> None:
    for item in updates:
        _set(target, _path(item), json.loads(item.value_json))
    for item in removes:
        _remove(target, _path(item))


def _run_file(run_dir: Path) -> Path:
    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-<id>.wandb in {run_dir}")
    return files[0]


def read_tables(run_dir: str | Path) -> dict[str, Any]:
    """Logged ``wandb.Table``s by key (``eval/per_objective``): the parsed JSON of the latest version
    (``{"columns": [...], "data": [[...], ...]}``)."""
    root = Path(run_dir) / "files" / "media" / "table"
    latest: dict[str, tuple[int, Path]] = {}
    for path in sorted(root.rglob("*.table.json")):
        match = _TABLE_FILE.match(path.name)
        if match is None:
            continue
        name = (path.parent.relative_to(root) / match["name"]).as_posix()
        step = int(match["step"])
        if name not in latest or step >= latest[name][0]:
            latest[name] = (step, path)
    return {name: json.loads(path.read_text()) for name, (_, path) in sorted(latest.items())}


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's contents: ``config`` (user config, W&B's ``_wandb`` entry dropped),
    ``summary``, ``history`` (one dict per logged step), ``group``, ``job_type``, ``name``,
    ``project``, ``entity``, ``id``, ``tags``, ``exit_code`` (None if the run never finished), ``tables``
    and ``artifacts`` (each logged artifact's ``name``, ``type``, ``metadata`` and ``files``: its path in the
    artifact -> the staged local copy wandb uploads on sync; wandb.Table's own artifacts included)."""
    run_dir = Path(run_dir)
    out: dict[str, Any] = {"config": {}, "summary": {}, "history": [], "exit_code": None, "artifacts": []}
    for record in iter_records(_run_file(run_dir)):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(id=run.run_id, project=run.project, entity=run.entity or None,
                       group=run.run_group or None, job_type=run.job_type or None,
                       name=run.display_name or None, tags=list(run.tags))
            _apply(out["config"], run.config.update, run.config.remove)
            _apply(out["summary"], run.summary.update, run.summary.remove)
        elif kind == "config":
            _apply(out["config"], record.config.update, record.config.remove)
        elif kind == "summary":
            _apply(out["summary"], record.summary.update, record.summary.remove)
        elif kind == "history":
            row: dict[str, Any] = {}
            _apply(row, record.history.item)
            out["history"].append(row)
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
        elif kind == "artifact":
            artifact = record.artifact
            out["artifacts"].append({"name": artifact.name, "type": artifact.type,
                                     "metadata": json.loads(artifact.metadata) if artifact.metadata else {},
                                     "files": {c.path: c.local_path for c in artifact.manifest.contents}})
    out["config"].pop("_wandb", None)
    out["tables"] = read_tables(run_dir)
    return out


def wait_until_complete(run_dir: str | Path, timeout: float = 10.0) -> bool:
    """Wait (at most ``timeout`` s) until the run's log holds its exit record, the last one written.

    ``wandb.finish()`` returns once W&B's core process has the exit record, but the core flushes the
    file a moment later (usually ~10 ms; seconds on a busy machine), so a reader right after finish
    could see a partial log."""
    deadline, pause = time.monotonic() + timeout, 0.005
    while True:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in iter_records(_run_file(Path(run_dir)))):
                return True
        except (OSError, ValueError):
            pass  # not created or not flushed yet
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, 0.2)


def find_offline_runs(root: str | Path) -> list[Path]:
    """Every offline run directory (``offline-run-*`` holding a ``run-*.wandb``) at or under ``root``,
    oldest first (their names start with a timestamp); ``latest-run`` links are skipped."""
    root = Path(root)
    candidates = [root] if root.name.startswith("offline-run-") else []
    candidates += root.rglob("offline-run-*")
    runs = {p for p in candidates if p.is_dir() and not p.is_symlink() and any(p.glob("run-*.wandb"))}
    return sorted(runs, key=lambda p: (p.name, str(p)))
