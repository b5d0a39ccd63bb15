"""Cost-scaling study: MPO's compute against MaxMin-RLHF's as the policy grows (``python -m mpo.studies.bench --study
cost-scaling``).

The paper (Wang et al., ICML 2025) says MPO reaches MaxMin-RLHF's quality at about a quarter of its compute. At
each policy size this runs, in this one process and on one fresh artifact store per size, the single-objective
policies, MPO and MaxMin-RLHF on ``experiment=smoke`` at one training budget, and reads every number from the
runs' own results.json (CPU-seconds as the stages recorded them, `mpo.infra.costs`):

- ``MPO own / MaxMin own``: MPO's weight estimate and solve against MaxMin-RLHF's reward models and RL: the
  paper's setting, where the single-objective policies already exist;
- ``(MPO own + singles) / MaxMin own``: MPO paying for its K DPO policies too.

Beside them, a check that nothing goes uncounted: the "residual" CPU time, each run's CPU-seconds measured
around ``run()`` (process.json) less every stage it recorded (the method's work outside artifacts is already
charged to its own cost as the stages ``reward_normalization`` and ``unstaged``), and the given-singles ratio
with it included. Evaluation (MPO's sequence-level decoding samples ``method.num_candidates`` token-level
draws per response) is reported beside, in no ratio. Min win-rates say whether quality held, but a smoke-sized
evaluation is noisy. The ratios depend on the study's sizes of work (budget, MPO's estimator, MaxMin-RLHF's
``method.rl.n_prompts`` x ``normalization_samples``), all recorded in the JSON's settings and run configs.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# GPT-2 shapes of about 0.3 M, 3 M and 30 M parameters at a 1,024-token vocabulary (counts are measured, not these)
SIZES = {
    "0.3M": dict(n_embd=96, n_layer=2, n_head=4),
    "3M": dict(n_embd=192, n_layer=6, n_head=4),
    "30M": dict(n_embd=512, n_layer=9, n_head=8),
}
METHODS = ("single_0", "single_1", "mpo", "maxmin_rlhf")
OPTIONAL_METHODS = ("morlhf",)
PAPER_RATIO = 0.25  # MPO's compute as a fraction of MaxMin-RLHF's, as the paper reports it
PROCESS = "process.json"  # the study's measure of one whole run, beside its results.json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    study = parser.add_argument_group("cost-scaling study (--study cost-scaling)")
    study.add_argument("--sizes", nargs="+", default=list(SIZES), metavar="SIZE",
                       help=f"policy sizes: {', '.join(SIZES)}, or EMBDxLAYERSxHEADS (e.g. 768x12x12 on a GPU) "
                            "(default: %(default)s)")
    study.add_argument("--vocab", type=int, default=1024,
                       help="tokenizer vocabulary the base models are built with (default: %(default)s)")
    study.add_argument("--morlhf", action="store_true", help="also run MORLHF (RL on the weighted reward sum)")
    study.add_argument("--budget-steps", type=int, default=8,
                       help="trainer.budget.steps of every trained stage (default: %(default)s)")
    study.add_argument("--budget-sequences", type=int, default=16,
                       help="trainer.budget.sequences_per_step (default: %(default)s)")
    study.add_argument("--sft-steps", type=int, default=40,
                       help="trainer.sft.max_steps: shared by all methods, in no ratio; fewer can leave a small "
                            "reference too poor to label preference pairs (default: %(default)s, the smoke preset's)")
    study.add_argument("--mpo-prompts", type=int, default=32,
                       help="MPO's method.estimator.n_prompts (default: %(default)s)")
    study.add_argument("--mpo-samples", type=int, default=8,
                       help="MPO's method.estimator.samples_per_prompt (default: %(default)s)")
    study.add_argument("--mpo-candidates", type=int, default=None,
                       help="MPO's method.num_candidates for sequence-level decoding: evaluation cost only "
                            "(default: the config's)")
    study.add_argument("--eval-prompts", type=int, default=16, help="eval.n_prompts (default: %(default)s)")
    study.add_argument("--eval-samples", type=int, default=2, help="eval.samples_per_prompt (default: %(default)s)")
    study.add_argument("--out-dir", type=Path, default=None,
                       help="one fresh artifact store per size under it, and the report "
                            "(default: outputs/bench/cost-scaling/<time>); --out moves the JSON")
    study.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="extra_overrides",
                       help="more Hydra overrides for every run (e.g. eval.bootstrap=100)")


# ------------------------------------------------------------------------------------------------ configs
def architecture(size: str) -> dict[str, int]:
    """A named size or ``EMBDxLAYERSxHEADS``."""
    if size in SIZES:
        return SIZES[size]
    try:
        n_embd, n_layer, n_head = (int(part) for part in size.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--sizes {size}: use one of {', '.join(SIZES)} or EMBDxLAYERSxHEADS, e.g. 768x12x12")
    return dict(n_embd=n_embd, n_layer=n_layer, n_head=n_head)


def overrides(size: str, method: str, args: argparse.Namespace, store: Path, run_dir: Path) -> list[str]:
    """The Hydra overrides of one run: ``experiment=smoke`` at the study's size, budget and evaluation."""
    shape = architecture(size)
    out = ["experiment=smoke", f"method={method}", "logger=none", f"threads={args.threads}",
           f"paths.root={store}", f"paths.output_dir={run_dir}",
           f"policy.vocab_size={args.vocab}", "policy.architecture.n_positions=128",
           *(f"policy.architecture.{key}={value}" for key, value in shape.items()),
           f"trainer.budget.steps={args.budget_steps}", f"trainer.budget.sequences_per_step={args.budget_sequences}",
           f"trainer.sft.max_steps={args.sft_steps}",
           f"eval.n_prompts={args.eval_prompts}", f"eval.samples_per_prompt={args.eval_samples}"]
    if method == "mpo":
        out += [f"method.estimator.n_prompts={args.mpo_prompts}",
                f"method.estimator.samples_per_prompt={args.mpo_samples}"]
        out += [f"method.num_candidates={args.mpo_candidates}"] if args.mpo_candidates is not None else []
    return [*out, *args.extra_overrides]


