"""Benchmarks of the two cheap parts of MPO, as ratios measured in one process run (never absolute
times asserted in tests).

1. BSMD: wall time of `mpo.core.bsmd.solve_weights` for 1,000 steps on a cached random ``log_ratios`` tensor
   (target: under a second — every step is a few tensor ops, the scoring that built the tensor is the cost).
2. MPO's weight estimate end to end (sampling, scoring under K+1 models, exact solve): the defensive
   mixture proposal (π_ref and every π_k; optionally a second round from the token-level mixture) against
   the paper's π_ref-only proposal at the same number of samples, as a ratio (target for K = 2: ≤ 2.5x).
3. Mixture decoding: `LogLinearMixture.generate` with K policies over one policy's HF ``generate`` on the
   same prompts, both sampling with the same length (``min_new_tokens`` = ``max_new_tokens``), reported as a
   ratio (target: at most 1.1·K — K forward passes per token and little else).

    python -m mpo.studies.bench                       # tiny GPT-2 policies, CPU or the GPU if there is one
    python -m mpo.studies.bench --model-size small --batch 64 --out bench.json

``--study cost-scaling`` runs a different study instead (`mpo.studies.cost_scaling`): at policy sizes of about 0.3 M,
3 M and 30 M parameters, the single-objective policies, MPO and MaxMin-RLHF end to end (``experiment=smoke`` at
one small budget, one fresh artifact store per size), and MPO's own CPU-seconds over MaxMin-RLHF's (given the
single policies, and with them) against the paper's ~0.25: a markdown table, ``cost_scaling.json`` and
``cost_scaling.png`` under ``--out-dir``. About 20 minutes on 2 CPU cores with the defaults; ``--sizes`` takes
``EMBDxLAYERSxHEADS`` shapes too (bigger ones on a GPU).

    python -m mpo.studies.bench --study cost-scaling --out-dir outputs/bench/cost-scaling
    python -m mpo.studies.bench --study cost-scaling --sizes 0.3M 3M --budget-steps 4

``--study lora`` (`mpo.studies.lora_bench`): decode speed and memory of the K-adapter mixture on one base against K
full models, K = 2, 3 (``--ks``), on a ~23 M-parameter GPT-2-style model; a markdown table.

    python -m mpo.studies.bench --study lora --batch 8 --new-tokens 32 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from mpo.core.proposal import mixture_estimate, reference_estimate, split_counts
from mpo.core.solver import solve_empirical
from mpo.models.mixing import LogLinearMixture
from mpo.models.policies import logprobs_of_ids, right_padded, split_generated
from mpo.studies import cost_scaling, lora_bench
from mpo.studies.harness import EOS, interleaved_seconds, make_prompts, timed

# GPT-2 shapes: "tiny" is what tests use; "small" is GPT-2 small's shape (124M parameters), random weights.
MODEL_SIZES = {
    "tiny": dict(n_embd=64, n_layer=2, n_head=2, vocab_size=1000),
    "small": dict(n_embd=768, n_layer=12, n_head=12, vocab_size=50257),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mpo.studies.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", choices=["micro", "cost-scaling", "lora"], default="micro",
                        help="micro: the three benchmarks below (default); cost-scaling: MPO vs MaxMin-RLHF compute "
                             "at three policy sizes, end to end (mpo.studies.cost_scaling; about 20 minutes on 2 cores); "
                             "lora: K adapters on one base vs K full models (mpo.studies.lora_bench)")
    bsmd = parser.add_argument_group("BSMD")
    bsmd.add_argument("--bsmd-shape", type=int, nargs=3, default=[512, 16, 3], metavar=("N", "M", "K"),
                      help="log_ratios shape: prompts, responses per prompt, objectives")
    bsmd.add_argument("--bsmd-steps", type=int, default=1000)
    bsmd.add_argument("--bsmd-batch-size", type=int, default=None, help="prompts per step (default: all)")
    mix = parser.add_argument_group("mixture decoding")
    mix.add_argument("--model-size", choices=sorted(MODEL_SIZES), default="tiny")
    mix.add_argument("--ks", type=int, nargs="+", default=[2, 3], help="numbers of mixed policies")
    mix.add_argument("--batch", type=int, default=32, help="prompts per generate call")
    mix.add_argument("--prompt-len", type=int, default=16, help="longest prompt (others are left-padded)")
    mix.add_argument("--new-tokens", type=int, default=48)
    mix.add_argument("--dtype", default="float32", help="model dtype, e.g. bfloat16 on a GPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (medians reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; 0 keeps torch's default. One thread by default: on a shared CPU, "
                             "intra-op threads that wait on each other make tiny-op timings swing by 10-100x")
    est = parser.add_argument_group("weight estimate")
    est.add_argument("--est-prompts", type=int, default=32)
    est.add_argument("--est-samples", type=int, default=16, help="samples per prompt, all proposals together")
    est.add_argument("--est-round2", type=int, default=4, help="of those, from the token-level mixture (round 2)")
    parser.add_argument("--skip-bsmd", action="store_true")
    parser.add_argument("--skip-estimator", action="store_true")
    parser.add_argument("--skip-mixture", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers here as JSON")
    cost_scaling.add_arguments(parser)
    lora_bench.add_arguments(parser)
    return parser.parse_args(argv)


def bench_bsmd(args: argparse.Namespace) -> dict:
    try:  # lazy: the mixture half of the benchmark works without mpo.core.bsmd
        from mpo.core.bsmd import solve_weights
    except ImportError as error:
        return {"available": False, "error": str(error)}
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    log_ratios = (torch.randn(*args.bsmd_shape, generator=generator) * 2.0).to(device)  # the cached tensor
    kwargs = dict(batch_size=args.bsmd_batch_size, seed=0)
    solve_weights(log_ratios, steps=10, **kwargs)  # warm-up (allocator, kernels)
    result = None

    def run() -> None:
        nonlocal result
        result = solve_weights(log_ratios, steps=args.bsmd_steps, **kwargs)

    seconds = statistics.median(timed(run, device) for _ in range(max(1, min(args.repeats, 3))))
    return {
        "available": True,
        "shape": list(args.bsmd_shape),
        "steps": args.bsmd_steps,
        "batch_size": args.bsmd_batch_size,
        "seconds": seconds,
        "target_seconds": 1.0,
        "meets_target": seconds < 1.0,
        "weights": [round(float(w), 4) for w in result.weights],
    }


def bench_estimator(args: argparse.Namespace) -> dict:
    """Old (π_ref only) vs new (defensive mixture, and with a second round) weight estimate for K = 2."""
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    models = build_policies(3, args.model_size, device, dtype)  # π_ref, π_1, π_2
    prompts = make_prompts(args.est_prompts, args.prompt_len, models[0].config.vocab_size, device)
    m, extra = args.est_samples, args.est_round2
    runs = {"reference": lambda: _estimate(models, prompts, [m, 0, 0], 0, args.new_tokens),
            "mixture": lambda: _estimate(models, prompts, split_counts(m, 2, 0.25), 0, args.new_tokens),
            "mixture+round2": lambda: _estimate(models, prompts, split_counts(m - extra, 2, 0.25), extra,
                                                args.new_tokens)}
    times = interleaved_seconds(runs, max(1, min(args.repeats, 3)), 1, device)
    ratio = {name: statistics.median(t / r for t, r in zip(times[name], times["reference"])) for name in runs}
    return {"prompts": args.est_prompts, "samples_per_prompt": m, "round2_samples": extra,
            "seconds": {name: statistics.median(t) for name, t in times.items()},
            "ratio_to_reference": ratio, "target_ratio": 2.5,
            "meets_target": ratio["mixture"] <= 2.5 and ratio["mixture+round2"] <= 2.5}


def _draw(model, prompts: dict, n: int, new_tokens: int, mixture: LogLinearMixture | None = None):
    """n samples per prompt from a model (or a mixture) at temperature 1: (prompt ids, completion ids)."""
    batch = {k: v.repeat_interleave(n, 0) for k, v in prompts.items()}
    with torch.inference_mode():
        if mixture is None:
            out = model.generate(**batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens,
                                 eos_token_id=EOS, pad_token_id=EOS)
        else:
            out = mixture.generate(**batch, max_new_tokens=new_tokens, seed=0, eos_token_id=EOS, pad_token_id=EOS)
    prompt_ids, completion_ids, _ = split_generated(out, batch["attention_mask"], EOS)
    return prompt_ids, completion_ids


def _estimate(models, prompts: dict, counts: list[int], round2: int, new_tokens: int) -> None:
    """The MPO weight pipeline on random policies: draw, score under every model, estimate, solve."""
    mixture = LogLinearMixture(models[1:], [0.5, 0.5]) if round2 else None
    sources = [(model, None, n) for model, n in zip(models, counts) if n > 0]
    sources += [(None, mixture, round2)] if round2 else []
    n_prompts, blocks = prompts["input_ids"].shape[0], []
    for model, mix, n in sources:
        prompt_ids, completion_ids = _draw(model, prompts, n, new_tokens, mix)
        columns = [logprobs_of_ids(m, prompt_ids, completion_ids, EOS) for m in models]
        if mixture is not None:
            ids, mask, completion = right_padded(prompt_ids, completion_ids, EOS)
            columns.append(mixture.sequence_logprob(ids.to(mixture.device), mask, completion).double().cpu())
        blocks.append(torch.stack(columns, -1).view(n_prompts, n, len(columns)))  # prompt-major rows
    logprobs = torch.cat(blocks, 1)
    if counts[1] == 0:
        est = reference_estimate(logprobs[..., 0], logprobs[..., 1:3])
    else:
        est = mixture_estimate(logprobs, [*counts, *([round2] if round2 else [])], policies=[1, 2])
    solve_empirical(est.log_ratios, log_weights=est.log_weights)


def build_policies(count: int, size: str, device: torch.device, dtype: torch.dtype) -> list[GPT2LMHeadModel]:
    """``count`` randomly initialised GPT-2 policies of one shape and vocabulary (only speed matters here)."""
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        config = GPT2Config(**MODEL_SIZES[size], n_positions=1024, bos_token_id=EOS, eos_token_id=EOS,
                            pad_token_id=EOS)
        models.append(GPT2LMHeadModel(config).to(device=device, dtype=dtype).eval())
    return models


def bench_mixture(args: argparse.Namespace) -> dict:
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    models = build_policies(max(args.ks), args.model_size, device, dtype)
    prompts = make_prompts(args.batch, args.prompt_len, models[0].config.vocab_size, device)
    length = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, eos_token_id=EOS, pad_token_id=EOS)
    expected_shape = (args.batch, args.prompt_len + args.new_tokens)

    @torch.inference_mode()
    def hf_generate() -> None:
        out = models[0].generate(**prompts, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, **length)
        assert out.shape == expected_shape, out.shape

    def mixture_generate(mixture: LogLinearMixture) -> Callable[[], None]:
        def run() -> None:
            out = mixture.generate(**prompts, temperature=1.0, top_p=1.0, seed=0, **length)
            assert out.shape == expected_shape, out.shape
        return run

    runs = {"hf": hf_generate}
    for k in sorted({1, *args.ks}):  # K = 1 measures our decode loop's own overhead against HF's
        runs[str(k)] = mixture_generate(LogLinearMixture(models[:k], [1.0 / k] * k))
    times = interleaved_seconds(runs, args.repeats, args.warmup, device)
    rows = {}
    for k, mixture_times in times.items():
        if k == "hf":
            continue
        # The median of per-round ratios: each compares two runs made back to back.
        ratio = statistics.median(t / hf for t, hf in zip(mixture_times, times["hf"]))
        rows[k] = {"seconds": statistics.median(mixture_times), "ratio": ratio, "target_ratio": 1.1 * int(k),
                   "meets_target": ratio <= 1.1 * int(k)}
    hf_seconds = statistics.median(times["hf"])
    return {
        "model_size": args.model_size,
        "model_shape": MODEL_SIZES[args.model_size],
        "device": str(device),
        "dtype": args.dtype,
        "batch": args.batch,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "hf_generate_seconds": hf_seconds,
        "repeats": args.repeats,
        "mixture": rows,
    }


def format_table(results: dict) -> str:
    lines = [f"{'benchmark':<44} {'value':>10} {'target':>10}  ok", "-" * 71]
    bsmd = results.get("bsmd")
    if bsmd is not None and bsmd["available"]:
        name = f"BSMD {bsmd['steps']} steps on {bsmd['shape']}"
        lines.append(f"{name:<44} {bsmd['seconds']:>9.3f}s {'< 1s':>10}  {'yes' if bsmd['meets_target'] else 'NO'}")
    elif bsmd is not None:
        lines.append(f"{'BSMD':<44} {'n/a':>10} {'< 1s':>10}  -- ({bsmd['error']})")
    est = results.get("estimator")
    if est is not None:
        for name in ("mixture", "mixture+round2"):
            label = f"weight estimate {name} / reference-only (K=2)"
            ok = "yes" if est["ratio_to_reference"][name] <= 2.5 else "NO"
            lines.append(f"{label:<44} {est['ratio_to_reference'][name]:>9.2f}x {'<= 2.5x':>10}  {ok}")
    mix = results.get("mixture")
    if mix is not None:
        name = f"HF generate ({mix['model_size']}, B={mix['batch']}, T={mix['new_tokens']})"
        lines.append(f"{name:<44} {mix['hf_generate_seconds']:>9.3f}s {'':>10}")
        for k, row in mix["mixture"].items():
            target = f"<= {row['target_ratio']:.1f}x"
            name = f"mixture K={k} / HF generate" + (" (loop overhead)" if k == "1" else "")
            lines.append(f"{name:<44} {row['ratio']:>9.2f}x {target:>10}  {'yes' if row['meets_target'] else 'NO'}")
    return "\n".join(lines)


def micro(args: argparse.Namespace) -> dict:
    """The three benchmarks of the module docstring, printed as one table."""
    results: dict = {"torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if not args.skip_bsmd:
        results["bsmd"] = bench_bsmd(args)
    if not args.skip_estimator:
        results["estimator"] = bench_estimator(args)
    if not args.skip_mixture:
        results["mixture"] = bench_mixture(args)
    print(format_table(results))
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.study == "cost-scaling":
        return cost_scaling.run_study(args)
    threads_before = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        results = lora_bench.run_study(args) if args.study == "lora" else micro(args)
    finally:
        torch.set_num_threads(threads_before)  # main() is also called in-process (tests)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
