"""The code a stage runs, as part of its key: every ``_target_`` a spec names (a scorer, a data builder, any
callable a user plugs in) is identified by a hash of the source file that defines it, so editing a scorer's
code is a new key, not a stale reuse of pairs and policies labelled by the old one.

The file that defines the target is what is hashed (``inspect.getsourcefile``: the defining module, also for
a name re-exported elsewhere), not the modules it imports in turn: a scorer whose helper lives in another
file is re-keyed when its own file changes, not when only the helper's does. mpo's own code is covered by the
``mpo`` version in the key. Imports nothing from mpo.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def targets(spec: Any) -> list[str]:
    """Every ``_target_`` string anywhere in a (nested) spec, sorted and without repeats."""
    found: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, Mapping):
            target = value.get("_target_")
            if isinstance(target, str):
                found.add(target)
            for v in value.values():
                visit(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)

    visit(spec)
    return sorted(found)


def code_identity(spec: Any) -> dict[str, str]:
    """``{target: sha256 of its defining source file (16 hex)}`` for every target in the spec; a target that
    cannot be imported (the build will say why) or has no source file is keyed by its name alone."""
    return {target: _source_hash(target) for target in targets(spec)}


def _source_hash(target: str) -> str:
    source = _source_file(target)
    if source is None:
        return "no-source"
    stat = source.stat()
    return _file_hash(str(source), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@functools.lru_cache(maxsize=256)
def _file_hash(path: str, size: int, mtime_ns: int, ctime_ns: int) -> str:
    """Hashed once per process and file state (an edit changes mtime or ctime, so it is hashed again)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _source_file(target: str) -> Path | None:
    obj = _resolve(target)
    if obj is None:
        return None
    try:
        source = inspect.getsourcefile(obj)
    except TypeError:  # a builtin, or an object that is neither a module, class nor function
        return None
    return Path(source) if source else None


def _resolve(target: str) -> Any:
    """The object a dotted ``_target_`` names (as Hydra resolves it: the longest importable module prefix,
    then attributes), or None."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        except Exception:  # noqa: BLE001 - a module that fails on import: its build will report it
            return None
        for name in parts[cut:]:
            obj = getattr(obj, name, None)
            if obj is None:
                return None
        return obj
    return None