def compose(overrides: Sequence[str]):
    """The run's config, composed from the repository's conf/ as `mpo.run` would (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mpo.config.dirs import CONF_DIR
    import mpo.config.schema  # noqa: F401  (registers the schemas)

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


# ------------------------------------------------------------------------------------------------ running
def run_size(size: str, methods: Sequence[str], args: argparse.Namespace, out_dir: Path) -> dict[str, Path]:
    """Every method at one size on a fresh store under ``out_dir/size``: each run's directory (results.json, and
    process.json with the whole run's wall and CPU seconds, to find what no stage recorded)."""
    from mpo.experiment import run
    from mpo.infra.costs import cpu_seconds
    from mpo.store.artifacts import write_json

    store = out_dir / size
    if (store / "artifacts").exists():
        raise SystemExit(f"{store / 'artifacts'} exists: the study builds every stage afresh; use a new --out-dir")
    run_dirs = {}
    for method in methods:
        run_dir = store / "runs" / method
        cfg = compose(overrides(size, method, args, store, run_dir))
        wall0, cpu0 = time.perf_counter(), cpu_seconds()
        results = run(cfg)
        process = {"seconds": time.perf_counter() - wall0, "cpu_seconds": cpu_seconds() - cpu0}
        write_json(run_dir / PROCESS, process)
        own = results["cost"]["split"]["own"]
        print(f"  {size} {method}: own {own['cpu_seconds']:.1f} CPU-s, min win-rate {results['min_win_rate']:.3f} "
              f"(run {process['cpu_seconds']:.0f} CPU-s, {process['seconds']:.0f} s)", flush=True)
        run_dirs[method] = run_dir
    return run_dirs


