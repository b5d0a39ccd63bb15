"""Hub datasets in our schemas: prompts (``list[str]``) and preference pairs (``prompt``/``chosen``/``rejected``).

``source`` is a hub id (``stanfordnlp/imdb``, ``Anthropic/hh-rlhf``) or a local path: a data file
(.json/.jsonl/.parquet/.csv/.tsv/.txt, optionally compressed), a ``save_to_disk`` directory, or a directory
``datasets.load_dataset`` understands. Local files go through ``load_dataset(<builder>, data_files=...)``,
hub ids through ``load_dataset(<id>, ...)``; everything after loading is the same code, so tests on local
files of the hub schema exercise what real runs do.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path

import datasets

from mpo.data.local import BUILDERS, file_builder, looks_like_path, resave_as_utf8, utf8_problem
from mpo.infra.errors import DataError, MissingInputError

log = logging.getLogger(__name__)

PAIR_FORMATS = ("prompt_chosen_rejected", "hh_rlhf", "chosen_rejected")
HH_ASSISTANT = "\n\nAssistant:"


class DatasetNotCachedError(DataError, ConnectionError):
    """A hub dataset was asked for while offline and is not in the local cache."""


def _offline() -> bool:
    flags = (os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(flags) or bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))


def _load_local_file(path: Path, split: str, load_kwargs: dict) -> datasets.Dataset:
    builder = file_builder(path)
    if builder is None:
        raise DataError(f"don't know how to read {path}: use one of {sorted(BUILDERS)} (optionally compressed)")
    ignored = {k: load_kwargs.pop(k) for k in ("data_dir", "name") if k in load_kwargs}
    if ignored:  # hub-only options (HH's data_dir) mean nothing for a single file
        log.warning("ignoring %s for the local file %s", ignored, path)
    if path.suffix.lower() == ".tsv":
        load_kwargs.setdefault("sep", "\t")
    split_name = re.match(r"\w+", split).group(0)  # "train[:100]" -> data_files key "train"
    try:
        data = datasets.load_dataset(builder, data_files={split_name: str(path)}, split=split, **load_kwargs)
    except Exception as err:  # noqa: BLE001 - pyarrow/pandas parse errors of every kind: name the file
        cause = _first_line(err, 300)
        if problem := utf8_problem(path):
            raise DataError(f"{path}: {problem}; {resave_as_utf8(path)}") from err
        if "corresponds to no data" in cause:
            raise DataError(f"{path} holds no rows; point `source` at a data file with rows") from err
        raise DataError(f"could not read {path} as {builder} data ({type(err).__name__}: {cause}); check the "
                        f"file's format (.jsonl: one JSON object per line; .csv: a header row)") from err
    if len(data) == 0:
        raise DataError(f"{path} holds no rows; point `source` at a data file with rows")
    _check_utf8(data, path)
    return data


def _check_utf8(data: datasets.Dataset, path: Path) -> None:
    """pyarrow's json reader keeps bytes that are not UTF-8 and fails on the first row read (a compressed
    file, which `utf8_problem` does not open at composition): refuse it here, naming the file and column."""
    import pyarrow as pa

    table = data.data.table
    for name, column in zip(table.column_names, table.columns):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid as err:
            raise DataError(f"{path}: not UTF-8 text (column {name!r}: {_first_line(err)}); "
                            f"{resave_as_utf8(path)}") from err


def _first_line(err: BaseException, limit: int = 200) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:limit]


def _load_local_dir(path: Path, split: str, load_kwargs: dict) -> datasets.Dataset:
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():  # written by save_to_disk
        data = datasets.load_from_disk(str(path), keep_in_memory=True)  # transforms never write cache files there
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise DataError(f"split {split!r} not in {path}; its splits are {list(data)}")
            return data[split]
        return data
    return datasets.load_dataset(str(path), split=split, **load_kwargs)


def _load_hub(source: str, split: str, load_kwargs: dict) -> datasets.Dataset:
    try:
        return datasets.load_dataset(source, split=split, **load_kwargs)
    except (ConnectionError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as err:
        if not _offline():
            raise
        raise DatasetNotCachedError(
            f"dataset {source!r} (split {split!r}, {load_kwargs or 'no options'}) is not in the local cache and "
            f"the hub is offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set). Fix: run once online to cache it "
            f"(e.g. unset HF_HUB_OFFLINE and python -c \"import datasets; datasets.load_dataset('{source}')\"), "
            f"or set `source` to a local file with the same columns (.jsonl/.parquet/.csv) or a save_to_disk "
            f"directory. (No local file or directory named {source!r} exists either.) Cause: {err}") from err


def load_split(source: str, split: str = "train", **load_kwargs) -> datasets.Dataset:
    """One split of a dataset from a hub id or a local path (see the module docstring)."""
    path = Path(source).expanduser()
    if path.is_file():
        return _load_local_file(path, split, dict(load_kwargs))
    if path.is_dir():
        return _load_local_dir(path, split, dict(load_kwargs))
    if looks_like_path(source):
        raise MissingInputError(f"dataset file not found: {path} (source={source!r}); check the path, "
                        f"or give a hub id like 'stanfordnlp/imdb'")
    return _load_hub(source, split, dict(load_kwargs))


def require_columns(dataset: datasets.Dataset, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise DataError(f"column(s) {missing} not found in {source!r}; its columns are {dataset.column_names}")


def _sample_indices(size: int, n: int | None, seed: int) -> list[int]:
    """All rows in order, or ``n`` of them drawn without replacement with ``seed``."""
    if n is None or n >= size:
        return list(range(size))
    if n < 0:
        raise ValueError(f"n must be >= 0 or None, got {n}")
    return random.Random(seed).sample(range(size), n)


_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)  # IMDb reviews carry "<br /><br />"


def load_prompts(source: str, split: str, text_column: str, prompt_words: int | None = None,
                 n: int | None = None, seed: int = 0, **load_kwargs) -> list[str]:
    """Prompts from a text column: the whole text, or its first ``prompt_words`` words (a review opening
    for IMDb: ``load_prompts("stanfordnlp/imdb", "test", "text", prompt_words=8)``).

    Empty texts are skipped; ``n`` draws a seeded random subset (None: all rows, in order).
    """
    if prompt_words is not None and prompt_words < 1:
        raise ValueError(f"prompt_words must be >= 1 or None, got {prompt_words}")
    dataset = load_split(source, split, **load_kwargs)
    require_columns(dataset, [text_column], source)
    texts = [_HTML_BREAK.sub(" ", t) for t in dataset[text_column] if isinstance(t, str) and t.strip()]
    texts = [texts[i] for i in _sample_indices(len(texts), n, seed)]
    if prompt_words is None:
        return texts
    return [" ".join(t.split()[:prompt_words]) for t in texts]


def split_hh_dialogue(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """HH-RLHF rows are two full dialogues; the prompt is their shared prefix up to and including the last
    "\\n\\nAssistant:" in it, the responses are what follows. None if there is no shared assistant turn."""
    common = os.path.commonprefix([chosen, rejected])
    cut = common.rfind(HH_ASSISTANT)
    if cut < 0:
        return None
    end = cut + len(HH_ASSISTANT)
    return chosen[:end], chosen[end:], rejected[end:]


def split_implicit_prompt(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """Pairs without a prompt column: the prompt is the longest common prefix, cut back to whitespace so
    both responses start on a word. None if the two share no such prefix."""
    common = os.path.commonprefix([chosen, rejected])
    common = common[: max(common.rfind(" "), common.rfind("\n"), 0)]  # the divergence may be mid-word
    if not common.strip():
        return None
    return common, chosen[len(common):], rejected[len(common):]


def _pair_rows(dataset: datasets.Dataset, format: str, columns: tuple[str, str, str], source: str) -> dict[str, list]:
    prompt_col, chosen_col, rejected_col = columns
    needed = [chosen_col, rejected_col] if format != "prompt_chosen_rejected" else list(columns)
    require_columns(dataset, needed, source)
    if len(dataset) and not isinstance(dataset[0][chosen_col], str):
        raise DataError(f"{source!r}: column {chosen_col!r} holds {type(dataset[0][chosen_col]).__name__}, not text; "
                         f"conversational (list-of-messages) pairs are not supported, flatten them to strings first")
    chosen, rejected = dataset[chosen_col], dataset[rejected_col]
    if format == "prompt_chosen_rejected":
        return {"prompt": dataset[prompt_col], "chosen": chosen, "rejected": rejected}
    split = split_hh_dialogue if format == "hh_rlhf" else split_implicit_prompt
    rows: dict[str, list] = {"prompt": [], "chosen": [], "rejected": []}
    for c, r in zip(chosen, rejected):
        parts = split(c, r)
        if parts is not None:
            for key, value in zip(("prompt", "chosen", "rejected"), parts):
                rows[key].append(value)
    return rows


def load_pairs(source: str, split: str, format: str = "prompt_chosen_rejected", n: int | None = None,
               seed: int = 0, *, prompt_column: str = "prompt", chosen_column: str = "chosen",
               rejected_column: str = "rejected", **load_kwargs) -> datasets.Dataset:
    """Preference pairs with columns ``prompt``, ``chosen``, ``rejected`` (strings; prompt + chosen is the
    chosen text).

    ``format``: ``"prompt_chosen_rejected"`` (explicit columns), ``"hh_rlhf"`` (``Anthropic/hh-rlhf``: two
    full dialogues, split by ``split_hh_dialogue``; ``data_dir="helpful-base"``/``"harmless-base"`` picks the
    objective) or ``"chosen_rejected"`` (implicit prompt: the shared prefix). Rows with no prompt to split
    off, or with identical chosen and rejected responses (no preference), are dropped. ``n`` draws a seeded
    random subset of what is left (None: all, in order).
    """
    if format not in PAIR_FORMATS:
        raise DataError(f"unknown pair format {format!r}; use one of {PAIR_FORMATS}")
    dataset = load_split(source, split, **load_kwargs)
    rows = _pair_rows(dataset, format, (prompt_column, chosen_column, rejected_column), source)
    keep = [i for i, (c, r) in enumerate(zip(rows["chosen"], rows["rejected"])) if c != r]
    if len(keep) < len(dataset):
        log.info("%s: dropped %d of %d pairs (no shared prompt or identical responses)",
                 source, len(dataset) - len(keep), len(dataset))
    if not keep:
        why = ("identical chosen and rejected" if format == "prompt_chosen_rejected"
               else "no shared prompt, or identical")
        raise DataError(f"{source!r} ({format}): no usable preference pairs among {len(dataset)} rows (each has {why} "
                        "responses); fix the file, or set `format` to the one it is written in")
    keep = [keep[i] for i in _sample_indices(len(keep), n, seed)]
    return datasets.Dataset.from_dict({key: [values[i] for i in keep] for key, values in rows.items()})
