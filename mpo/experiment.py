"""``run(cfg)``: one job = build the method's policy from shared artifacts, evaluate it, write results.json,
then report to W&B. Results are on disk before anything is uploaded; a tracker failure never loses them."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

from hydra.utils import get_method
from omegaconf import DictConfig

from mpo.config.load import load_config
from mpo.config.schema import MIN_EVAL_PROMPTS, Config
from mpo.infra import distributed
from mpo.infra.costs import Meter, stage_entry, summary as cost_summary
from mpo.infra.devices import assign_gpu
from mpo.infra.errors import ConfigError, DataError
from mpo.infra.hydra_job import job_state, parallel_jobs
from mpo.models.sampling import Samples
from mpo.stages.context import RunContext, config_data, decoding, load_policy
from mpo.stages.evaluation import evaluate, objective_correlations, reference_seed, score_all
from mpo.stages.pipeline import policy_samples, reference_policy, task_data
from mpo.store.artifacts import ArtifactStore, json_safe, write_results

log = logging.getLogger(__name__)


def quiet_libraries() -> None:
    """Keep the console for our progress: no per-map bars from datasets, no transformers chatter."""
    import datasets
    import transformers

    # we pass gradient_checkpointing=False on purpose (TRL 1.16 defaults it on): one warning per stage otherwise
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)
    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def start_tracker(config: Config, run_dir: Path, job: dict[str, Any]):
    from mpo.infra.tracking import Tracker, TrackingConfig, sweep_group

    logger = config.logger
    tracking = TrackingConfig(backend=logger.backend, project=logger.project, entity=logger.entity, mode=logger.mode,
                              group=logger.group, tags=list(logger.tags), dir=str(run_dir),
                              init_timeout=logger.init_timeout)
    group = logger.group or sweep_group(config.experiment_name, job["sweep"])
    keys = [o for o in job["overrides"] if not o.startswith(("method=", "logger", "paths", "hydra"))]
    name = "-".join([config.method.name, *keys])[:120]
    # the validated config, as the run used it: `single_0` logs method.objective=sentiment, budgets their steps
    run_config = json_safe(dataclasses.asdict(config))
    return Tracker.start(tracking, run_config=run_config, name=name, job_type=config.method.name, group=group,
                         run_dir=run_dir)


def torch_threads(threads: int, jobs: int, cpus: int) -> int:
    """``threads`` if set; else, when ``jobs`` run at once, the cores split between them (so their torch threads
    do not fight over the same cores); else 0: torch's own default."""
    if threads > 0:
        return threads
    return max(1, cpus // jobs) if jobs > 1 else 0


def reference_evaluation(ctx: RunContext) -> tuple[Samples, dict]:
    """The reference's responses to the held-out prompts (an artifact shared by every method) and their scores."""
    data, _ = task_data(ctx)
    prompts = data["eval"]["prompt"][: ctx.cfg.eval.n_prompts]
    if len(prompts) < MIN_EVAL_PROMPTS:  # eval.n_prompts is checked at composition; the split may hold fewer
        raise DataError(f"the task's eval split holds {len(prompts)} prompt(s): the confidence intervals resample "
                        f"prompts and need at least {MIN_EVAL_PROMPTS}; give the task more held-out prompts")
    reference = reference_policy(ctx)
    samples, _ = policy_samples(ctx, reference, prompts, ctx.cfg.eval.samples_per_prompt,
                                reference_seed(decoding(ctx)), "eval_reference", stage="reference_samples", shared=True)
    return samples, score_all(ctx.scorers, samples)


def check_ranks(config: Config) -> None:
    """What a multi-process job (torchrun, accelerate launch) cannot do, refused before any rank starts work."""
    if distributed.world_size() == 1:
        return
    if job_state()["sweep"] is not None:
        raise ConfigError(f"WORLD_SIZE={distributed.world_size()} with -m: a multi-process launch runs one job; launch one "
                          "torchrun per job, or sweep with one process per job (hydra/launcher=local_parallel)")
    if getattr(config.method, "em", False):
        raise ConfigError("maxmin_rlhf method.em=true alternates assignments and reward-model fits that only one "
                          "process can run: launch it without torchrun/accelerate (WORLD_SIZE=1)")


def run(cfg: DictConfig) -> dict[str, Any]:
    config = load_config(cfg)  # every check that needs no model runs here, before anything is loaded
    check_ranks(config)
    distributed.init(config.distributed_timeout)
    distributed.quiet_other_ranks()
    quiet_libraries()
    threads = torch_threads(config.threads, parallel_jobs(), os.cpu_count() or 1)
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    run_dir = Path(config.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    job = job_state()
    if config.device == "auto" and distributed.world_size() == 1:  # a parallel sweep's worker takes a GPU of its own
        assign_gpu(config.paths.artifacts, parallel_jobs(), job["job_num"])
    wall0 = time.perf_counter()
    tracker = start_tracker(config, run_dir, job)
    try:
        ctx = RunContext(config, ArtifactStore(config.paths.artifacts, lock_timeout=config.lock_timeout), tracker)
        reference, reference_scores = reference_evaluation(ctx)
        output = build_method(ctx)
        reference_model = reference_policy(ctx)  # every rank asks the store in the same order (mpo.infra.distributed)
        with ctx.charged_to("evaluation"), ctx.timed("evaluation"):
            metrics = evaluate(output.policy, reference, reference_scores, ctx.scorers, decoding(ctx),
                               resamples=config.eval.bootstrap, level=config.eval.ci,
                               n_show=config.eval.n_show_samples, shard=True,
                               reference_policy=load_policy(ctx, reference_model) if distributed.is_main() else None)
        if metrics is None:  # a rank other than 0 sampled its share
            return other_rank_done(tracker)
        results = assemble(config, output, metrics, ctx.costs, job, run_dir, tracker.run_path)
        # how much the objectives conflict for the reference policy (its own held-out samples)
        results["reference_correlation"] = objective_correlations(reference_scores)
        results["cost"]["run"] = {"seconds": time.perf_counter() - wall0}
        results = json_safe(results)  # a NaN (say, the correlation of a constant score) is null, never bare NaN
        write_results(results, run_dir / "results.json", config.paths.artifacts)
        log.info("wrote %s: min win-rate %.3f (%s)", run_dir / "results.json", results["min_win_rate"],
                 results["min_win_rate_objective"])
        tracker.log_results(results)
        tracker.finish(0)
        distributed.broadcast(results, "sending the results to the other ranks")
        distributed.close()
        print(run_summary(results), flush=True)  # after W&B's footer, so it is the run's last word
        return results
    except BaseException:
        tracker.finish(1)
        raise


def other_rank_done(tracker) -> dict[str, Any]:
    """A rank other than 0 after the method is built: rank 0 evaluates and writes results.json; this rank waits
    for its results (so every rank returns the same value to Hydra) and leaves."""
    results = distributed.broadcast(None, "waiting for rank 0's evaluation and results.json")
    tracker.finish(0)
    distributed.close()
    return results


def _ci(entry: dict, low: str = "ci_low", high: str = "ci_high", digits: int = 3) -> str:
    return f"[{entry[low]:.{digits}f}, {entry[high]:.{digits}f}]" if entry.get(low) is not None else ""


def run_summary(results: dict) -> str:
    """What the run found, in a few lines: per-objective win-rate with CI, the min, λ, KL and the cost."""
    lines = [f"== {results['label']} on {results['task']} (β={results['beta']:g}, seed {results['seed']}) =="]
    for objective in results["objectives"]:
        win = results["win_rate"][objective]
        lines.append(f"  win-rate {objective:<14} {win['mean']:.3f} {_ci(win)}")
    ci = results.get("min_win_rate_ci") or {}
    lines.append(f"  min win-rate {'':<10} {results['min_win_rate']:.3f} {_ci(ci, 'low', 'high')} "
                 f"({results['min_win_rate_objective']})")
    if results.get("weights"):
        lines.append("  weights " + ", ".join(f"{k} {v:.3f}" for k, v in results["weights"].items())
                     + (f" ({results['weights_source']})" if results.get("weights_source") else ""))
    kl = results.get("kl") or {}
    if kl.get("mean") is not None:
        lines.append(f"  KL to reference {kl['mean']:.2f} nats {_ci(kl, digits=2)}")
    split = results["cost"]["split"]
    lines.append("  CPU-s: " + ", ".join(f"{part} {split[part]['cpu_seconds']:.0f}" for part in split)
                 + f"; results: {Path(results['run_dir']) / 'results.json'}")
    return "\n".join(lines)


def build_method(ctx: RunContext):
    """The method's policy; what its call spent outside every recorded stage (loading models, scoring done in
    memory) is charged to its own cost as the stage ``unstaged``, so no work goes uncounted."""
    before = set(ctx.costs)
    meter = Meter()
    output = get_method(ctx.cfg.method._target_)(ctx, ctx.cfg.method)
    built = [entry for name, entry in ctx.costs.items() if name not in before and not entry["reused"]]
    spent = meter.reading()
    for key in ("seconds", "cpu_seconds"):  # less what the stages built inside recorded themselves
        spent[key] = max(0.0, spent[key] - sum(e.get(key, 0.0) for e in built))
    ctx.costs["unstaged"] = stage_entry(spent, "own")
    return output


def assemble(config: Config, output, metrics: dict, costs: dict, job: dict, run_dir: Path, wandb_path) -> dict:
    return {
        "method": config.method.name,
        "label": output.label,
        "task": config.task.name,
        "policy": config.policy.name,
        "seed": config.seed,
        "beta": config.task.beta,
        "objectives": list(config.task.objectives),
        "weights": output.weights,
        "weights_source": output.weights_source,
        **{k: metrics[k] for k in ("reward", "reward_reference", "reward_delta", "win_rate", "min_win_rate",
                                   "min_win_rate_ci", "min_win_rate_objective", "kl", "mean_response_words",
                                   "per_prompt")},
        "singles": getattr(config.method, "singles", None),
        "budget": config_data(config.trainer.budget),
        "cost": cost_summary(costs),
        "method_info": output.info,
        "method_config": config_data(config.method),
        "samples": metrics["samples"],
        "overrides": job["overrides"],
        "job_num": job["job_num"],
        "run_dir": str(run_dir),
        "wandb": wandb_path,
    }
