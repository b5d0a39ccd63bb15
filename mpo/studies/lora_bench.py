"""``python -m mpo.studies.bench --study lora``: the K-adapter mixture on one base against K full models, in one run.

A GPT-2-style model of ~23 M parameters (random weights; only size matters) and K LoRA adapters on it with
random, non-zero B. Three ways to decode the same log-linear mixture (`mpo.models.mixing.LogLinearMixture.generate`,
fixed length: ``min_new_tokens = max_new_tokens``):

- ``full``: K full models, each adapter merged into its own copy of the base (what K full fine-tunes cost);
- ``adapters``: one base, K adapters, all components in one batched forward (`mpo.models.adapters`, what mpo runs);
- ``switching``: one base, K adapters, ``set_adapter`` before each component's own forward (the alternative).

Reported per K, as ratios to ``full`` measured side by side (interleaved repeats, medians):

- decode speed: generated tokens per second (batch × new tokens / wall seconds);
- weight memory: bytes of the parameters and buffers held (every distinct tensor counted once): exact;
- peak memory of loading the variant and decoding once (weights, KV caches, activations, logits): on CPU in a
  fresh process per variant, its peak resident set (``VmHWM``) minus the peak after its imports (so allocator
  reuse across variants cannot hide anything; loading transients count); on CUDA
  ``torch.cuda.max_memory_allocated`` above what was allocated before.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from mpo.models.adapters import AdapterStack, load_merged, point_at_base
from mpo.studies.harness import EOS, interleaved_seconds, make_prompts

MODEL = dict(n_embd=512, n_layer=6, n_head=8, vocab_size=8000, n_positions=256)
VARIANTS = ("full", "adapters", "switching")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("lora study (--study lora)")
    group.add_argument("--lora-rank", type=int, default=16, help="rank of every adapter (on c_attn and c_proj)")


class SwitchingComponent:
    """One adapter of a stack, run alone after making it the active adapter (the slower alternative)."""

    def __init__(self, stack: AdapterStack, name: str):
        self.stack, self.name = stack, name
        self.config, self.device = stack.model.config, stack.model.device

    def eval(self) -> "SwitchingComponent":
        return self

    def __call__(self, **kwargs):
        self.stack.model.set_adapter(self.name)
        return self.stack.model(**kwargs)


def save_models(root: Path, k: int, rank: int) -> list[Path]:
    """A random base and k random adapters on it (B ≠ 0), saved under ``root``; the adapters' paths."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = root / "base"
    GPT2LMHeadModel(GPT2Config(**MODEL, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS)).save_pretrained(base)
    paths = []
    for index in range(k):
        model = get_peft_model(GPT2LMHeadModel.from_pretrained(base), LoraConfig(
            r=rank, lora_alpha=2 * rank, target_modules=["c_attn", "c_proj"], task_type="CAUSAL_LM"))
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, 0.02)
        model.save_pretrained(root / f"adapter_{index}")
        point_at_base(root / f"adapter_{index}", base)
        paths.append(root / f"adapter_{index}")
    return paths


def load_variant(name: str, paths: list[Path], device, dtype) -> list:
    """The K component models of one way of decoding (module docstring)."""
    if name == "full":
        return [load_merged(p).to(device=device, dtype=dtype) for p in paths]
    stack = AdapterStack(paths)
    stack.model.to(device=device, dtype=dtype)
    return stack.components if name == "adapters" else [SwitchingComponent(stack, n) for n in stack.names]


def weight_bytes(models: list) -> int:
    """Bytes of every distinct parameter and buffer the models hold (a shared base counted once)."""
    seen, total = set(), 0
    for model in models:
        module = model.stack.model if hasattr(model, "stack") else model
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                total += tensor.numel() * tensor.element_size()
    return total


def _decode(models: list, args: argparse.Namespace, device) -> None:
    from mpo.models.mixing import LogLinearMixture

    k = len(models)
    prompts = make_prompts(args.batch, args.prompt_len, MODEL["vocab_size"], device)
    LogLinearMixture(models, [1.0 / k] * k).generate(**prompts, max_new_tokens=args.new_tokens,
                                                     min_new_tokens=args.new_tokens, eos_token_id=EOS,
                                                     pad_token_id=EOS, seed=0)


def _peak_rss_mb() -> float:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def _child_peak(name: str, paths: list[Path], args: argparse.Namespace, queue) -> None:
    """In a fresh process: peak resident MB after the imports, then after loading ``name`` and one decode."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(max(1, args.threads))
    baseline = _peak_rss_mb()
    _decode(load_variant(name, paths, torch.device("cpu"), getattr(torch, args.dtype)), args, torch.device("cpu"))
    queue.put((baseline, _peak_rss_mb()))


def peak_memory_mb(name: str, paths: list[Path], args: argparse.Namespace, device) -> float:
    """Peak memory of loading one variant and decoding once, above what was held before (module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        models = load_variant(name, paths, device, getattr(torch, args.dtype))
        _decode(models, args, device)
        torch.cuda.synchronize(device)
        del models
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child_peak, args=(name, paths, args, queue))
    child.start()
    baseline, peak = queue.get()
    child.join()
    return peak - baseline


def run_study(args: argparse.Namespace) -> dict:
    from transformers.utils import logging as hf_logging


    hf_logging.disable_progress_bar()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    rows = {}
    for k in args.ks:
        with tempfile.TemporaryDirectory(prefix="mpo-lora-bench-") as tmp:
            paths = save_models(Path(tmp), k, args.lora_rank)
            peak = {name: peak_memory_mb(name, paths, args, device) for name in VARIANTS}
            variants = {name: load_variant(name, paths, device, dtype) for name in VARIANTS}
        runs = {name: (lambda models=models: _decode(models, args, device)) for name, models in variants.items()}
        times = interleaved_seconds(runs, args.repeats, args.warmup, device)
        tokens = args.batch * args.new_tokens
        row = {name: {"tokens_per_second": tokens / statistics.median(times[name]),
                      "weight_mb": weight_bytes(variants[name]) / 2**20, "peak_mb": peak[name]} for name in VARIANTS}
        for name in VARIANTS:
            row[name]["speed_vs_full"] = statistics.median(f / t for f, t in zip(times["full"], times[name]))
            row[name]["weights_vs_full"] = row[name]["weight_mb"] / row["full"]["weight_mb"]
            row[name]["peak_vs_full"] = row[name]["peak_mb"] / row["full"]["peak_mb"]
        rows[str(k)] = row
        del variants, runs
    results = {"study": "lora", "model": MODEL, "parameters_m": _parameters_m(), "lora_rank": args.lora_rank,
               "device": str(device), "dtype": args.dtype, "torch_threads": torch.get_num_threads(),
               "batch": args.batch, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
               "repeats": args.repeats, "rows": rows}
    print(format_table(results))
    return results


def _parameters_m() -> float:
    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config(**MODEL, bos_token_id=EOS, eos_token_id=EOS))
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 1)


def format_table(results: dict) -> str:
    """The markdown table the README shows."""
    lines = ["| K | decoding | tokens/s | speed vs K full | weights (MB) | vs K full | peak memory (MB) | vs K full |",
             "|---|---|---|---|---|---|---|---|"]
    for k, row in results["rows"].items():
        for name in VARIANTS:
            r = row[name]
            lines.append(f"| {k} | {name} | {r['tokens_per_second']:.0f} | {r['speed_vs_full']:.2f}x | "
                         f"{r['weight_mb']:.1f} | {r['weights_vs_full']:.2f}x | {r['peak_mb']:.0f} | "
                         f"{r['peak_vs_full']:.2f}x |")
    return "\n".join(lines)
