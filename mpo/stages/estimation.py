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
    reference, policies, prompts, counts, draws = _proposal_draws(ctx, objectives, cfg, singles)
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


def _proposal_draws(ctx: RunContext, objectives: list[str], cfg: EstimatorConfig, singles: str):
    """(π_ref's artifact, the π_k's, the train prompts, per-component counts, each proposal's (Samples, artifact))."""
    reference = reference_policy(ctx)
    policies = [single_policy(ctx, k, by=singles) for k in objectives]
    prompts = task_data(ctx)[0]["train"]["prompt"][: cfg.n_prompts]
    counts = component_counts(cfg, len(objectives))
    draws = []
    for j, (artifact, n) in enumerate(zip([reference, *policies], counts)):
        if n > 0:
            name = "proposal_reference" if j == 0 else f"proposal_{objectives[j - 1]}"
            draws.append(policy_samples(ctx, artifact, prompts, n, proposal_decoding(ctx, j), name, "proposal_samples"))
    return reference, policies, prompts, counts, draws


def token_normalisers(ctx: RunContext, objectives: list[str], cfg: EstimatorConfig, singles: str = "dpo"
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Build (or reuse) A_λ of every first-round proposal sample at every point of `token_grid`: what the game
    over the token-level family (``method.target=token``, `mpo.core.token_game`) needs beyond the proposal tensor.

    Returns (grid [G, K], log_normalisers [N, M, G]), samples in the proposal tensor's order."""
    from mpo.core.token_game import token_grid
    from mpo.models.mixing import LogLinearMixture

    _, policies, prompts, counts, draws = _proposal_draws(ctx, objectives, cfg, singles)
    grid = token_grid(len(objectives))
    spec = {"objectives": objectives, "counts": counts, "grid": grid.tolist(),
            "scoring_batch_size": cfg.scoring_batch_size, "seed": ctx.cfg.seed}

    def build(out: Path) -> dict:
        samples = _merge([s for s, _ in draws], prompts)
        components, tokenizers = load_components(ctx, policies)
        mixture = LogLinearMixture(components, [1.0 / len(components)] * len(components), tokenizers=tokenizers)
        pad, size = tokenizers[0].pad_token_id, cfg.scoring_batch_size
        spans = [(a, a + size) for a in range(0, len(samples.completion_ids), size)]
        mine = []
        for a, b in bar(distributed.shard(spans), desc="token-level normalisers", unit="batch"):
            ids, mask, completion = right_padded(samples.prompt_ids[a:b], samples.completion_ids[a:b], pad)
            mine.append(mixture.grid_log_normalisers(ids, mask, response_mask=completion, grid=grid).cpu())
        values = torch.cat(distributed.gather(mine, "token-level normalisers"))
        values = values.view(len(prompts), samples.n, grid.shape[0])
        torch.save({"grid": grid, "log_normalisers": values}, out / "normalisers.pt")
        return {"grid_points": float(grid.shape[0]), "mean_log_normaliser": float(values.mean()),
                "min_log_normaliser": float(values.min())}

    artifact = ctx.build("token_normalisers", "token_normalisers", spec, build,
                         [*policies, *(a for _, a in draws)], collective=True)
    saved = torch.load(artifact.path / "normalisers.pt", weights_only=True)
    return saved["grid"], saved["log_normalisers"]


def token_game_draws(ctx: RunContext, objectives: list[str], method: MPOMethod) -> dict[str, torch.Tensor]:
    """Build (or reuse) draws of the token-level mixture q_λ at every grid point, scored under π_ref and every π_k:
    what `mpo.core.token_game.direct_token_game` takes (with π_ref's proposal draws). Returns the saved tensors:
    ``grid`` [G, K], ``log_ratios`` [G, N, n, K], ``log_q_over_ref`` [G, N, n]."""
    from mpo.core.token_game import token_grid
    from mpo.core.winrate import simplex_grid
    from mpo.models.mixing import LogLinearMixture

    cfg = method.token_game
    reference = reference_policy(ctx)
    policies = [single_policy(ctx, k, by=method.singles) for k in objectives]
    prompts = task_data(ctx)[0]["train"]["prompt"][: cfg.n_prompts]
    grid = simplex_grid(2, cfg.grid_steps) if len(objectives) == 2 else token_grid(len(objectives))
    dec = proposal_decoding(ctx, len(objectives) + 2)
    spec = {"objectives": objectives, "grid": grid.tolist(), "n": cfg.samples_per_prompt, "prompts": prompts,
            "decoding": dec.__dict__, "scoring_batch_size": method.estimator.scoring_batch_size}

    def build(out: Path) -> dict:
        components, tokenizers = load_components(ctx, policies)
        pad, size = tokenizers[0].pad_token_id, method.estimator.scoring_batch_size
        sets, log_q = [], []
        for g, lam in enumerate(grid.tolist()):
            mixture = LogLinearMixture(components, lam, tokenizers=tokenizers)
            point = Decoding(max_new_tokens=dec.max_new_tokens, temperature=1.0, top_p=1.0, seed=dec.seed + 7919 * g,
                             batch_size=dec.batch_size)
            drawn = _mixture_samples(mixture, tokenizers[0], prompts, cfg.samples_per_prompt, point)
            samples = Samples(list(prompts), cfg.samples_per_prompt, drawn.responses, drawn.finished,
                              drawn.prompt_ids, drawn.completion_ids)
            sets.append(samples)
            log_q.append(_mixture_logprobs(mixture, samples, pad, size))
        del components
        merged = _merge(sets, prompts)  # per prompt: grid point 0's draws, then 1's, ...
        scored = _score(ctx, [reference, *policies], merged, size)  # [N, G·n, 1+K]
        scored = scored.view(len(prompts), len(sets), cfg.samples_per_prompt, -1).transpose(0, 1)
        log_ratios = scored[..., 1:] - scored[..., :1]
        log_q_over_ref = torch.stack(log_q).view(len(sets), len(prompts), cfg.samples_per_prompt) - scored[..., 0]
        torch.save({"grid": grid, "log_ratios": log_ratios, "log_q_over_ref": log_q_over_ref}, out / "draws.pt")
        lengths = [sum(map(len, s.completion_ids)) / len(s.completion_ids) for s in sets]
        return {"grid_points": float(len(sets)), **{f"mean_length/{i}": v for i, v in enumerate(lengths)}}

    artifact = ctx.build("token_game", "token_game", spec, build, [reference, *policies])
    return torch.load(artifact.path / "draws.pt", weights_only=True)


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


def solve(tensor: ProposalTensor, solver: str, bsmd_cfg, *, beta: float, seed: int, min_ess_fraction: float,
          criterion: str = "regret", token_game: tuple | None = None) -> tuple[torch.Tensor, dict]:
    """λ from the cached tensor by the chosen criterion and solver, with the others and diagnostics beside it.

    Returns (λ, info): info holds both regret solutions (exact and BSMD), the win-rate solution, the estimated
    win-rates against π_ref at each, the certified duality gap, BSMD's distance from the exact minimiser, −F̂ at
    the regret λ̂, the normalised-reward certificate on λ's support, the ESS at λ and the self-checks.
    """
    from mpo.core import bsmd
    from mpo.core.objective import sampled_problem
    from mpo.core.proposal import effective_sample_size, ess_summary, vertex_check
    from mpo.core.solver import solve_empirical
    from mpo.core.winrate import reference_quantiles, solve_win_rate, win_rates

    est = tensor.estimate()
    exact = solve_empirical(est.log_ratios, log_weights=est.log_weights)
    by_win_rate = solve_win_rate(est.log_ratios, log_weights=est.log_weights)
    batch = None if bsmd_cfg.batch_size is None or bsmd_cfg.batch_size >= est.shape[0] else bsmd_cfg.batch_size
    stochastic = bsmd.solve_weights(est.log_ratios, steps=bsmd_cfg.steps, step_size=bsmd_cfg.step_size,
                                    batch_size=batch, seed=seed, log_weights=est.log_weights)
    regret_weights = exact.weights if solver == "exact" else stochastic.weights
    weights = by_win_rate.weights if criterion == "win_rate" else regret_weights
    problem = sampled_problem(est.log_ratios, None, est.log_weights)
    quantiles = reference_quantiles(problem)
    grad = bsmd.problem_gradient(problem, weights)
    ess = effective_sample_size(est, weights)
    support = weights > (1e-3 if solver == "bsmd" and criterion == "regret" else 0)
    info = {
        "estimator": est.proposal,
        "proposal_counts": dict(zip(tensor.components, tensor.counts)),
        "criterion": criterion,
        "solver": solver if criterion == "regret" else "win_rate",
        "weights_exact": exact.weights.tolist(),
        "weights_bsmd": stochastic.weights.tolist(),
        "weights_win_rate": by_win_rate.weights.tolist(),
        # the mixture's win-rate against π_ref under each π_k's ranking, estimated from the cached samples
        "estimated_win_rates": win_rates(problem, quantiles, weights).tolist(),
        "estimated_win_rates_at_regret_weights": win_rates(problem, quantiles, regret_weights).tolist(),
        # −F̂ at the regret λ̂: how far (in nats) the single policies are from agreeing
        "neg_objective": -exact.value,
        "objective_exact": exact.value,
        "objective_bsmd": bsmd.problem_objective(problem, stochastic.weights).item(),
        "bsmd_l1_from_exact": float((stochastic.weights - exact.weights).abs().sum()),
        # the paper's answer, the tail average before BSMD's final face step (mpo.core.bsmd)
        "bsmd_average_l1_from_exact": float((stochastic.average - exact.weights).abs().sum()),
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
    if token_game is not None:
        weights = _token_target(tensor, token_game, criterion, info)
    return weights, info


def _token_target(tensor: ProposalTensor, token_game: tuple, criterion: str, info: dict) -> torch.Tensor:
    """λ from the game over the token-level family (`mpo.core.token_game`), its estimates added to ``info``:
    ``token_game`` is ("direct", draws, n_prompts) or ("reweighted", grid, log_normalisers)."""
    from mpo.core.token_game import direct_token_game, solve_token_game_sampled

    objectives = tensor.components[1 : tensor.n_objectives + 1]
    if token_game[0] == "direct":
        draws, n_prompts = token_game[1], token_game[2]
        grid = draws["grid"]
        solution = direct_token_game(draws["log_ratios"], draws["log_q_over_ref"],
                                     tensor.reference_rows()[:n_prompts], grid, criterion)
    else:
        est, grid = tensor.estimate(), token_game[1]
        solution = solve_token_game_sampled(est.log_ratios, token_game[2], grid, criterion,
                                            log_weights=est.log_weights)
    i = solution.index
    info.update({
        "target": "token",
        "token_estimator": token_game[0],
        "token_grid": grid.tolist(),
        "token_grid_kl": solution.kl.tolist(),
        "token_grid_win_rates": solution.win_rates.tolist(),
        "weights_token": solution.weights.tolist(),
        "token_grid_points": int(grid.shape[0]),
        "token_estimated_kl": dict(zip(objectives, solution.kl[i].tolist())),
        "token_estimated_win_rates": dict(zip(objectives, solution.win_rates[i].tolist())),
    })
    if token_game[0] == "reweighted":
        info["token_median_ess"] = float(solution.ess[i])
    log.info("token-level target (%s, %s): λ %s; at the nearest grid point %s estimated win-rates %s, KL to each "
             "π_k %s", criterion, token_game[0], [round(float(w), 3) for w in solution.weights],
             [round(float(w), 3) for w in grid[i]], [round(float(w), 3) for w in solution.win_rates[i]],
             [round(float(v), 2) for v in solution.kl[i]])
    return solution.weights


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
    token_game = None
    if method.target == "token" and method.token_game.estimator == "reweighted":
        token_game = ("reweighted", *token_normalisers(ctx, objectives, method.estimator, method.singles))
    elif method.target == "token":
        token_game = ("direct", token_game_draws(ctx, objectives, method), method.token_game.n_prompts)
    with ctx.timed("solve"):
        weights, info = solve(tensor, method.solver, method.bsmd, beta=ctx.cfg.task.beta, seed=ctx.cfg.seed,
                              min_ess_fraction=method.estimator.min_ess_fraction, criterion=method.criterion,
                              token_game=token_game)
    named = lambda values: dict(zip(objectives, map(float, values)))  # noqa: E731
    for key in ("weights_exact", "weights_bsmd", "weights_win_rate", "weights_token", "estimated_win_rates",
                "estimated_win_rates_at_regret_weights", "certificate", "self_check_mixture",
                "self_check_reference_only"):
        if info.get(key) is not None:
            info[key] = named(info[key])
    log.info("MPO weights (%s) %s; estimated win-rates vs π_ref %s; duality gap %.2g; BSMD L1 from exact %.4f; "
             "−F̂ %.2f nats; median ESS %.1f of %d", info["solver"],
             {k: round(v, 4) for k, v in info["weights_token" if "target" in info else f"weights_{info['solver']}"].items()},
             {k: round(v, 3) for k, v in info["estimated_win_rates"].items()}, info["duality_gap"],
             info["bsmd_l1_from_exact"], info["neg_objective"], info["ess"]["median"], int(info["ess"]["m"]))
    return weights, info