def load_results(run_dirs: Mapping[str, Path]) -> dict[str, dict]:
    """Each method's results.json, with the study's measure of the whole run under ``"process"``."""
    out = {}
    for method, run_dir in run_dirs.items():
        results = json.loads((Path(run_dir) / "results.json").read_text())
        results["process"] = json.loads((Path(run_dir) / PROCESS).read_text())
        out[method] = results
    return out


def parameters(results: Mapping[str, Any], store: Path) -> int:
    """The built base model's parameter count, from its artifact's manifest in the store."""
    manifest = json.loads((store / results["cost"]["base_model"]["artifact"] / "manifest.json").read_text())
    return int(manifest["info"]["parameters"])


# ------------------------------------------------------------------------------------------------ the numbers
def _cost(results: Mapping[str, Any], category: str) -> dict[str, float]:
    part = results["cost"]["split"][category]
    return {"cpu_seconds": float(part["cpu_seconds"]), "seconds": float(part["seconds"]),
            "stages": list(part["stages"])}


def residual(results: Mapping[str, Any]) -> dict[str, float]:
    """What the run spent outside every stage it recorded (loading the reference for evaluation, writing
    results): small once methods charge their own work outside artifacts (`mpo.experiment.build_method`)."""
    from mpo.infra.costs import stages

    built = [entry for entry in stages(results["cost"]).values() if not entry.get("reused")]
    return {key: float(results["process"][key]) - sum(entry.get(key) or 0.0 for entry in built)
            for key in ("cpu_seconds", "seconds")}


