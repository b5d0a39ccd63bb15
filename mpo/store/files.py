"""File-level facts behind the artifact store: checksums recorded when an artifact is published and checked when
it is reused, and content fingerprints of the local inputs (a data file, a model directory) a stage reads.

Checks take a fast path: a file whose size, modification time, status-change time and inode are all those
recorded is taken as unchanged; any other file is hashed again (sha256) and compared. A write changes the
mtime, a reset of the mtime (an editor that keeps it, ``touch -d``, a restore) changes the ctime, a replaced
file has a new inode: each is hashed. What no `stat` shows, a block rotting on disk, is caught for the files
that matter most by hashing them whenever they are first used in a process: model weights
(`ALWAYS_HASHED`), read in full by the load that follows anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
# weights are hashed on every first use (a process loads them in full anyway); other files take the fast path
ALWAYS_HASHED = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(root: Path, skip: tuple[str, ...] = ()) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.relative_to(root).as_posix() not in skip:
            yield path


def stat_record(stat: os.stat_result) -> dict[str, int]:
    """What the fast path compares: a file with all four unchanged has not been written, reset or replaced."""
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns, "inode": stat.st_ino}


def unchanged(stat: os.stat_result, record: Mapping[str, Any]) -> bool:
    """True when every fast-path field is recorded and equal (a record from an older mpo lacks some: hash)."""
    return all(record.get(name) == value for name, value in stat_record(stat).items())


def file_records(root: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``{relative path: {size, mtime_ns, ctime_ns, inode, sha256}}`` for every file under ``root`` (minus
    ``skip``)."""
    return {path.relative_to(root).as_posix(): {**stat_record(path.stat()), "sha256": sha256_file(path)}
            for path in _files(root, skip)}


def first_mismatch(root: Path, records: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why the files under ``root`` are not those recorded (the first difference found), or None."""
    for name, record in records.items():
        path = root / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            return f"{name} is missing"
        if stat.st_size != record["size"]:
            return f"{name} has {stat.st_size} bytes, {record['size']} were recorded"
        if unchanged(stat, record) and not name.endswith(ALWAYS_HASHED):
            continue  # fast path
        if sha256_file(path) != record["sha256"]:
            return f"{name} was modified (its checksum differs from the one recorded)"
    return None


class Fingerprints:
    """Content fingerprints of local paths, remembered by (size, mtime, ctime, inode) in ``cache_file`` so that
    a model directory of gigabytes is hashed once, not on every run."""

    def __init__(self, cache_file: Path):
        self.cache_file = cache_file
        self._cache: dict[str, Any] | None = None

    def of(self, path: Path) -> str:
        """sha256 over the relative names and contents of a file or of every file in a directory."""
        path = path.resolve()
        digest = hashlib.sha256()
        members = [path] if path.is_file() else list(_files(path))
        for member in members:
            name = member.name if member == path else member.relative_to(path).as_posix()
            digest.update(f"{name}\0{self._file_hash(member)}\0".encode())
        self._save()
        return digest.hexdigest()[:16]

    def _file_hash(self, path: Path) -> str:
        cache = self._load()
        stat = path.stat()
        key, known = str(path), cache.get(str(path))
        if known and unchanged(stat, known):
            return known["sha256"]
        cache[key] = {**stat_record(stat), "sha256": sha256_file(path)}
        self._dirty = True
        return cache[key]["sha256"]

    def _load(self) -> dict[str, Any]:
        if self._cache is None:
            self._dirty = False
            try:
                self._cache = json.loads(self.cache_file.read_text())
            except (OSError, ValueError):
                self._cache = {}
        return self._cache

    def _save(self) -> None:
        if not getattr(self, "_dirty", False):
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_name(f"{self.cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._cache))
        os.replace(tmp, self.cache_file)  # concurrent writers may drop each other's entries: only a re-hash
        self._dirty = False


def local_paths(spec: Any, exclude: Path) -> list[Path]:
    """Strings in a spec that name an existing local file or directory (outside the store ``exclude``, whose
    artifacts are keyed by their digests already)."""
    found: list[Path] = []

    def visit(value: Any) -> None:
        if isinstance(value, Mapping):
            for v in value.values():
                visit(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
        elif isinstance(value, str) and value not in ("", ".", "..") and len(value) < 1024 and "\n" not in value:
            path = Path(value).expanduser()
            try:
                if path.exists() and not path.resolve().is_relative_to(exclude):
                    found.append(path)
            except (OSError, ValueError):
                pass

    visit(spec)
    return sorted(set(found))
