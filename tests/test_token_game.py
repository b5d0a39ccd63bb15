"""λ for the law that is decoded (mpo/core/token_game.py) on the variable-length family of
mpo/core/enumerable.py: responses end at EOS, one objective rewards sentiment tokens and the other brevity,
so the token-level mixture at the sequence-level λ* is too long. Exact checks against enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch

from mpo.core.enumerable import draw, length_problem, win_rate
from mpo.core.objective import exact_problem
from mpo.core.proposal import mixture_estimate
from mpo.core.solver import solve_exact
from mpo.core.token_game import check_log_normalisers, solve_token_game, solve_token_game_sampled, token_grid
from mpo.core.winrate import simplex_grid


@pytest.fixture(scope="module")
def problem():
    return length_problem(prompts=64, strength=(1.0, 2.0))


@pytest.fixture(scope="module")
def fine_normalisers(problem):
    """A_λ of every enumerated response on a 101-point grid (0 where the response is impossible)."""
    fine = simplex_grid(2, 100)
    live = torch.isfinite(problem.joint()[..., 0])
    return fine, torch.where(live[..., None], _normalisers(problem, fine), 0.0)


def _exact_parts(problem):
    joint = problem.joint()
    ref = joint[..., 0]
    live = torch.isfinite(ref)
    return joint, ref, live, torch.where(live[..., None], joint[..., 1:] - joint[..., :1], 0.0)


def _normalisers(problem, grid):
    return torch.stack([problem.token_log_normalisers(lam) for lam in grid], -1)


def test_the_token_log_normaliser_is_the_per_step_sum_by_hand():
    """A_λ(y) = Σ_t log Σ_v Π_k π_k(v|y_<t)^λ_k along y, ≤ 0, and q_λ sums to 1 over the enumerated strings."""
    small = length_problem(prompts=2, vocab=3, length=3, strength=(1.5, 1.0), seed=4)
    lam = torch.tensor([0.3, 0.7], dtype=torch.float64)
    got = small.token_log_normalisers(lam)
    for index, y in enumerate(itertools.product(range(3), repeat=3)):
        for x in range(2):
            expected = 0.0
            for t in range(3):
                prefix = sum(v * 3 ** (t - 1 - i) for i, v in enumerate(y[:t]))
                cond = small.conditionals[t][x, prefix, :, 1:]
                expected += float(torch.logsumexp((cond * lam).sum(-1), 0))
            assert got[x, index].item() == pytest.approx(expected, abs=1e-9)
    assert (got <= 1e-12).all()
    assert torch.allclose(small.token_mixture_joint(lam).exp().sum(1), torch.ones(2, dtype=torch.float64))


def test_the_token_level_law_at_the_sequence_lambda_is_too_long_and_its_own_lambda_fixes_it(problem, fine_normalisers):
    joint, ref, _, log_ratios = _exact_parts(problem)
    star = solve_exact(ref, log_ratios)
    fine, normalisers = fine_normalisers
    exact = exact_problem(ref, log_ratios)
    own = solve_token_game(exact, normalisers, fine, "win_rate")
    at_star = problem.true_win_rates(problem.token_mixture_joint(star))
    at_own = problem.true_win_rates(problem.token_mixture_joint(own.weights))
    assert at_star[1] < at_star[0]  # brevity is the objective the token-level law short-changes
    assert float(at_own.min()) > float(at_star.min()) + 0.03
    # the exact game's win-rates are q_λ's exact ones under each ℓ_k's ranking (ℓ_k ranks as r_k does, but
    # float log-probabilities split r's ties, responses of one length, so compare under ℓ_k itself)
    q_own = problem.token_mixture_joint(own.weights)
    by_ell = torch.stack([win_rate(q_own, ref, log_ratios[..., k]).mean() for k in range(2)])
    assert torch.allclose(own.win_rates[own.index], by_ell, atol=1e-9)


@pytest.mark.parametrize("criterion", ["regret", "win_rate"])
def test_the_sampled_token_game_lands_within_005_of_its_exact_optimum(problem, fine_normalisers, criterion):
    """16 samples per prompt (4 from π_ref, 6 from each π_k), A_λ on the 51-point grid: λ̂ within L1 0.05 of
    the exact token-level game's optimum on a 101-point grid."""
    joint, ref, live, log_ratios = _exact_parts(problem)
    fine, normalisers = fine_normalisers
    exact = solve_token_game(exact_problem(ref, log_ratios), normalisers, fine, criterion).weights
    grid = token_grid(2)
    on_grid = _normalisers(problem, grid)
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        index = torch.cat([draw(joint[..., c], n, gen) for c, n in enumerate([4, 6, 6])], 1)
        logprobs = torch.gather(joint, 1, index[..., None].expand(-1, -1, 3))
        estimate = mixture_estimate(logprobs, [4, 6, 6], policies=[1, 2])
        sampled_normalisers = torch.gather(on_grid, 1, index[..., None].expand(-1, -1, grid.shape[0]))
        solution = solve_token_game_sampled(estimate.log_ratios, sampled_normalisers, grid, criterion,
                                            log_weights=estimate.log_weights)
        assert float((solution.weights - exact).abs().sum()) <= 0.05, (seed, solution.weights, exact)


