"""Task datasets from the hub (or local copies with the same schema): a DatasetDict with splits
train/eval, columns `prompt` (what policies continue) and `text` (what SFT trains on).

Train and eval never share a row. A hub dataset has its own train and test splits; one local file (or the
same split named for both) has one set of rows, which is shuffled with ``seed`` and cut into disjoint parts:
``n_eval`` rows for eval, then ``n_train`` for train (proportionally fewer of each if the file is short).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from datasets import Dataset, DatasetDict

from mpo.data.hub import load_pairs, load_prompts
from mpo.infra.errors import DataError

log = logging.getLogger(__name__)


def one_set_of_rows(source: str, train_split: str, eval_split: str) -> bool:
    """Whether train and eval would read the same rows: a single local file, or one split named twice."""
    return Path(source).expanduser().is_file() or train_split == eval_split


def disjoint_parts(n_rows: int, n_train: int, n_eval: int, seed: int, source: str) -> tuple[list[int], list[int]]:
    """Row indices for train and eval, disjoint, drawn with ``seed``."""
    if n_rows < 2:
        raise DataError(f"{source} has {n_rows} usable row(s): train and eval need at least one each")
    if n_train + n_eval > n_rows:
        n_eval = min(max(1, round(n_rows * n_eval / (n_train + n_eval))), n_rows - 1)
        n_train = n_rows - n_eval
        log.warning("%s has %d usable rows, fewer than n_train + n_eval: using %d for train and %d for eval",
                    source, n_rows, n_train, n_eval)
    order = random.Random(seed).sample(range(n_rows), n_rows)
    return order[n_eval : n_eval + n_train], order[:n_eval]


def _prompt_split(texts: list[str], prompt_words: int) -> Dataset:
    return Dataset.from_dict({"text": texts, "prompt": [" ".join(t.split()[:prompt_words]) for t in texts]})


def prompt_dataset(source: str, text_column: str, prompt_words: int, n_train: int, n_eval: int, seed: int = 0,
                   train_split: str = "train", eval_split: str = "test", **load_kwargs) -> DatasetDict:
    """Prompts are the openings of a text column's entries (IMDb: the first words of each review)."""
    if one_set_of_rows(source, train_split, eval_split):
        texts = list(dict.fromkeys(load_prompts(source, train_split, text_column, None, None, seed, **load_kwargs)))
        train, held_out = disjoint_parts(len(texts), n_train, n_eval, seed, source)
        return DatasetDict(train=_prompt_split([texts[i] for i in train], prompt_words),
                           eval=_prompt_split([texts[i] for i in held_out], prompt_words))

    def split(name: str, n: int) -> Dataset:
        return _prompt_split(load_prompts(source, name, text_column, None, n, seed, **load_kwargs), prompt_words)

    return DatasetDict(train=split(train_split, n_train), eval=split(eval_split, n_eval))


def pairs_prompt_dataset(source: str, format: str, n_train: int, n_eval: int, seed: int = 0,
                         train_split: str = "train", eval_split: str = "test", **load_kwargs) -> DatasetDict:
    """Prompts of a preference dataset (HH-RLHF dialogues up to the last assistant turn); SFT text is the
    prompt followed by the chosen response."""

    def rows(pairs: Dataset) -> Dataset:
        return Dataset.from_dict({"prompt": pairs["prompt"],
                                  "text": [p + c for p, c in zip(pairs["prompt"], pairs["chosen"])]})

    if one_set_of_rows(source, train_split, eval_split):
        pairs = load_pairs(source, train_split, format, None, seed, **load_kwargs)
        train, held_out = disjoint_parts(len(pairs), n_train, n_eval, seed, source)
        return DatasetDict(train=rows(pairs.select(train)), eval=rows(pairs.select(held_out)))
    return DatasetDict(train=rows(load_pairs(source, train_split, format, n_train, seed, **load_kwargs)),
                       eval=rows(load_pairs(source, eval_split, format, n_eval, seed, **load_kwargs)))
