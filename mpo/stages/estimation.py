"""MPO's weight-estimation stage: proposal samples, their log-densities under every model, one cached tensor.

For each of N train prompts, samples come from π_ref and from every single policy π_k (counts set by
``method.estimator``; π_ref alone for the paper's estimator), optionally plus a second round from the
token-level mixture at the first round's λ̂. Every sample is scored, on its sampled token ids, under
π_ref, every π_k and (with a second round) the mixture: ``logprobs[N, M, C]``. That tensor is the
artifact; `mpo.core.proposal` turns it into the sample objective the solvers minimise (docs/design.md §1).

Proposal sampling uses the models' own densities (temperature 1, no top-p) and the evaluation's
``max_new_tokens``, whatever the evaluation's decoding is: an importance weight needs the density the
sample was actually drawn from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from mpo.config.schema import EstimatorConfig, MPOMethod
from mpo.core.proposal import Estimate, mixture_estimate, reference_estimate, split_counts
from mpo.infra import distributed
from mpo.infra.console import bar
from mpo.models.policies import Decoding, Generation, encode_prompts, logprobs_of_ids, right_padded, split_generated
from mpo.models.sampling import Samples
from mpo.stages.context import RunContext, decoding, load_components, load_policy
from mpo.stages.pipeline import policy_samples, reference_policy, task_data
from mpo.stages.singles import single_policy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProposalTensor:
    """The cached stage output: log-densities of every sample under every component, and the design."""

    logprobs: torch.Tensor  # [N, M, C] float64; columns: π_ref, π_1..π_K, (token-level mixture)
    counts: list[int]  # samples per prompt from each column's model (0: that model is not a proposal)
    components: list[str]  # column names
    first_weights: list[float] | None  # λ̂ of the first round, where a second round was drawn

    @property
    def n_objectives(self) -> int:
        return len(self.components) - 1 - (self.first_weights is not None)

    def estimate(self) -> Estimate:
        policies = range(1, self.n_objectives + 1)
        if self.counts[0] == sum(self.counts):
            return reference_estimate(self.logprobs[..., 0], self.logprobs[..., 1 : self.n_objectives + 1])
        return mixture_estimate(self.logprobs, self.counts, policies=policies)

    def reference_rows(self) -> torch.Tensor:
        """[N, n_ref, K] log-ratios of the π_ref samples alone (for the paper's self-check E_ref[π_k/π_ref] = 1)."""
        rows = self.logprobs[:, : self.counts[0]]
        return rows[..., 1 : self.n_objectives + 1] - rows[..., :1]


def component_counts(cfg: EstimatorConfig, n_objectives: int) -> list[int]:
    """Per-prompt samples from [π_ref, π_1..π_K] in the first round."""
    first = cfg.samples_per_prompt - cfg.round2_samples
    if cfg.proposal == "reference":
        return [first] + [0] * n_objectives
    return split_counts(first, n_objectives, cfg.reference_share)


def proposal_decoding(ctx: RunContext, component: int) -> Decoding:
    """The model's own density (temperature 1, no top-p), the evaluation's length, a seed per component."""
    base = decoding(ctx, seed_offset=7919 * (component + 1) + 101)
    return Decoding(max_new_tokens=base.max_new_tokens, temperature=1.0, top_p=1.0, seed=base.seed, batch_size=64)


def proposal_tensor(ctx: RunContext, objectives: list[str], cfg: EstimatorConfig, singles: str = "dpo"):
    """Build (or reuse) the log-density tensor for the mixture of ``objectives``' single policies.

    Returns (ProposalTensor, artifact)."""
    reference = reference_policy(ctx)
    policies = [single_policy(ctx, k, by=singles) for k in objectives]
    prompts = task_data(ctx)[0]["train"]["prompt"][: cfg.n_prompts]
    counts = component_counts(cfg, len(objectives))
    draws = []
    for j, (artifact, n) in enumerate(zip([reference, *policies], counts)):
        if n > 0:
            name = "proposal_reference" if j == 0 else f"proposal_{objectives[j - 1]}"
            draws.append(policy_samples(ctx, artifact, prompts, n, proposal_decoding(ctx, j), name, "proposal_samples"))
    spec = {"objectives": objectives, "counts": counts, "round2_samples": cfg.round2_samples,
            "scoring_batch_size": cfg.scoring_batch_size, "seed": ctx.cfg.seed}
    models = [reference, *policies]

    def build(out: Path) -> dict:
        samples = _merge([s for s, _ in draws], prompts)
        logprobs = _score(ctx, models, samples, cfg.scoring_batch_size)
        tensor = ProposalTensor(logprobs, counts, ["reference", *objectives], None)
        if cfg.round2_samples > 0:
            tensor = _second_round(ctx, models, samples, tensor, prompts, cfg)
        torch.save(tensor.__dict__, out / "proposal.pt")
        return _summary(tensor)

    artifact = ctx.build("log_ratios", "log_ratios", spec, build, [*models, *(a for _, a in draws)], collective=True)
    return ProposalTensor(**torch.load(artifact.path / "proposal.pt", weights_only=True)), artifact


def _merge(sets: list[Samples], prompts: list[str]) -> Samples:
    """One sample set, prompt-major: for each prompt the samples of every component in turn."""
    prompt_ids, completion_ids = [], []
    for i in range(len(prompts)):
        for s in sets:
            rows = slice(i * s.n, (i + 1) * s.n)
            prompt_ids += s.prompt_ids[rows]
            completion_ids += s.completion_ids[rows]
    n = sum(s.n for s in sets)
    return Samples(list(prompts), n, [""] * len(prompt_ids), None, prompt_ids, completion_ids)


def _score(ctx: RunContext, models: list, samples: Samples, batch_size: int) -> torch.Tensor:
    """[N, M, len(models)] log π(y|x) of every sample under every model, one model in memory at a time; in a
    multi-process job (the log_ratios stage is collective) each rank scores every world_size-th batch."""
    spans = [(a, a + batch_size) for a in range(0, len(samples.completion_ids), batch_size)]
    columns = []
    for artifact in bar(models, desc="scoring log-densities", unit="model"):
        policy = load_policy(ctx, artifact)
        mine = [logprobs_of_ids(policy.model, samples.prompt_ids[a:b], samples.completion_ids[a:b],
                                policy.tokenizer.pad_token_id, batch_size) for a, b in distributed.shard(spans)]
        columns.append(torch.cat(distributed.gather(mine, "scoring log-ratios")))
        del policy
    return torch.stack(columns, -1).view(len(samples.prompts), samples.n, len(models))


def _second_round(ctx: RunContext, models: list, samples: Samples, tensor: ProposalTensor, prompts: list[str],
                  cfg: EstimatorConfig) -> ProposalTensor:
    """Draw from the token-level mixture at the first round's λ̂ and add it as a proposal component."""
    from mpo.core.solver import solve_empirical
    from mpo.models.mixing import LogLinearMixture

    est = tensor.estimate()
    first = solve_empirical(est.log_ratios, log_weights=est.log_weights).weights
    log.info("second proposal round from the token-level mixture at λ̂ = %s", [round(float(w), 4) for w in first])
    components, tokenizers = load_components(ctx, models[1:])
    mixture = LogLinearMixture(components, first.tolist(), tokenizers=tokenizers)
    drawn = _mixture_samples(mixture, tokenizers[0], prompts, cfg.round2_samples,
                             proposal_decoding(ctx, len(models)))
    extra = Samples(list(prompts), cfg.round2_samples, drawn.responses, drawn.finished, drawn.prompt_ids,
                    drawn.completion_ids)
    merged = _merge([samples, extra], prompts)
    # per prompt, round one's samples then round two's: the order `_merge` gave `merged`
    logprobs = torch.cat([tensor.logprobs, _score(ctx, models, extra, cfg.scoring_batch_size)], 1)
    mix_column = _mixture_logprobs(mixture, merged, tokenizers[0].pad_token_id, cfg.scoring_batch_size)
    logprobs = torch.cat([logprobs, mix_column.view(len(prompts), merged.n, 1)], -1)
    return ProposalTensor(logprobs, [*tensor.counts, cfg.round2_samples],
                          [*tensor.components, "token_mixture"], [float(w) for w in first])


@torch.no_grad()
def _mixture_samples(mixture, tokenizer, prompts: list[str], n: int, dec: Decoding) -> Generation:
    flat = [p for p in prompts for _ in range(n)]
    generator = torch.Generator(device=mixture.device).manual_seed(dec.seed)
    out = Generation([], [], [], [])
    for start in bar(range(0, len(flat), dec.batch_size), desc="sampling the mixture", unit="batch"):
        batch = encode_prompts(tokenizer, flat[start : start + dec.batch_size], mixture.device)
        sequences = mixture.generate(**batch, max_new_tokens=dec.max_new_tokens, temperature=1.0, top_p=1.0,
                                     generator=generator, eos_token_id=tokenizer.eos_token_id,
                                     pad_token_id=tokenizer.pad_token_id)
        out.extend([""] * len(sequences), *split_generated(sequences, batch["attention_mask"], tokenizer.eos_token_id))
    return out


def _mixture_logprobs(mixture, samples: Samples, pad_token_id: int, batch_size: int) -> torch.Tensor:
    """[B] log-density of each sample under the token-level mixture (the round-two proposal)."""
    out = []
    for start in range(0, len(samples.prompt_ids), batch_size):
        ids, mask, completion = right_padded(samples.prompt_ids[start : start + batch_size],
                                             samples.completion_ids[start : start + batch_size], pad_token_id)
        out.append(mixture.sequence_logprob(ids, mask, completion).double().cpu())
    return torch.cat(out)


def _summary(tensor: ProposalTensor) -> dict:
    """Numbers for the stage log: mean log-ratio of each objective on each component's own samples."""
    info: dict[str, float] = {"samples_per_prompt": float(sum(tensor.counts))}
    start = 0
    for name, n in zip(tensor.components, tensor.counts):
        rows = tensor.logprobs[:, start : start + n]
        for k, objective in enumerate(tensor.components[1 : tensor.n_objectives + 1], start=1):
            if n > 0:
                info[f"mean_log_ratio/{objective}/on_{name}"] = float((rows[..., k] - rows[..., 0]).mean())
        start += n
    return info


# ------------------------------------------------------------------------------------------ the solve


def solve(tensor: ProposalTensor, solver: str, bsmd_cfg, *, beta: float, seed: int, min_ess_fraction: float
          ) -> tuple[torch.Tensor, dict]:
    """λ from the cached tensor by the chosen solver, with the other solver and diagnostics beside it.

    Returns (λ, info): info holds both solutions, the certified duality gap, BSMD's distance from the exact
    minimiser, the normalised-reward certificate on λ's support, the ESS at λ and the self-checks.
    """
    from mpo.core import bsmd
    from mpo.core.objective import sampled_problem
    from mpo.core.proposal import effective_sample_size, ess_summary, vertex_check
    from mpo.core.solver import solve_empirical

    est = tensor.estimate()
    exact = solve_empirical(est.log_ratios, log_weights=est.log_weights)
    batch = None if bsmd_cfg.batch_size is None or bsmd_cfg.batch_size >= est.shape[0] else bsmd_cfg.batch_size
    stochastic = bsmd.solve_weights(est.log_ratios, steps=bsmd_cfg.steps, step_size=bsmd_cfg.step_size,
                                    batch_size=batch, seed=seed, log_weights=est.log_weights)
    weights = exact.weights if solver == "exact" else stochastic.weights
    problem = sampled_problem(est.log_ratios, None, est.log_weights)
    grad = bsmd.problem_gradient(problem, weights)
    ess = effective_sample_size(est, weights)
    support = weights > (0 if solver == "exact" else 1e-3)
    info = {
        "estimator": est.proposal,
        "proposal_counts": dict(zip(tensor.components, tensor.counts)),
        "solver": solver,
        "weights_exact": exact.weights.tolist(),
        "weights_bsmd": stochastic.weights.tolist(),
        "objective_exact": exact.value,
        "objective_bsmd": bsmd.problem_objective(problem, stochastic.weights).item(),
        "bsmd_l1_from_exact": float((stochastic.weights - exact.weights).abs().sum()),
        "duality_gap": bsmd.duality_gap(grad, weights),
        "exact_converged": exact.converged,
        "certificate": (beta * grad).tolist(),
        "certificate_spread_on_support": float(beta * (grad[support].max() - grad[support].min())),
        "ess": ess_summary(ess, est.shape[1]),
        "self_check_mixture": vertex_check(est).tolist(),
        "self_check_reference_only": _reference_self_check(tensor),
        "bsmd_trace": _thin([float(v) for v in stochastic.trace]),
        "bsmd_step_size": float(stochastic.step_size),
        "log_ratio_shape": list(est.shape),
    }
    info["bsmd_gap_from_exact"] = info["objective_bsmd"] - exact.value
    if tensor.first_weights is not None:
        info["weights_first_round"] = tensor.first_weights
    _warn_if_unsound(info, min_ess_fraction)
    return weights, info


def _reference_self_check(tensor: ProposalTensor) -> list[float] | None:
    """mean over π_ref samples of exp(ℓ_k) per objective: E_ref[π_k/π_ref] = 1 when π_ref covers π_k."""
    if tensor.counts[0] == 0:
        return None
    rows = tensor.reference_rows()
    return (torch.logsumexp(rows, 1) - torch.log(torch.tensor(float(rows.shape[1])))).exp().mean(0).tolist()


def _thin(trace: list[float], keep: int = 200) -> list[float]:
    return trace[:: max(1, len(trace) // keep)]


def _warn_if_unsound(info: dict, min_ess_fraction: float) -> None:
    if not info["exact_converged"]:
        log.warning("the exact solve stopped at duality gap %.3g (round-off): λ is that close to optimal, no closer",
                    info["duality_gap"])
    ess = info["ess"]
    if ess["median_fraction"] < min_ess_fraction:
        log.warning(
            "MPO weights rest on few samples: median effective sample size %.1f of %d per prompt at λ̂ "
            "(below method.estimator.min_ess_fraction=%g). Fix: raise method.estimator.samples_per_prompt, "
            "use method.estimator.proposal=mixture, or add a second round (method.estimator.round2_samples).",
            ess["median"], int(ess["m"]), min_ess_fraction)
    checks = [c for c in info["self_check_mixture"]]
    if any(not 0.5 < c < 2.0 for c in checks):
        log.warning("MPO's estimate of Σ_y π_k(y|x) is %s (should be 1): the samples do not cover the policies; "
                    "raise method.estimator.samples_per_prompt or use proposal=mixture", [round(c, 3) for c in checks])


def max_min_weights(ctx: RunContext, method: MPOMethod, objectives: list[str]):
    """λ solving the max-min objective from the cached proposal tensor, and what to report about it."""
    tensor, _ = proposal_tensor(ctx, objectives, method.estimator, method.singles)
    with ctx.timed("solve"):
        weights, info = solve(tensor, method.solver, method.bsmd, beta=ctx.cfg.task.beta, seed=ctx.cfg.seed,
                              min_ess_fraction=method.estimator.min_ess_fraction)
    named = lambda values: dict(zip(objectives, map(float, values)))  # noqa: E731
    for key in ("weights_exact", "weights_bsmd", "certificate", "self_check_mixture", "self_check_reference_only"):
        if info.get(key) is not None:
            info[key] = named(info[key])
    log.info("MPO weights (%s solver) %s; duality gap %.2g; BSMD L1 from exact %.4f; median ESS %.1f of %d",
             method.solver, {k: round(v, 4) for k, v in info[f"weights_{method.solver}"].items()},
             info["duality_gap"], info["bsmd_l1_from_exact"], info["ess"]["median"], int(info["ess"]["m"]))
    return weights, info
