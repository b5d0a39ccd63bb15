"""What the benchmarks share: timing on CPU or GPU (synchronised), runs interleaved within each repeat so a load
change on a shared machine hits both sides of a ratio, and random left-padded prompts for toy policies."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

EOS = 0  # the toy policies' end-of-sequence (and padding) token


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved_seconds(fns: dict[str, Callable[[], object]], repeats: int, warmup: int,
                        device: torch.device) -> dict[str, list[float]]:
    """Wall times of every ``fns`` entry, run in turn within each repeat after ``warmup`` untimed rounds.

    Interleaving puts the runs that a ratio compares side by side in time, so a load change on a shared
    machine hits both sides of the ratio instead of one.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, device))
    return times


def make_prompts(batch: int, prompt_len: int, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random left-padded prompts, lengths between half and all of ``prompt_len``."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, vocab, (batch, prompt_len), generator=generator)
    lengths = torch.randint(max(1, prompt_len // 2), prompt_len + 1, (batch,), generator=generator)
    attention_mask = (torch.arange(prompt_len) >= prompt_len - lengths[:, None]).long()
    input_ids = input_ids.masked_fill(attention_mask == 0, EOS)
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
