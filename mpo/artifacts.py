"""Content-addressed store for expensive stage outputs (docs/design.md §3).

An artifact is a directory ``<root>/<stage>/<digest>/`` where the digest covers exactly the config that
determines the stage, the keys of the artifacts it was built from, and the library versions. Builds go to a
temporary sibling directory and are renamed into place, under a per-key file lock, so parallel jobs of one
sweep build each artifact once and a killed job never leaves a half-written artifact behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import shutil
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_VERSIONED = ("torch", "transformers", "trl", "datasets", "tokenizers", "peft", "mpo")


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _canonical(obj: Any) -> Any:
    """JSON-able form of a config, with keys sorted, so equal configs give equal digests."""
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"artifact spec holds a {type(obj).__name__} ({obj!r}); use plain JSON values")


def digest(stage: str, spec: Mapping[str, Any], deps: Sequence["Artifact"] = ()) -> str:
    payload = {
        "stage": stage,
        "spec": _canonical(spec),
        "deps": sorted(d.key for d in deps),
        "versions": library_versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Artifact:
    """A finished stage output: its directory and its manifest."""

    stage: str
    digest: str
    path: Path
    manifest: dict[str, Any] = field(compare=False, repr=False)
    reused: bool = field(default=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.stage}/{self.digest}"

    @property
    def cost(self) -> dict[str, float]:
        """Wall/CPU seconds and peak memory of the build (paid once, whether or not this run reused it)."""
        return dict(self.manifest.get("cost", {}))

    @property
    def info(self) -> dict[str, Any]:
        """What the builder returned (metrics such as held-out loss or accuracy)."""
        return dict(self.manifest.get("info", {}))


class ArtifactStore:
    def __init__(self, root: str | os.PathLike, lock_timeout: float = 6 * 3600):
        self.root = Path(root).expanduser().resolve()
        self.lock_timeout = lock_timeout
        self._announced: set[Path] = set()  # say "reusing" once per artifact and process

    def path_for(self, stage: str, spec: Mapping[str, Any], deps: Sequence[Artifact] = ()) -> Path:
        return self.root / stage / digest(stage, spec, deps)

    def lookup(self, stage: str, spec: Mapping[str, Any], deps: Sequence[Artifact] = ()) -> Artifact | None:
        path = self.path_for(stage, spec, deps)
        return _load(stage, path, reused=True) if (path / MANIFEST).is_file() else None

    def get_or_build(
        self,
        stage: str,
        spec: Mapping[str, Any],
        build: Callable[[Path], Mapping[str, Any] | None],
        deps: Sequence[Artifact] = (),
    ) -> Artifact:
        """Return the artifact for ``(stage, spec, deps)``, building it with ``build(tmp_dir)`` if absent.

        ``build`` writes its files into the directory it is given and may return a dict of metrics,
        stored in the manifest as ``info``. Another process building the same key is waited for.
        """
        path = self.path_for(stage, spec, deps)
        path.parent.mkdir(parents=True, exist_ok=True)
        found = self._finished(stage, path)
        if found is not None:
            return found
        with FileLock(str(path) + ".lock", timeout=self.lock_timeout):
            found = self._finished(stage, path)  # built by another process while we waited
            if found is not None:
                return found
            return self._build(stage, spec, build, deps, path)

    def _finished(self, stage: str, path: Path) -> Artifact | None:
        if (path / MANIFEST).is_file():
            if path not in self._announced:
                log.info("reusing %s artifact %s (built %s)", stage, path.name, _built_at(path))
                self._announced.add(path)
            return _load(stage, path, reused=True)
        return None

    def _build(self, stage, spec, build, deps, path: Path) -> Artifact:
        if path.exists():  # a directory without manifest: a crash between rename and manifest cannot
            shutil.rmtree(path)  # happen, so this is foreign debris; clear it rather than trust it
        tmp = path.parent / f".tmp-{path.name}-{os.getpid()}-{time.time_ns()}"
        tmp.mkdir(parents=True)
        log.info("building %s artifact %s", stage, path.name)
        wall0, cpu0 = time.perf_counter(), _cpu_seconds()
        try:
            info = dict(build(tmp) or {})
            cost = {
                "wall_seconds": time.perf_counter() - wall0,
                "cpu_seconds": _cpu_seconds() - cpu0,
                "peak_memory_mb": _peak_memory_mb(),
            }
            manifest = {
                "stage": stage,
                "digest": path.name,
                "spec": _canonical(spec),
                "deps": [d.key for d in deps],
                "versions": library_versions(),
                "cost": cost,
                "info": _canonical(info),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
            write_json(tmp / MANIFEST, manifest)
            os.replace(tmp, path)  # atomic on one filesystem: readers see all or nothing
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("built %s artifact %s in %.1f s", stage, path.name, cost["wall_seconds"])
        self._announced.add(path)
        return _load(stage, path, reused=False)


def _load(stage: str, path: Path, reused: bool) -> Artifact:
    manifest = json.loads((path / MANIFEST).read_text())
    return Artifact(stage=stage, digest=path.name, path=path, manifest=manifest, reused=reused)


def _built_at(path: Path) -> str:
    try:
        return json.loads((path / MANIFEST).read_text()).get("built_at", "?")
    except (OSError, json.JSONDecodeError):
        return "?"


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _cpu_seconds() -> float:
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


def _peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
