"""Mistakes a user can fix, told as one line that names what is wrong and the fix.

`mpo.run` prints a `UserError` (and a Hydra composition error, which is a config mistake too) as that one
line, without a traceback; anything else is a bug and keeps its traceback. This module imports nothing
heavy: config errors are reported before torch or transformers is imported.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable, Iterator

# a place the run cannot write or read, whatever the code: the user's disk or permissions, never a bug
FILESYSTEM_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                     errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                     errno.EPERM: "permission denied", errno.ENOTDIR: "a file stands where a directory must be",
                     errno.EISDIR: "a directory stands where a file must be"}
FILESYSTEM_FIXES = {errno.ENOSPC: "free space there", errno.EDQUOT: "free space there",
                    errno.EROFS: "mount it writable", errno.ENOTDIR: "move that file away",
                    errno.EISDIR: "move that directory away"}


class UserError(Exception):
    """A mistake in what the user asked for or gave us (config, data, a scorer, a damaged artifact)."""


class ConfigError(UserError, ValueError):
    """A config value that composes but makes no sense; the message names the key and the fix."""


class ScorerError(UserError):
    """An objective's scorer raised, or returned something other than one finite float per response."""


class DataError(UserError, ValueError):
    """A local data file or model directory that is empty or unreadable (or missing: `MissingInputError`)."""


class MissingInputError(DataError, FileNotFoundError):
    """A local data file or model directory named in the config does not exist."""


class ArtifactError(UserError):
    """A stored artifact that failed verification, or a lock on one that was never released."""


def user_error(err: BaseException | None) -> UserError | None:
    """The `UserError` behind ``err``, if any: libraries wrap what our code raises inside them (Hydra's
    ``instantiate`` raises InstantiationException from the builder's error), with ``from`` (``__cause__``) or
    while handling it (``__context__``, unless ``from None`` hid it)."""
    return next((e for e in _chain(err) if isinstance(e, UserError)), None)


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and the errors behind it, outermost first, each once."""
    seen = set()
    while err is not None and id(err) not in seen:
        yield err
        seen.add(id(err))
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)


def closest(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or "" when none is close."""
    close = difflib.get_close_matches(word, sorted(str(o) for o in options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or a list of the options when none is close."""
    options = sorted(str(o) for o in options)
    hint = closest(word, options)
    if hint:
        return hint
    shown = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
    return f" (known keys: {shown})" if options else ""


def one_line(text: str) -> str:
    """A message on one line: OmegaConf's multi-line details joined with '; '."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def describe_os_error(err: OSError) -> str:
    """An OSError as a reader wants it: "the disk is full" for ENOSPC (whose strerror never says so)."""
    return FILESYSTEM_ERRNOS.get(err.errno) or err.strerror or str(err)


def filesystem_error(err: BaseException) -> str | None:
    """One line for a run that cannot write where it was told (full disk, read-only store, a file where the run
    dir goes): the path, why, and the fix; None for any other error. Wrapped errors are looked through, as in
    `user_error`."""
    err = next((e for e in _chain(err) if isinstance(e, OSError) and e.errno in FILESYSTEM_ERRNOS), None)
    if err is None:
        return None
    where = err.filename if err.filename is not None else "a path under paths.root"
    first = FILESYSTEM_FIXES.get(err.errno, "fix the permissions")
    fix = f"{first}, or point paths.root=<dir> (MPO_OUTPUTS=<dir>) at a writable directory"
    return f"cannot write {where}: {describe_os_error(err)}; {fix}; every finished artifact stays in the store"
