"""The per-key lock of the artifact store, which says who holds it.

A job that needs an artifact another job is building waits on that key's lock. The holder writes who it is
(pid, host, since when, which artifact) into a file beside the lock, so the waiting job can tell the user
whom it waits for, remind them while it waits, and give up with a message after ``timeout`` seconds. The
lock is a kernel ``flock`` (filelock): a holder that dies, even by ``kill -9``, releases it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mpo.infra.errors import ArtifactError

log = logging.getLogger(__name__)


class KeyLock:
    """``with KeyLock(path, what, timeout):`` holds the lock ``path`` (waiting at most ``timeout`` s)."""

    def __init__(self, path: Path, what: str, timeout: float, notice_every: float = 300.0):
        self.path, self.what, self.timeout, self.notice_every = Path(path), what, timeout, notice_every
        self.holder_file = self.path.with_name(self.path.name + ".holder.json")
        self._lock = FileLock(str(self.path))

    def try_acquire(self) -> bool:
        """Take the lock if it is free right now."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        self._write_holder()
        return True

    def __enter__(self) -> KeyLock:
        if self.try_acquire():
            return self
        start = time.monotonic()
        log.info("waiting for %s: %s", self.what, self.holder())
        while True:
            left = self.timeout - (time.monotonic() - start)
            if left <= 0:
                raise ArtifactError(
                    f"gave up after {self.timeout:.0f} s waiting for {self.what}: {self.holder()}. If that process "
                    f"is gone (a lost cluster node, a filesystem without working locks), delete {self.path} and "
                    "rerun; if it is still building, rerun later or raise lock_timeout (seconds)")
            try:
                self._lock.acquire(timeout=min(self.notice_every, left))
            except Timeout:
                log.info("still waiting (%.0f s) for %s: %s", time.monotonic() - start, self.what, self.holder())
                continue
            self._write_holder()
            return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def release(self) -> None:
        try:
            self.holder_file.unlink(missing_ok=True)
        finally:
            self._lock.release()

    def holder(self) -> str:
        """Who holds the lock, as the holder wrote it."""
        try:
            info = json.loads(self.holder_file.read_text())
        except (OSError, ValueError):
            return f"held by another process (lock file {self.path})"
        return (f"pid {info.get('pid')} on {info.get('host')} has held it since {info.get('since')} "
                f"(lock file {self.path})")

    def _write_holder(self) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "what": self.what}
        tmp = self.holder_file.with_name(f"{self.holder_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.holder_file)
