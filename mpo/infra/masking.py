"""Secrets never leave the process: they are masked wherever a run records or prints its config (results.json
``overrides``, the job's ``.hydra/`` files and the sweep's ``multirun.yaml`` (written by
`mpo.infra.hydra_job.record_job`), artifact manifests, the W&B config, run name and command-line args, and what
``--help``, ``--cfg`` and ``--info`` print).

Two rules, applied together, recursively through dict and list values and inside override text:

- By key. A key is secret-like when its last word ends with key, token, secret or password (or a close
  variant): ``wandb_api_key``, ``hfToken``, ``client_secret``, ``db_password``, ``apikey``. The last word is
  what the key names (``token_ids`` are ids, ``api_key`` is a key), and whole words rather than substrings keep
  ``max_new_tokens``, ``tokenizer`` and ``keywords`` visible: masking them would hide the settings a reader
  needs. In an override every dotted part counts (``+task.data.token.value=x``), and so do the entries of a
  dict-valued override (``+task.objectives.X={scorer:{_target_:...,api_key:***}}``).
- By value, whatever the key: URL userinfo (``https://***@host/path``: host and path stay), ``Bearer ***``,
  and tokens with a vendor's prefix: ``sk-***`` (OpenAI, ``sk-proj-``; 20+ characters with a digit, so
  ``sk-learn`` stays), ``hf_***`` (Hugging Face; 30+ letters and digits, so ``hf_token`` stays), ``ghp_***``
  (GitHub). A W&B API key is 40 lowercase hex digits, the shape of a git commit: it is masked only when it is
  a whole value (a string leaf, an override's value, a ``key: value`` entry) under a key that does not name a
  hash (sha, commit, digest, hash, revision, rev, checksum). So commits and revisions stay visible, and so do
  sha256 digests (64 hex digits) and artifact digests (16); a 40-hex run inside prose is left alone.

Imports nothing heavy.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

MASK = "***"
SECRET_WORD_ENDINGS = ("key", "keys", "token", "secret", "secrets", "password", "passwd", "passphrase",
                       "credentials")
_HASH_WORD = re.compile(r"(sha|commit|digest|hash|revision|rev|checksum)(e?s|\d+)?")
_WANDB_KEY = re.compile(r"(local-)?[0-9a-f]{40}")
_OVERRIDE = re.compile(r"^(?P<prefix>[+~]{0,2})(?P<key>[\w.\-/@]+)=(?P<value>.*)$", re.DOTALL)
# a key followed by = or : (an override, a flow-dict entry, a YAML-ish log line), at a token boundary
_KEY_THEN_VALUE = re.compile(r"(?<![\w.\-+~/@\\])(?P<key>[+~]{0,2}[\w.\-/@]+)[ \t]*\\?[:=][ \t]*")
# (pattern, replacement) for secrets under any key; Hydra escapes ``\:`` ``\,`` ``\ `` in a sweep's overrides
_SECRET_VALUES = (
    (re.compile(r"(?P<scheme>\b[A-Za-z][\w+.\-]*\\?://)(?:\\.|[^\s/?#@'\"{}\[\],\\])+@"), rf"\g<scheme>{MASK}@"),
    (re.compile(r"(?P<scheme>\b[Bb]earer(?:\\?\s)+)(?=[\w\-.~+/]*\d)[\w\-.~+/]{8,}=*"), rf"\g<scheme>{MASK}"),
    (re.compile(r"(?<![\w\-])(?P<prefix>sk-)(?=[\w\-]*\d)[\w\-]{20,}"), rf"\g<prefix>{MASK}"),
    (re.compile(r"(?<!\w)(?P<prefix>hf_)[A-Za-z0-9]{30,}"), rf"\g<prefix>{MASK}"),
    (re.compile(r"(?<!\w)(?P<prefix>gh[pousr]_|github_pat_)\w{30,}"), rf"\g<prefix>{MASK}"),
)


def _words(key: str) -> list[str]:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key)).lower()
    return [word for word in re.split(r"[^a-z0-9]+", words) if word]


def is_secret_key(key: str) -> bool:
    words = _words(key)
    return bool(words) and words[-1].endswith(SECRET_WORD_ENDINGS)


def _names_hash(key: str | None) -> bool:
    """``commit``, ``git_sha``, ``sha256``, ``model.revision``: a 40-hex value under it is a commit, not a key."""
    last = re.split(r"[.@/]", str(key or ""))[-1]
    return any(_HASH_WORD.fullmatch(word) for word in _words(last))


def _is_wandb_key(value: str, key: str | None) -> bool:
    return _WANDB_KEY.fullmatch(value.strip().strip("'\"")) is not None and not _names_hash(key)


def _secret_path(key: str) -> bool:
    return any(is_secret_key(part) for part in re.split(r"[.@/]", key))


def mask_values(text: str) -> str:
    """URL userinfo, bearer tokens and vendor-prefixed tokens inside ``text`` masked, whatever key holds it."""
    for pattern, replacement in _SECRET_VALUES:
        text = pattern.sub(replacement, text)
    return text


def _value_end(text: str, start: int) -> int:
    """Where the value starting at ``start`` ends: at a comma, closing bracket or blank outside quotes, brackets
    and backslash escapes, so a ``{...}`` or ``[...]`` value is taken whole."""
    depth, quote, escaped = 0, None, False
    for i in range(start, len(text)):
        ch = text[i]
        if escaped or ch == "\\":  # Hydra's ``\,`` and ``\ `` are part of the value
            escaped = not escaped
        elif quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]" and depth:
            depth -= 1
        elif depth == 0 and (ch in ",}]" or ch.isspace()):
            return i
    return len(text)


def _mask_entries(text: str) -> str:
    """Each ``key=value``, ``key: value`` or ``key:value`` inside ``text`` with a secret-like key (or a lone
    W&B key as its value) gets ``***`` for its value; the others are searched for nested entries."""
    out, pos = [], 0
    while (found := _KEY_THEN_VALUE.search(text, pos)) is not None:
        start = found.end()
        end = _value_end(text, start)
        value = text[start:end]
        out.append(text[pos:start])
        if value not in ("", "null") and (_secret_path(found["key"]) or _is_wandb_key(value, found["key"])):
            out.append(MASK)
            pos = end
        else:
            pos = start
    out.append(text[pos:])
    return "".join(out)


def mask_text(text: str) -> str:
    """Free text (a log line, an argument, Hydra's ``override_dirname``): an override as `mask_override` does;
    otherwise every secret-keyed entry inside it and every secret-looking value."""
    text = str(text)
    if _OVERRIDE.match(text):
        return mask_override(text)
    return mask_values(_mask_entries(text))


def _mask_leaf(value: str, key: str | None) -> str:
    return MASK if _is_wandb_key(value, key) else mask_text(value)


def mask(value: Any, key: str | None = None) -> Any:
    """A copy of a (nested) config with the values of secret-like keys replaced by ``***`` and every string
    masked by value; values W&B and JSON cannot hold (paths, enums) become their text. ``key``: the key
    holding ``value`` (list items take their list's), which decides whether a lone 40-hex string is a W&B key."""
    if isinstance(value, Mapping):
        return {str(k): MASK if is_secret_key(str(k)) and v is not None else mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, str):
        return _mask_leaf(value, key)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Sequence):  # lists, tuples, OmegaConf ListConfig
        return [mask(v, key) for v in value]
    return _mask_leaf(str(value), key)


def mask_override(text: str) -> str:
    """``+task.data.hf_token=abc`` -> ``+task.data.hf_token=***`` (every dotted part of the key counts);
    ``+x={scorer:{_target_:a.b,api_key:abc}}`` -> ``+x={scorer:{_target_:a.b,api_key:***}}``; secret-looking
    values masked in any override, and in text that is no override."""
    found = _OVERRIDE.match(str(text))
    if found is None:
        return mask_values(str(text))
    head = f"{found['prefix']}{found['key']}="
    if _secret_path(found["key"]) or _is_wandb_key(found["value"], found["key"]):
        return head + MASK
    return head + mask_values(_mask_entries(found["value"]))


def mask_overrides(items: Sequence[str]) -> list[str]:
    return [mask_override(item) for item in items]


def has_secret(items: Sequence[str]) -> bool:
    return any(mask_override(item) != item for item in items)


def mask_strings(value: Any, key: str | None = None) -> Any:
    """Hydra's own config: as `mask`, but values other than strings (its enums) are kept as they are."""
    if isinstance(value, Mapping):
        return {k: MASK if is_secret_key(str(k)) and v is not None else mask_strings(v, str(k))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask_strings(v, key) for v in value]
    return _mask_leaf(value, key) if isinstance(value, str) else value


def mask_log_records(prefixes: tuple[str, ...] = ("hydra", "hydra_plugins")) -> None:
    """Mask ``key=value`` overrides in Hydra's own log lines (a launcher lists every job's overrides)."""
    import logging

    factory = logging.getLogRecordFactory()
    if getattr(factory, "masks_overrides", False):
        return

    def masked(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if record.name.startswith(prefixes) and isinstance(record.msg, str) and not record.args:
            record.msg = mask_text(record.msg)
        return record

    masked.masks_overrides = True
    logging.setLogRecordFactory(masked)


_PRINT_FLAGS = ("-h", "--help", "-c", "--cfg", "-i", "--info", "--hydra-help", "-sc", "--shell-completion")


def prints_only(argv: Sequence[str]) -> bool:
    """Whether Hydra will print (``--help``, ``--cfg job``, ``-cjob``, ``--info``...) rather than run a job."""
    return any(arg.split("=", 1)[0] in _PRINT_FLAGS or (arg[:2] in ("-c", "-i") and arg[:3] not in ("-cd", "-cn"))
               for arg in argv[1:])


def _package(argv: Sequence[str]) -> str:
    """The node ``--cfg job -p KEY`` (``--package KEY``) prints alone, without the key that holds it."""
    for i, arg in enumerate(argv):
        if arg in ("-p", "--package") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(("--package=", "-p")) and arg not in ("-p", "--package"):
            return arg.split("=", 1)[1] if arg.startswith("--package=") else arg[2:]
    return ""


@contextmanager
def masked_printing(argv: Sequence[str] = ()) -> Iterator[None]:
    """Hydra prints ``--help``, ``--cfg`` and ``--info`` itself, from inside ``@hydra.main``: each config it
    prints goes through ``OmegaConf.to_yaml``, masked here for the duration (the config, not its YAML text, so
    a secret's nested block or a long wrapped value goes whole), and every line written to stdout is masked by
    value (a single value printed by ``--cfg job -p KEY``), or whole when ``-p`` names a secret-like key. Only
    for such commands: a run's own YAML (artifact specs, ``.hydra/``) is never touched, and its console output
    is never held back."""
    from omegaconf import OmegaConf

    to_yaml = OmegaConf.__dict__["to_yaml"]

    def masked_to_yaml(cfg: Any, *, resolve: bool = False, sort_keys: bool = False) -> str:
        data = OmegaConf.to_container(cfg if OmegaConf.is_config(cfg) else OmegaConf.create(cfg), resolve=resolve)
        return to_yaml.__func__(OmegaConf.create(mask_strings(data)), sort_keys=sort_keys)

    OmegaConf.to_yaml = staticmethod(masked_to_yaml)
    stdout = sys.stdout
    sys.stdout = writer = _ValueMaskingLines(stdout, whole=_secret_path(_package(argv)))
    try:
        yield
    finally:
        writer.flush()
        sys.stdout = stdout
        OmegaConf.to_yaml = to_yaml


class _ValueMaskingLines:
    """A stream that writes whole lines, each masked by value (a token split across two writes is caught), or
    each as ``***`` when ``whole``."""

    def __init__(self, stream, whole: bool = False) -> None:
        self._stream, self._partial, self._whole = stream, "", whole

    def _masked(self, line: str) -> str:
        return (MASK if line.strip() else line) if self._whole else mask_values(line)

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._stream.write(self._masked(line) + "\n")
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self._stream.write(self._masked(self._partial))
            self._partial = ""
        self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