def size_row(size: str, params: int, runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One size's costs, ratios (CPU-seconds, and wall seconds beside) and min win-rates, from its results."""
    mpo, maxmin = runs["mpo"], runs["maxmin_rlhf"]
    mpo_own, singles, maxmin_own = _cost(mpo, "own"), _cost(mpo, "singles"), _cost(maxmin, "own")
    ratio = lambda key, extra=0.0: (mpo_own[key] + extra) / maxmin_own[key]  # noqa: E731
    row = {
        "size": size, "parameters": params,
        "mpo_own": mpo_own, "mpo_singles": singles, "maxmin_own": maxmin_own,
        "ratio_given_singles": ratio("cpu_seconds"),
        "ratio_with_singles": ratio("cpu_seconds", singles["cpu_seconds"]),
        "wall_ratio_given_singles": ratio("seconds"),
        "wall_ratio_with_singles": ratio("seconds", singles["seconds"]),
        "evaluation": {m: _cost(r, "evaluation") for m, r in runs.items()},
        "own": {m: _cost(r, "own") for m, r in runs.items()},
        "min_win_rate": {m: {"mean": r["min_win_rate"], **r["min_win_rate_ci"]} for m, r in runs.items()},
    }
    if all("process" in r for r in (mpo, maxmin)):
        row["residual"] = {m: residual(r) for m, r in runs.items()}
        extra = row["residual"]["mpo"]["cpu_seconds"], row["residual"]["maxmin_rlhf"]["cpu_seconds"]
        row["ratio_given_singles_with_residual"] = (mpo_own["cpu_seconds"] + extra[0]) / (
            maxmin_own["cpu_seconds"] + extra[1])
    return row


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table: CPU-seconds per part, the two ratios against the paper's ~0.25, what no stage recorded,
    evaluation, and min win-rates."""
    head = ["size", "params", "MPO own CPU-s", "MPO singles CPU-s", "MaxMin own CPU-s", "MPO/MaxMin (given singles)",
            "(MPO+singles)/MaxMin", "residual CPU-s MPO / MaxMin", "MPO/MaxMin incl. residual",
            "eval CPU-s MPO / MaxMin", "min win-rate MPO / MaxMin / singles"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        wins, extra = r["min_win_rate"], r.get("residual")
        singles = " ".join(f"{wins[m]['mean']:.2f}" for m in sorted(wins) if m.startswith("single"))
        cells = [r["size"], f"{r['parameters'] / 1e6:.2f} M", f"{r['mpo_own']['cpu_seconds']:.1f}",
                 f"{r['mpo_singles']['cpu_seconds']:.1f}", f"{r['maxmin_own']['cpu_seconds']:.1f}",
                 f"{r['ratio_given_singles']:.3f}", f"{r['ratio_with_singles']:.3f}",
                 f"{extra['mpo']['cpu_seconds']:.1f} / {extra['maxmin_rlhf']['cpu_seconds']:.1f}" if extra else "n/a",
                 f"{r['ratio_given_singles_with_residual']:.3f}" if extra else "n/a",
                 f"{r['evaluation']['mpo']['cpu_seconds']:.1f} / {r['evaluation']['maxmin_rlhf']['cpu_seconds']:.1f}",
                 f"{wins['mpo']['mean']:.2f} / {wins['maxmin_rlhf']['mean']:.2f} / {singles}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nPaper: MPO at about {PAPER_RATIO} of MaxMin-RLHF's compute. Ratios are CPU-seconds that the stages "
                 "recorded in this process (results.json cost.split, whose own part includes each method's work outside "
                 "artifacts). 'Residual' is the rest of each run's CPU time, measured around run(). Min win-rates come from a smoke-sized evaluation: noisy.")
    return "\n".join(lines)


def plot(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Both ratios against the parameter count (log x), with the paper's 0.25 as a labelled line."""
    from mpo.analysis.plots import new_figure

    fig = new_figure(6.5, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    params = [r["parameters"] for r in rows]
    ax.plot(params, [r["ratio_given_singles"] for r in rows], "o-", label="MPO own / MaxMin-RLHF own (singles given)")
    ax.plot(params, [r["ratio_with_singles"] for r in rows], "s-", label="(MPO own + K DPO singles) / MaxMin-RLHF own")
    if all("ratio_given_singles_with_residual" in r for r in rows):
        ax.plot(params, [r["ratio_given_singles_with_residual"] for r in rows], "^:",
                label="given singles, each run's residual CPU time included")
    ax.axhline(PAPER_RATIO, color="gray", linestyle="--", label=f"paper: {PAPER_RATIO} (Wang et al. 2025)")
    ax.text(0.01, PAPER_RATIO, f" paper's ~{PAPER_RATIO}", transform=ax.get_yaxis_transform(), va="bottom",
            color="gray", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("policy parameters")
    ax.set_ylabel("compute ratio (CPU-seconds)")
    ax.set_ylim(bottom=0)
    ax.set_title("MPO vs MaxMin-RLHF compute as the policy grows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


# ------------------------------------------------------------------------------------------------ entry
def run_study(args: argparse.Namespace) -> dict[str, Any]:
    """Every size in turn, then the table, JSON and plot under ``--out-dir``."""
    import torch

    out_dir = args.out_dir or Path("outputs/bench/cost-scaling") / time.strftime("%Y-%m-%d_%H-%M-%S")
    methods = [*METHODS, *(OPTIONAL_METHODS if args.morlhf else ())]
    threads_before = torch.get_num_threads()  # each run sets the process's torch threads
    rows, run_dirs = [], {}
    try:
        for size in args.sizes:
            print(f"cost-scaling: {size} ({', '.join(methods)})", flush=True)
            run_dirs[size] = run_size(size, methods, args, out_dir)
            runs = load_results(run_dirs[size])
            rows.append(size_row(size, parameters(runs["mpo"], out_dir / size / "artifacts"), runs))
    finally:
        torch.set_num_threads(threads_before)
    report = {"study": "cost-scaling", "paper_ratio": PAPER_RATIO, "methods": methods, "sizes": rows,
              "run_dirs": {s: {m: str(d) for m, d in dirs.items()} for s, dirs in run_dirs.items()},
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    report["plot"] = str(plot(rows, out_dir / "cost_scaling.png"))
    json_path = args.out or out_dir / "cost_scaling.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, allow_nan=False))
    print(format_table(rows))
    print(f"wrote {json_path} and {report['plot']}")
    return report
