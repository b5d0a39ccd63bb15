"""How well do MPO's weight estimators recover λ* when the single policies are far from π_ref?

On enumerable autoregressive policies (`mpo.core.enumerable`) at KL 5, 20, 50 and 80 nats from π_ref, draw
the samples an MPO run would draw, solve the sample objective exactly (`mpo.core.solver`) and compare λ̂ with
the exact minimiser λ* of F. Estimators:
- ``reference``: M samples of π_ref (the paper's estimator);
- ``mixture``: defensive multiple importance sampling from π_ref and every π_k (`mpo.core.proposal`);
- ``mixture+round2``: the same, plus a second round drawn from the token-level mixture at the first λ̂.

    python -m mpo.studies.estimator_study                   # the README's table (20 seeds, K = 2 and 3)
    python -m mpo.studies.estimator_study --seeds 5 --budgets 16
    python -m mpo.studies.estimator_study --decoding --kls 20   # token- vs sequence-level decoding at λ*

Prints a markdown table of the L1 error ‖λ̂ − λ*‖₁ (median and 90th percentile over seeds) and writes it
with ``--out FILE``. Pure tensor code; about a minute on one CPU core.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mpo.core.enumerable import TabularProblem, draw, tabular_problem
from mpo.core.enumerable import sir_law as enumerable_sir_law
from mpo.core.proposal import Estimate, mixture_estimate, reference_estimate, split_counts
from mpo.core.solver import solve_empirical, solve_exact

ESTIMATORS = ("reference", "mixture", "mixture+round2")


@dataclass(frozen=True)
class Budget:
    """Samples per prompt: ``total`` in all; with round 2, ``round2_share`` of them from the mixture."""

    total: int
    reference_share: float = 0.25
    round2_share: float = 0.25


def exact_weights(problem: TabularProblem) -> Tensor:
    joint = problem.joint()
    return solve_exact(joint[..., 0], joint[..., 1:] - joint[..., :1])


def estimate(problem: TabularProblem, estimator: str, budget: Budget, seed: int) -> Tensor:
    """λ̂ from one draw of samples (the exact minimiser of the resulting sample objective)."""
    gen = torch.Generator().manual_seed(seed)
    joint = problem.joint()
    n_policies = joint.shape[2] - 1
    if estimator == "reference":
        index = draw(joint[..., 0], budget.total, gen)
        rows = _gather(joint, index)
        return _solve(reference_estimate(rows[..., 0], rows[..., 1:]))
    round1 = budget.total if estimator == "mixture" else budget.total - round(budget.total * budget.round2_share)
    counts = split_counts(round1, n_policies, budget.reference_share)
    index = torch.cat([draw(joint[..., j], n, gen) for j, n in enumerate(counts)], 1)
    first = _solve(mixture_estimate(_gather(joint, index), counts, policies=range(1, n_policies + 1)))
    if estimator == "mixture":
        return first
    if estimator != "mixture+round2":
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    mixture = problem.token_mixture_joint(first)
    table = torch.cat([joint, mixture[..., None]], -1)
    index = torch.cat([index, draw(mixture, budget.total - round1, gen)], 1)
    return _solve(mixture_estimate(_gather(table, index), [*counts, budget.total - round1],
                                   policies=range(1, n_policies + 1)))


def _gather(table: Tensor, index: Tensor) -> Tensor:
    return torch.gather(table, 1, index[..., None].expand(-1, -1, table.shape[2]))


def _solve(est: Estimate) -> Tensor:
    return solve_empirical(est.log_ratios, log_weights=est.log_weights, tol=1e-9).weights


def errors(problem: TabularProblem, estimator: str, budget: Budget, seeds: Sequence[int]) -> Tensor:
    """[len(seeds)] L1 errors ‖λ̂ − λ*‖₁."""
    star = exact_weights(problem)
    return torch.stack([(estimate(problem, estimator, budget, s) - star).abs().sum() for s in seeds])


def study(kls: Sequence[float], budgets: Sequence[int], ks: Sequence[int], seeds: int,
          prompts: int = 16) -> list[dict]:
    rows = []
    for k in ks:
        for kl in kls:
            problem = tabular_problem(prompts=prompts, policies=k, kl=kl, seed=int(kl) + 100 * k)
            star = exact_weights(problem)
            for total in budgets:
                for estimator in ESTIMATORS:
                    err = errors(problem, estimator, Budget(total), range(seeds))
                    rows.append({"K": k, "KL": kl, "M": total, "estimator": estimator,
                                 "median": float(err.median()), "p90": float(torch.quantile(err, 0.9)),
                                 "lambda_star": [round(float(w), 3) for w in star]})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| K | KL (nats) | λ* | M per prompt | " + " | ".join(f"{e} median / p90" for e in ESTIMATORS) + " |",
             "|---|---|---|---|" + "---|" * len(ESTIMATORS)]
    keyed = {(r["K"], r["KL"], r["M"], r["estimator"]): r for r in rows}
    for k, kl, m in dict.fromkeys((r["K"], r["KL"], r["M"]) for r in rows):
        cells = [f"{keyed[k, kl, m, e]['median']:.3f} / {keyed[k, kl, m, e]['p90']:.3f}" for e in ESTIMATORS]
        star = keyed[k, kl, m, ESTIMATORS[0]]["lambda_star"]
        lines.append(f"| {k} | {kl:g} | {star} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------ decoding: what was optimised


def sir_law(log_target: Tensor, log_q: Tensor, n: int, draws: int, generator: torch.Generator) -> Tensor:
    """[X, Y] the law of sampling-importance-resampling with n candidates from q toward the target
    (`mpo.core.enumerable.sir_law` with one component)."""
    if n == 1:
        return log_q.exp()
    return enumerable_sir_law(log_target, log_q[..., None], [n], draws, generator)


def decoding_rows(problem: TabularProblem, weights: Tensor, candidates: Sequence[int], beta: float = 0.1,
                  seed: int = 0) -> list[dict]:
    """TV to the sequence-level mixture and min win-rate vs π_ref (normalised rewards β·log π_k/π_ref) for the
    token-level mixture, sampling-importance-resampling with n candidates, and the target itself."""
    from mpo.core.enumerable import total_variation, win_rate

    joint = problem.joint()
    target = problem.sequence_mixture_joint(weights)
    token = problem.token_mixture_joint(weights)
    rewards = beta * (joint[..., 1:] - joint[..., :1])
    gen = torch.Generator().manual_seed(seed)

    def row(name: str, law: Tensor, ess: float | None = None) -> dict:
        log_law = law.clamp(min=1e-300).log()
        wins = torch.stack([win_rate(log_law, joint[..., 0], rewards[..., k]).mean() for k in range(rewards.shape[2])])
        return {"decoding": name, "tv": float(total_variation(log_law, target).mean()),
                "win_rates": [round(float(w), 3) for w in wins], "min_win_rate": float(wins.min()), "ess": ess}

    rows = [row("sequence-level target", target.exp()), row("token-level", token.exp())]
    log_w = target - token
    for n in candidates:
        index = draw(token, 2000 * n, gen).view(token.shape[0], 2000, n)
        w = torch.gather(log_w, 1, index.flatten(1)).view_as(index).exp()
        ess = float((w.sum(-1) ** 2 / (w**2).sum(-1)).mean())
        rows.append(row(f"resampled, {n} candidates", sir_law(target, token, n, 2000, gen), ess))
    return rows


def decoding_table(rows: list[dict]) -> str:
    lines = ["| decoding | TV to sequence-level | win-rates vs π_ref | min win-rate | resampling ESS |",
             "|---|---|---|---|---|"]
    for r in rows:
        ess = "" if r["ess"] is None else f"{r['ess']:.2f}"
        lines.append(f"| {r['decoding']} | {r['tv']:.3f} | {r['win_rates']} | {r['min_win_rate']:.3f} | {ess} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kls", type=float, nargs="+", default=[5, 20, 50, 80])
    parser.add_argument("--budgets", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    parser.add_argument("--decoding", action="store_true",
                        help="instead: token-level vs sequence-level decoding at λ* (TV, min win-rate, ESS)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.decoding:
        problem = tabular_problem(prompts=args.prompts, vocab=4, length=5, policies=2, kl=args.kls[0], seed=1)
        text = decoding_table(decoding_rows(problem, exact_weights(problem), [1, 2, 4, 8, 16, 32]))
    else:
        text = table(study(args.kls, args.budgets, args.ks, args.seeds, args.prompts))
    print(text)
    design = "" if args.decoding else f"{args.seeds} seeds, "
    print(f"\n{design}{args.prompts} prompts per problem; {time.perf_counter() - start:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
