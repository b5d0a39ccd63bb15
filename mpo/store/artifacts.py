"""Content-addressed store for expensive stage outputs (docs/design.md §3).

An artifact is a directory ``<root>/<stage>/<digest>/`` where the digest covers exactly the config that
determines the stage, the keys of the artifacts it was built from, the library versions, and the contents of
the local files it reads. Builds go to the key's build directory and are renamed into place, under a
per-key file lock (whose holder a waiting job names), so parallel jobs of one sweep build each artifact
once and a killed job never leaves a half-written artifact behind: its build directory keeps only the
training checkpoints, from which the next build of the key resumes. The manifest records a checksum of
every file; reuse verifies them (size and mtime, else the hash) and a damaged artifact is rebuilt.
Nothing writes into a published artifact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from mpo.infra.console import say
from mpo.infra.costs import Meter
from mpo.infra.distributed import barrier, broadcast, is_main, rank, world_size
from mpo.infra.errors import ArtifactError, describe_os_error
from mpo.infra.masking import mask
from mpo.store.checks import unpublishable
from mpo.store.code import code_identity
from mpo.store.files import Fingerprints, file_records, first_mismatch, local_paths
from mpo.store.lock import KeyLock

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# where a stage's trainer writes its checkpoints inside the build dir (mpo.training.common.trl_kwargs)
CHECKPOINTS = "_trainer"
# seconds after which a build directory whose builder is gone is removed by the next build in its stage
STALE_AFTER = 24 * 3600
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


def digest(stage: str, spec: Mapping[str, Any], deps: Sequence["Artifact"] = (),
           inputs: Mapping[str, str] | None = None) -> str:
    """The key of a stage output: its spec, its dependencies' keys, the library versions, the source of every
    ``_target_`` it names (`mpo.store.code`: a scorer's code edited is a new key) and the content fingerprints
    of the local inputs it reads (so a data file or model directory rewritten in place is a new key, not a
    stale reuse)."""
    payload = {
        "stage": stage,
        "spec": _canonical(spec),
        "deps": sorted(d.key for d in deps),
        "versions": library_versions(),
    }
    if inputs:
        payload["inputs"] = dict(sorted(inputs.items()))
    code = code_identity(spec)
    if code:  # a spec that names no callable keeps the key it had before code was keyed
        payload["code"] = code
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
        self.fingerprints = Fingerprints(self.root / ".fingerprints.json")
        self._announced: set[Path] = set()  # say "reusing" once per artifact and process
        self._verified: set[Path] = set()  # artifacts whose files this process has checked
        self._alone = False  # rank 0 is running a build the other ranks do not take part in

    def inputs(self, spec: Mapping[str, Any]) -> dict[str, str]:
        """Content fingerprints of the local files and directories the spec names (a data file, a model dir)."""
        return {str(p): self.fingerprints.of(p) for p in local_paths(spec, exclude=self.root)}

    def path_for(self, stage: str, spec: Mapping[str, Any], deps: Sequence[Artifact] = ()) -> Path:
        return self.root / stage / digest(stage, spec, deps, self.inputs(spec))

    def lookup(self, stage: str, spec: Mapping[str, Any], deps: Sequence[Artifact] = ()) -> Artifact | None:
        """The finished, verified artifact, or None; a damaged one is an `ArtifactError` saying how to fix it."""
        path = self.path_for(stage, spec, deps)
        found = self._check(stage, path)
        if isinstance(found, str):
            raise ArtifactError(f"{stage} artifact {path} is damaged ({found}): delete it (rm -rf {path}) and "
                                "rerun to rebuild it")
        return found

    def get_or_build(
        self,
        stage: str,
        spec: Mapping[str, Any],
        build: Callable[[Path], Mapping[str, Any] | None],
        deps: Sequence[Artifact] = (),
        collective: bool = False,
    ) -> Artifact:
        """Return the artifact for ``(stage, spec, deps)``, building it with ``build(work_dir)`` if absent.

        ``build`` writes its files into the directory it is given and may return a dict of metrics, stored in
        the manifest as ``info``. Another process building the same key is waited for. A damaged artifact is
        rebuilt. A build killed earlier leaves its training checkpoints (``work_dir/_trainer``), from which
        the next build of the key resumes. In a multi-process job (mpo.infra.distributed) rank 0 decides and
        publishes; a ``collective`` build (a TRL training stage) runs on every rank, the others in a scratch
        directory that is discarded; any other build runs on rank 0 while the others wait at a barrier.
        """
        if world_size() > 1:
            return self._get_or_build_ranks(stage, spec, build, deps, collective)
        path, inputs = self._locate(stage, spec, deps)
        found, lock = self._claim(stage, path)
        if found is not None:
            return self._reuse(found)
        try:
            return self._build(stage, spec, build, deps, path, inputs)
        finally:
            lock.release()

    def _locate(self, stage: str, spec: Mapping[str, Any], deps: Sequence[Artifact]) -> tuple[Path, dict[str, str]]:
        """The key's directory (its parent created) and the fingerprints of the local inputs in its digest."""
        inputs = self.inputs(spec)
        path = self.root / stage / digest(stage, spec, deps, inputs)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, inputs

    def _claim(self, stage: str, path: Path) -> tuple[Artifact | None, KeyLock | None]:
        """(the verified artifact, None), or (None, the key's lock, held) when it must be built: absent, or
        damaged (said, with why). Another process building the key is waited for on its lock."""
        found = self._check(stage, path)
        if isinstance(found, Artifact):
            return found, None
        lock = KeyLock(Path(f"{path}.lock"), f"the {stage} artifact {path.name}", self.lock_timeout)
        lock.__enter__()
        found = self._check(stage, path)  # built (or repaired) by another process while we waited
        if isinstance(found, Artifact):
            lock.release()
            return found, None
        if isinstance(found, str):
            log.warning("%s artifact %s failed verification (%s): rebuilding it", stage, path, found)
            say(f"  warning: the {stage} artifact {path.name} failed verification ({found}): rebuilding it")
        return None, lock

    def _get_or_build_ranks(self, stage, spec, build, deps, collective: bool) -> Artifact:
        """`get_or_build` for one rank of a multi-process job: rank 0 alone checks, locks and writes."""
        if self._alone:
            raise RuntimeError(f"the {stage} artifact is asked for inside a build only rank 0 runs: the other ranks "
                               "would never answer; ask for it before that build (or make that stage collective)")
        lock, artifact, work = None, None, None
        if is_main():
            path, inputs = self._locate(stage, spec, deps)
            artifact, lock = self._claim(stage, path)
            if artifact is None and collective:  # the checkpoints dir the other ranks link to exists before they do
                work = self._work_dir(stage, path)
                (work / CHECKPOINTS).mkdir(exist_ok=True)
        what = f"{stage} artifact"
        path, build_it = broadcast((path, artifact is None) if is_main() else None, f"deciding on the {what}")
        try:
            if build_it and is_main():
                self._alone = not collective
                try:
                    artifact = self._build(stage, spec, build, deps, path, inputs, work)
                finally:
                    self._alone = False
            elif build_it and collective:
                _build_alongside(path, build)
            barrier(f"building the {what} {path.name}")
        finally:
            if lock is not None:
                lock.release()
        if artifact is None:  # a rank other than 0: read what rank 0 published
            artifact = self._check(stage, path)
            if not isinstance(artifact, Artifact):
                raise ArtifactError(f"rank {rank()}: the {what} {path} that rank 0 published is {artifact or 'absent'}"
                                    " (is the artifact store on a filesystem every rank sees? set paths.artifacts)")
        return self._reuse(artifact)

    def _check(self, stage: str, path: Path) -> Artifact | str | None:
        """The artifact if it is there and its files are those its manifest records; what is wrong with it if
        it is there but damaged; None if it is absent."""
        if not path.exists():
            return None
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            return f"{MANIFEST} is missing or unreadable"
        if path not in self._verified:
            if "files" not in manifest:
                return "it has no checksums (built by an older mpo)"
            problem = first_mismatch(path, manifest["files"])
            if problem is not None:
                return problem
            self._verified.add(path)
        return Artifact(stage=stage, digest=path.name, path=path, manifest=manifest, reused=True)

    def _reuse(self, artifact: Artifact) -> Artifact:
        if artifact.path not in self._announced:
            # debug: a sweep reuses dozens; what is built (and how long it took) stays on the console
            log.debug("reusing %s artifact %s (built %s)", artifact.stage, artifact.digest,
                     artifact.manifest.get("built_at", "?"))
            self._announced.add(artifact.path)
        return artifact

    def _build(self, stage, spec, build, deps, path: Path, inputs: dict[str, str], work: Path | None = None
               ) -> Artifact:
        if path.exists():  # damaged, or foreign debris: we hold the key's lock, nobody reads it through us
            shutil.rmtree(path)
        work = work or self._work_dir(stage, path)
        log.info("building %s artifact %s", stage, path.name)
        meter = Meter()
        try:
            info = dict(build(work) or {})
            shutil.rmtree(work / CHECKPOINTS, ignore_errors=True)  # for resuming a build, not part of its output
            refuse_unpublishable(stage, work)
            reading = meter.reading()
            cost = {"wall_seconds": reading["seconds"], "cpu_seconds": reading["cpu_seconds"],
                    "peak_memory_mb": reading["peak_memory_mb"]}
            manifest = {
                "stage": stage, "digest": path.name, "spec": mask(_canonical(spec)), "deps": [d.key for d in deps],
                "inputs": inputs, "code": code_identity(spec), "versions": library_versions(), "cost": cost, "info": _canonical(info),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(), "pid": os.getpid(),
                "files": file_records(work),
            }
            write_json(work / MANIFEST, manifest)
            os.replace(work, path)  # atomic on one filesystem: readers see all or nothing
        except BaseException:
            _keep_only_checkpoints(work)
            raise
        log.info("built %s artifact %s in %.1f s", stage, path.name, cost["wall_seconds"])
        self._announced.add(path)
        self._verified.add(path)
        self._clean_stale(path.parent)
        return _load(stage, path, reused=False)

    def _work_dir(self, stage: str, path: Path) -> Path:
        """This key's build directory: fresh, or what a killed build left, trimmed to its checkpoints."""
        for debris in path.parent.glob(f".tmp-{path.name}-*"):  # left by an older mpo's killed build
            shutil.rmtree(debris, ignore_errors=True)
        work = path.parent / f".build-{path.name}"
        if work.exists():
            _keep_only_checkpoints(work)
            if any(work.glob(f"{CHECKPOINTS}/checkpoint-*")):
                log.info("resuming the interrupted build of %s artifact %s from its checkpoints", stage, path.name)
                say(f"  resuming the interrupted build of {stage} artifact {path.name} from its checkpoints")
        work.mkdir(parents=True, exist_ok=True)
        return work

    def _clean_stale(self, stage_dir: Path) -> None:
        """Delete build directories of other keys that nobody has written to for `STALE_AFTER` seconds (their
        newest file, a checkpoint of a long build, not the directory's start) and whose builder is gone (their
        lock is free): a config that is never run again must not leave them behind."""
        now = time.time()
        for entry in stage_dir.glob(".[bt][um][ip]*-*"):  # .build-<digest>, .tmp-<digest>-<pid>-<ns>
            key = entry.name.split("-")[1]
            if not entry.is_dir() or now - last_written(entry) < STALE_AFTER:
                continue
            lock = KeyLock(stage_dir / f"{key}.lock", f"stale build {entry.name}", 0)
            if lock.try_acquire():
                try:
                    log.info("removing %s, a build abandoned more than a day ago", entry)
                    shutil.rmtree(entry, ignore_errors=True)
                finally:
                    lock.release()


def last_written(root: Path) -> float:
    """The newest modification time of ``root`` or anything under it (seconds since the epoch)."""
    newest = root.stat().st_mtime
    for entry in root.rglob("*"):
        try:
            newest = max(newest, entry.lstat().st_mtime)
        except FileNotFoundError:  # removed while we looked
            continue
    return newest


def refuse_unpublishable(stage: str, work: Path) -> None:
    """Never publish what no later run should reuse: a build with no files, datasets without a row, or
    weights that are not all finite (`mpo.store.checks`): the run stops before anything is stored under the
    key."""
    problem = unpublishable(work)
    if problem is not None:
        raise ArtifactError(f"the {stage} build produced {problem} (nothing was stored under its key)")


def _build_alongside(path: Path, build: Callable[[Path], Any]) -> None:
    """A rank other than 0 takes part in a collective build (its TRL trainer's steps) in a scratch directory
    of its own, removed afterwards: only rank 0's output is published. Its checkpoints directory is rank 0's
    (a link): the Trainer writes every rank's RNG state into one shared checkpoint, as it expects, so a resumed
    build restores each rank's generators and equals the undisturbed one (mpo.training.common.train_from_checkpoint)."""
    scratch = path.parent / f".rank{rank()}-{path.name}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    shared = path.parent / f".build-{path.name}" / CHECKPOINTS  # made by rank 0 before it said "build"
    (scratch / CHECKPOINTS).symlink_to(shared, target_is_directory=True)
    try:
        build(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # removes the link, not rank 0's checkpoints


def _keep_only_checkpoints(work: Path) -> None:
    """Trim a build directory to its training checkpoints; remove it if it has none."""
    if not work.exists():
        return
    for entry in work.iterdir():
        if entry.name != CHECKPOINTS:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    if not any(work.iterdir()):
        work.rmdir()


def _load(stage: str, path: Path, reused: bool) -> Artifact:
    manifest = json.loads((path / MANIFEST).read_text())
    return Artifact(stage=stage, digest=path.name, path=path, manifest=manifest, reused=reused)


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinity replaced by None: JSON has no such numbers (Python would write a bare
    ``NaN`` that strict parsers refuse). A value that is not a number becomes null, honestly."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as JSON, keys in the order they were inserted: results.json keeps the task's objective order
    (``weights``, ``reward``, ``win_rate``), the order ``method.weights=[...]`` takes them in. Written to a
    temporary file and renamed: a failed write (a full disk) leaves the old file, and no empty temporary one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(json_safe(obj), indent=2, allow_nan=False))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_results(results: Mapping[str, Any], path: Path, store_root: Path) -> Path:
    """results.json at ``path``, never lost: if it cannot be written there (a full disk, a read-only or
    removed run dir), a copy goes to the store's ``unsaved_results/`` (or the system's temporary directory)
    and the error says where it is. Returns ``path``."""
    try:
        write_json(path, results)
        return path
    except OSError as err:
        kept = _keep_elsewhere(results, path, [Path(store_root) / "unsaved_results", Path(tempfile.gettempdir())])
        where = f"they are kept in {kept}" if kept else "no copy could be written anywhere (every disk is full?)"
        raise ArtifactError(f"could not write {path} ({describe_os_error(err)}); the evaluation finished and "
                            f"{where}: free space or fix the run dir's permissions, then copy it there") from err


def _keep_elsewhere(results: Mapping[str, Any], path: Path, places: Sequence[Path]) -> Path | None:
    name = f"{path.parent.name}-{os.getpid()}-results.json"
    for place in places:
        try:
            place.mkdir(parents=True, exist_ok=True)
            write_json(place / name, results)
            return place / name
        except OSError:
            continue
    return None

