"""The one reader of preference-pair columns: what a preference trainer (DPO, a reward model) is given of a pairs
dataset, and nothing else (an extra column such as ``margin`` would silently change TRL's loss)."""

from __future__ import annotations

from datasets import Dataset

TEXT_COLUMNS = ("prompt", "chosen", "rejected")
# the sampled token ids, where the pairs were labelled from the reference's own samples
ID_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


def has_token_ids(pairs: Dataset) -> bool:
    return all(c in pairs.column_names for c in ID_COLUMNS)


def pair_columns(pairs: Dataset, *, token_ids: bool = True) -> Dataset:
    """The text columns (each required), and with ``token_ids`` the sampled token ids the pairs have."""
    missing = [c for c in TEXT_COLUMNS if c not in pairs.column_names]
    if missing:
        raise ValueError(f"preference pairs need columns {TEXT_COLUMNS}; missing {missing}")
    ids = [c for c in ID_COLUMNS if c in pairs.column_names] if token_ids else []
    return pairs.select_columns([*TEXT_COLUMNS, *ids])
