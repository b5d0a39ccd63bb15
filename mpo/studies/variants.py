"""The MPO variants on exact enumerable problems (`mpo.core.enumerable`): what each setting buys, in true win-rates.

``python -m mpo.studies.variants`` prints two tables:

1. The scale family (`scale_problem`): π_2's implicit reward 1-8× as steep as π_1's. Min true win-rate against
   π_ref of the sequence-level mixture at the regret λ* (the paper's), at λ by calibrated win-rates from 16
   samples per prompt (`method.criterion=win_rate`; several sample seeds), and at the best λ of the family.
2. The length family (`length_problem`): responses end at EOS, one objective rewards sentiment tokens, the other
   brevity. Min true win-rate of the token-level law (what ``decoding=token`` samples) at the regret λ*, at the
   token-level game's own λ (``method.target=token``, regret and win-rate, exact), of the sequence-level target
   at λ*, and of sequence-level resampling at λ* from 16 and 64 candidates of q_tok alone or of the defensive
   proposal ½ q_tok + ¼ π_1 + ¼ π_2 (with its total variation to the target).

Pure tensor code on small tables; about a minute on one core.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from mpo.core.enumerable import (best_in_family, draw, length_problem, scale_problem, sir_law, total_variation)
from mpo.core.objective import exact_problem
from mpo.core.proposal import mixture_estimate
from mpo.core.solver import solve_exact
from mpo.core.token_game import solve_token_game
from mpo.core.winrate import simplex_grid, solve_win_rate


def scale_rows(scales: Sequence[float], seeds: int) -> list[dict]:
    rows = []
    for scale in scales:
        problem = scale_problem(scale=scale)
        joint = problem.joint()
        star = solve_exact(joint[..., 0], joint[..., 1:] - joint[..., :1])
        oracle_weights, oracle = best_in_family(problem, points=201)
        by_win_rate = []
        for seed in range(seeds):
            gen = torch.Generator().manual_seed(seed)
            index = torch.cat([draw(joint[..., j], n, gen) for j, n in enumerate([4, 6, 6])], 1)
            estimate = mixture_estimate(torch.gather(joint, 1, index[..., None].expand(-1, -1, 3)), [4, 6, 6], [1, 2])
            lam = solve_win_rate(estimate.log_ratios, log_weights=estimate.log_weights).weights
            by_win_rate.append(float(problem.true_win_rates(problem.sequence_mixture_joint(lam)).min()))
        rows.append({"scale": scale, "regret_lambda": float(star[0]),
                     "regret": float(problem.true_win_rates(problem.sequence_mixture_joint(star)).min()),
                     "win_rate_min": min(by_win_rate), "win_rate_max": max(by_win_rate),
                     "oracle_lambda": float(oracle_weights[0]), "oracle": oracle})
    return rows


def length_rows(strength: tuple[float, float], seed: int = 0) -> tuple[list[dict], dict]:
    problem = length_problem(prompts=32, strength=strength)
    joint = problem.joint()
    ref = joint[..., 0]
    live = torch.isfinite(ref)
    log_ratios = torch.where(live[..., None], joint[..., 1:] - joint[..., :1], 0.0)
    star = solve_exact(ref, log_ratios)
    target = problem.sequence_mixture_joint(star).masked_fill(~live, -float("inf"))
    token = problem.token_mixture_joint(star)
    fine = simplex_grid(2, 100)
    normalisers = torch.where(live[..., None], torch.stack([problem.token_log_normalisers(g) for g in fine], -1), 0.0)
    exact = exact_problem(ref, log_ratios)

    def row(name: str, log_law: torch.Tensor, lam: torch.Tensor, cost: str) -> dict:
        rates = problem.true_win_rates(log_law)
        return {"decoding": name, "lambda": float(lam[0]), "win_rates": [round(float(r), 3) for r in rates],
                "min": float(rates.min()), "tv": float(total_variation(log_law, target).mean()), "cost": cost}

    rows = [row("token-level at regret λ*", token, star, "K per token")]
    for criterion in ("regret", "win_rate"):
        own = solve_token_game(exact, normalisers, fine, criterion).weights
        rows.append(row(f"token-level at its own λ ({criterion})", problem.token_mixture_joint(own), own, "K per token"))
    rows.append(row("sequence-level target at λ*", target, star, "intractable"))
    gen = torch.Generator().manual_seed(seed)
    components = torch.cat([token[..., None], joint[..., 1:]], -1)
    for n in (16, 64):
        law = sir_law(target, token[..., None], [n], 1000, gen).clamp(min=1e-300).log()
        rows.append(row(f"resampled from {n} of q_tok", law, star, f"{n}K per token"))
        counts = [n // 2, n // 4, n // 4]
        law = sir_law(target, components, counts, 1000, gen).clamp(min=1e-300).log()
        rows.append(row(f"defensive, {n} candidates {counts}", law, star, f"≈{n}K per token"))
    return rows, {"strength": strength, "regret_lambda": float(star[0])}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strength", type=float, nargs=2, default=[3.0, 6.0])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    print("| scale | regret λ*_1 | min win-rate at λ* | win-rate λ, 16 samples/prompt (min–max over seeds) "
          "| best λ_1 of the family | its min win-rate |\n|---|---|---|---|---|---|")
    for r in scale_rows(args.scales, args.seeds):
        print(f"| {r['scale']:g}× | {r['regret_lambda']:.3f} | {r['regret']:.3f} | {r['win_rate_min']:.3f}–"
              f"{r['win_rate_max']:.3f} | {r['oracle_lambda']:.3f} | {r['oracle']:.3f} |")
    rows, meta = length_rows(tuple(args.strength))
    print(f"\nlength family, strengths {meta['strength']}, regret λ*_1 = {meta['regret_lambda']:.3f}:\n")
    print("| law decoded | λ_1 | true win-rates (sentiment, brevity) | min | TV to the sequence-level target "
          "| decoding cost (forward passes) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['decoding']} | {r['lambda']:.2f} | {r['win_rates']} | {r['min']:.3f} | {r['tv']:.3f} | {r['cost']} |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
