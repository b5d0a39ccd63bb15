"""Secrets never leave the process: values of secret-like keys are masked wherever a run records its config
(results.json ``overrides``, the job's ``.hydra/`` files and the sweep's ``multirun.yaml`` (written by
`mpo.infra.hydra_job.record_job`), the W&B config, run name and command-line args).

A key is secret-like when one of its words ends with key, token, secret or password (or a close variant):
``wandb_api_key``, ``hfToken``, ``client_secret``, ``db_password``, ``apikey``. Whole-word endings rather
than substrings keep ``max_new_tokens``, ``tokenizer`` and ``keywords`` visible: masking them would hide
the settings a reader needs. Imports nothing heavy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MASK = "***"
SECRET_WORD_ENDINGS = ("key", "keys", "token", "secret", "secrets", "password", "passwd", "passphrase",
                       "credentials")
_OVERRIDE = re.compile(r"^(?P<prefix>[+~]{0,2})(?P<key>[\w.\-/@]+)=(?P<value>.*)$", re.DOTALL)


def is_secret_key(key: str) -> bool:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key)).lower()
    return any(word.endswith(SECRET_WORD_ENDINGS) for word in re.split(r"[^a-z0-9]+", words) if word)


def mask(value: Any) -> Any:
    """A copy of a (nested) config with the values of secret-like keys replaced by ``***``; values W&B and
    JSON cannot hold (paths, enums) become their text."""
    if isinstance(value, Mapping):
        return {str(k): MASK if is_secret_key(str(k)) and v is not None else mask(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Sequence):  # lists, tuples, OmegaConf ListConfig
        return [mask(v) for v in value]
    return str(value)


def mask_override(text: str) -> str:
    """``+task.data.hf_token=abc`` -> ``+task.data.hf_token=***``; other overrides unchanged. Every dotted
    part of the key counts (``+task.data.token.value=x`` is masked too)."""
    found = _OVERRIDE.match(str(text))
    if found is None or not any(is_secret_key(part) for part in re.split(r"[.@/]", found["key"])):
        return str(text)
    return f"{found['prefix']}{found['key']}={MASK}"


def mask_overrides(items: Sequence[str]) -> list[str]:
    return [mask_override(item) for item in items]


def has_secret(items: Sequence[str]) -> bool:
    return any(mask_override(item) != item for item in items)


_IN_TEXT = re.compile(r"(?P<key>[+~]{0,2}[\w.\-/@]+)=(?P<value>[^\s,'\"\]]*)")


def mask_text(text: str) -> str:
    """Every ``key=value`` inside free text (a log line, Hydra's ``override_dirname``) masked as above."""
    return _IN_TEXT.sub(lambda m: mask_override(m.group(0)), str(text))


def mask_strings(value: Any) -> Any:
    """Hydra's own config: secret-like keys masked, and ``key=value`` overrides inside its strings."""
    if isinstance(value, Mapping):
        return {k: MASK if is_secret_key(str(k)) and v is not None else mask_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_strings(v) for v in value]
    return mask_text(value) if isinstance(value, str) else value


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
