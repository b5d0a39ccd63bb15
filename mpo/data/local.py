"""Local inputs named in a config (data files, model directories): is this string a path, and is what it names
usable? Checked at composition, before any library is imported, so that a typo in a path is one line naming
the key, not a hub lookup's traceback ten seconds later. Imports nothing heavy."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mpo.infra.errors import DataError, MissingInputError

BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".tsv": "csv",
            ".txt": "text", ".arrow": "arrow"}
TEXT_BUILDERS = ("json", "csv", "text")  # read as UTF-8 text by `datasets` (pyarrow's json reader, pandas)
COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
# what a saved causal LM directory holds besides config.json (one of them)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def file_builder(path: Path) -> str | None:
    """The `datasets` builder that reads a data file (by suffix, compression stripped), or None."""
    name = path.name.lower()
    for ext in COMPRESSION:
        name = name.removesuffix(ext)
    return BUILDERS.get(Path(name).suffix)


def utf8_problem(path: Path) -> str | None:
    """Where an uncompressed text data file (.json/.jsonl/.csv/.tsv/.txt) stops being UTF-8, or None (other files,
    and valid ones). pyarrow reads such a file without complaint and fails on the first row touched, later."""
    if file_builder(path) not in TEXT_BUILDERS or path.name.lower().endswith(COMPRESSION):
        return None
    carry, line = b"", 1
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            data = carry + chunk
            cut = data.rfind(b"\n") + 1 if chunk else len(data)  # a newline never ends inside a UTF-8 sequence
            block, carry = data[:cut], data[cut:]
            try:
                block.decode("utf-8")
            except UnicodeDecodeError as err:
                line += block.count(b"\n", 0, err.start)
                column = err.start - block.rfind(b"\n", 0, err.start)
                return (f"not UTF-8 text: byte 0x{block[err.start]:02x} at line {line}, byte {column} "
                        f"({err.reason})")
            line += block.count(b"\n")
            if not chunk:
                return None


def resave_as_utf8(path: Path) -> str:
    """The fix for a data file that is not UTF-8."""
    if path.name.lower().endswith(COMPRESSION):
        return "re-save the file as UTF-8"
    return f"re-save the file as UTF-8 (from Latin-1, say: iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name})"


def looks_like_path(source: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything with a data-file suffix or path syntax is a path."""
    return (file_builder(Path(source)) is not None or source.startswith((".", "/", "~"))
            or os.sep in source.strip("/").replace("/", "", 1) or "\\" in source)


def check_data_source(source: str, key: str) -> None:
    """A local data file or directory must exist and not be empty; hub ids pass (checked when loaded)."""
    path = Path(source).expanduser()
    if not path.exists():
        if looks_like_path(source):
            raise MissingInputError(f"{key}={source}: no such file or directory; fix the path (or give a hub id "
                            "such as 'stanfordnlp/imdb')")
        return
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{key}={source}: the file is empty; point it at a data file with rows")
    if path.is_file() and (problem := utf8_problem(path)):
        raise DataError(f"{key}={source}: {problem}; {resave_as_utf8(path)}")
    if path.is_dir() and not any(path.iterdir()):
        raise DataError(f"{key}={source}: the directory is empty; point it at a save_to_disk directory or a "
                        "directory of data files")


def check_model_dir(source: str, key: str) -> None:
    """A local model directory must hold a readable config.json and weights; hub ids pass."""
    path = Path(source).expanduser()
    if not path.exists():
        if looks_like_path(source):
            raise MissingInputError(f"{key}={source}: no such directory; give a directory written by save_pretrained "
                            "or a hub id")
        return
    if not path.is_dir():
        raise DataError(f"{key}={source} is a file; give the directory save_pretrained wrote (with config.json)")
    config = path / "config.json"
    if not config.is_file():
        raise DataError(f"{key}={source} has no config.json: not a saved model; save one with "
                        "model.save_pretrained(dir) and tokenizer.save_pretrained(dir)")
    try:
        json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{key}={source}: config.json is not valid JSON ({err}); re-save the model") from err
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise DataError(f"{key}={source} has no weights ({' or '.join(WEIGHT_FILES[::2])}); re-save the model")
    weights = path / "model.safetensors"
    if weights.is_file() and (problem := safetensors_problem(weights)):
        raise DataError(f"{key}={source}: model.safetensors {problem}; re-save or re-download the model")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise DataError(f"{key}={source} has no tokenizer files (tokenizer.json or tokenizer_config.json); "
                        "save the tokenizer there too: tokenizer.save_pretrained(dir)")


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a .safetensors file's framing (an 8-byte header length, a JSON header, then the
    tensors it lists), or None: a truncated download or copy fails here, in microseconds, not in torch."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 0 < length <= size - 8:
                return "is truncated or not a safetensors file (bad header length)"
            header = json.loads(f.read(length))
    except (OSError, UnicodeDecodeError, ValueError):
        return "has an unreadable header"
    ends = [t["data_offsets"][1] for name, t in header.items() if name != "__metadata__" and "data_offsets" in t]
    if 8 + length + max(ends, default=0) > size:
        return f"is truncated ({size} bytes, its header lists {8 + length + max(ends)})"
    return None