def test_log_normalisers_of_the_wrong_shape_or_sign_are_refused():
    grid = token_grid(2)
    with pytest.raises(ValueError, match="shape"):
        check_log_normalisers(torch.zeros(2, 3, 5), (2, 3), grid)
    with pytest.raises(ValueError, match="> 0"):
        check_log_normalisers(torch.full((2, 3, grid.shape[0]), 0.5), (2, 3), grid)
    with pytest.raises(ValueError, match="non-finite"):
        check_log_normalisers(torch.full((2, 3, grid.shape[0]), float("nan")), (2, 3), grid)


@pytest.mark.parametrize("criterion", ["regret", "win_rate"])
def test_the_direct_token_game_lands_within_005_of_its_exact_optimum(problem, fine_normalisers, criterion):
    """Draws of q_λ itself at 11 grid points (8 per prompt) against 8 π_ref draws per prompt, no weights:
    λ̂ within L1 0.05 of the exact token-level game's optimum."""
    from mpo.core.token_game import direct_token_game

    joint, ref, live, log_ratios = _exact_parts(problem)
    fine, normalisers = fine_normalisers
    exact = solve_token_game(exact_problem(ref, log_ratios), normalisers, fine, criterion).weights
    grid = simplex_grid(2, 10)
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        ell, log_q_over_ref = [], []
        for lam in grid:
            log_q = problem.token_mixture_joint(lam)
            index = draw(log_q, 8, gen)
            ell.append(torch.gather(log_ratios, 1, index[..., None].expand(-1, -1, 2)))
            log_q_over_ref.append(torch.gather(log_q - ref.masked_fill(~live, 0.0), 1, index))
        reference = torch.gather(log_ratios, 1, draw(ref, 8, gen)[..., None].expand(-1, -1, 2))
        solution = direct_token_game(torch.stack(ell), torch.stack(log_q_over_ref), reference, grid, criterion)
        assert float((solution.weights - exact).abs().sum()) <= 0.05, (seed, solution.weights, exact)


def test_defensive_resampling_from_16_candidates_is_closer_than_token_only_from_64():
    """Candidates from ½·q_tok + ¼·π_1 + ¼·π_2 (8, 4, 4 of 16), weights Π_k π_k^λ_k / q_def, on the length family
    where the token-level law at λ* is far from the sequence-level target: TV to the target after resampling
    below token-only resampling's with four times the candidates, and the min true win-rate above it."""
    from mpo.core.enumerable import sir_law, total_variation

    problem = length_problem(prompts=16, strength=(3.0, 6.0))
    joint, ref, live, log_ratios = _exact_parts(problem)
    lam = solve_exact(ref, log_ratios)
    target = problem.sequence_mixture_joint(lam).masked_fill(~live, -float("inf"))
    token = problem.token_mixture_joint(lam)
    gen = torch.Generator().manual_seed(0)
    token_only = sir_law(target, token[..., None], [64], 1000, gen).clamp(min=1e-300).log()
    defensive = sir_law(target, torch.cat([token[..., None], joint[..., 1:]], -1), [8, 4, 4], 1000, gen)
    defensive = defensive.clamp(min=1e-300).log()
    tv_token, tv_defensive = (float(total_variation(law, target).mean()) for law in (token_only, defensive))
    assert tv_defensive < tv_token - 0.05, (tv_defensive, tv_token)
    assert float(problem.true_win_rates(defensive).min()) > float(problem.true_win_rates(token_only).min()) + 0.02


def test_the_resampling_law_is_the_histogram_of_resampled_draws():
    """`sir_law` against plain SIR run many times on a tiny space (two components, stratified counts)."""
    from mpo.core.enumerable import sir_law

    gen = torch.Generator().manual_seed(1)
    target = torch.log_softmax(torch.randn(1, 5, generator=gen, dtype=torch.float64), 1)
    components = torch.log_softmax(torch.randn(1, 5, 2, generator=gen, dtype=torch.float64), 1)
    law = sir_law(target, components, [2, 1], 4000, gen)[0]
    log_q = torch.logsumexp(components[0] + torch.tensor([2 / 3, 1 / 3], dtype=torch.float64).log(), -1)
    runs = 200_000
    cands = torch.cat([torch.multinomial(components[0, :, 0].exp().expand(runs, 5), 2, True, generator=gen),
                       torch.multinomial(components[0, :, 1].exp().expand(runs, 5), 1, True, generator=gen)], 1)
    w = (target[0, cands] - log_q[cands]).exp()  # [runs, 3]
    chosen = cands.gather(1, torch.multinomial(w / w.sum(1, keepdim=True), 1, generator=gen))[:, 0]
    counts = torch.bincount(chosen, minlength=5).double()
    assert torch.allclose(law, counts / counts.sum(), atol=0.005)
