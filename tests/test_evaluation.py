import hashlib
import json
import random

import pytest
import torch

from mpo.models.policies import Decoding
from mpo.models.sampling import Samples, sample
from mpo.stages.evaluation import (bootstrap_ci, compare, evaluate, kl_to_reference, min_bootstrap_ci,
    pairwise_win_rates, prompts_fingerprint, win_indicators)


def plain_per_prompt(a: list[list[float]], b: list[list[float]]) -> list[float]:
    """Per prompt: every policy sample against every reference sample, tie = ½ (a double loop)."""
    per_prompt = []
    for row_a, row_b in zip(a, b):
        wins = []
        for x in row_a:
            for y in row_b:
                wins.append(1.0 if x > y else 0.5 if x == y else 0.0)
        per_prompt.append(sum(wins) / len(wins))
    return per_prompt


def plain_win_rate(a: list[list[float]], b: list[list[float]]) -> float:
    per_prompt = plain_per_prompt(a, b)
    return sum(per_prompt) / len(per_prompt)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_win_rate_matches_plain_reference(seed):
    rng = random.Random(seed)
    a = [[rng.choice([0.0, 0.5, 1.0]) for _ in range(3)] for _ in range(20)]
    b = [[rng.choice([0.0, 0.5, 1.0]) for _ in range(4)] for _ in range(20)]  # n=3 policy, m=4 reference
    out = compare({"o": torch.tensor(a)}, {"o": torch.tensor(b)}, resamples=200)
    assert out["win_rate"]["o"]["mean"] == pytest.approx(plain_win_rate(a, b), abs=1e-12)
    assert out["reward"]["o"] == pytest.approx(sum(map(sum, a)) / 60)
    assert out["reward_delta"]["o"] == pytest.approx(out["reward"]["o"] - sum(map(sum, b)) / 80)
    assert out["win_rate"]["o"]["ci_low"] <= out["win_rate"]["o"]["mean"] <= out["win_rate"]["o"]["ci_high"]
    assert out["per_prompt"]["win_rate"]["o"] == pytest.approx(plain_per_prompt(a, b), abs=5e-7)


def test_all_pairs_is_not_the_jth_against_the_jth():
    """The old pairing (sample j against sample j) would say 0 here; all pairs say ½ for both prompts."""
    a = torch.tensor([[1.0, 3.0], [0.0, 2.0]])
    b = torch.tensor([[2.0, 4.0], [1.0, 3.0]])
    assert pairwise_win_rates(a, b).tolist() == [0.25, 0.25] == plain_per_prompt(a.tolist(), b.tolist())
    assert pairwise_win_rates(b, a).tolist() == [0.75, 0.75]
    assert pairwise_win_rates(a, a).tolist() == [0.5, 0.5]  # a policy against itself, ties included


def test_per_prompt_block_is_rounded_and_fingerprinted():
    rng = random.Random(5)
    a = torch.tensor([[rng.random() for _ in range(3)] for _ in range(7)])
    b = torch.tensor([[rng.random() for _ in range(7)] for _ in range(7)])  # 21 pairs: thirds and sevenths
    prompts = [f"prompt {i} é" for i in range(7)]
    block = compare({"o": a}, {"o": b}, resamples=20, seed=4, prompts=prompts)["per_prompt"]
    assert block["n_prompts"] == 7 and block["seed"] == 4
    assert block["win_rate"]["o"] == [round(v, 6) for v in plain_per_prompt(a.tolist(), b.tolist())]
    want = hashlib.sha256(json.dumps(prompts, ensure_ascii=False).encode()).hexdigest()[:16]
    assert block["prompts_sha256"] == prompts_fingerprint(prompts) == want
    assert prompts_fingerprint(prompts[::-1]) != want  # order matters: the lists are paired by position
    assert compare({"o": a}, {"o": b}, resamples=20)["per_prompt"]["prompts_sha256"] is None


def plain_min_bootstrap(per_prompt: dict[str, list[float]], resamples: int, level: float, seed: int):
    """The same generator draws as the implementation; everything else in loops."""
    n = len(next(iter(per_prompt.values())))
    idx = torch.randint(0, n, (resamples, n), generator=torch.Generator().manual_seed(seed)).tolist()
    minima = []
    for row in idx:
        means = [sum(values[i] for i in row) / n for values in per_prompt.values()]
        minima.append(min(means))
    q = torch.tensor(minima, dtype=torch.float64)
    return torch.quantile(q, (1 - level) / 2).item(), torch.quantile(q, (1 + level) / 2).item()


@pytest.mark.parametrize("seed", [0, 7])
def test_min_win_rate_ci_matches_plain_bootstrap(seed):
    rng = random.Random(seed)
    per_prompt = {k: [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(30)] for k in ("a", "b", "c")}
    tensors = {k: torch.tensor(v, dtype=torch.float64) for k, v in per_prompt.items()}
    low, high = min_bootstrap_ci(tensors, 500, 0.9, seed)
    want_low, want_high = plain_min_bootstrap(per_prompt, 500, 0.9, seed)
    assert (low, high) == pytest.approx((want_low, want_high), abs=1e-12)


def test_min_win_rate_ci_properties():
    gen = torch.Generator().manual_seed(0)
    wide = {"a": torch.rand(40, generator=gen, dtype=torch.float64),
            "b": torch.rand(40, generator=gen, dtype=torch.float64) * 0.5}
    # one objective: exactly that objective's CI (the same draws)
    assert min_bootstrap_ci({"a": wide["a"]}, 300, 0.95, 3) == bootstrap_ci(wide["a"], 300, 0.95, 3)
    low, high = min_bootstrap_ci(wide, 300, 0.95, 3)
    point = min(float(v.mean()) for v in wide.values())
    assert low < point < high
    many = {k: v.repeat(16) for k, v in wide.items()}  # the same values on 16x the prompts
    low16, high16 = min_bootstrap_ci(many, 300, 0.95, 3)
    assert high16 - low16 < 0.5 * (high - low) and low16 < point < high16
    # compare() reports it beside the float min_win_rate, with the per-objective CIs from the same draws
    scores = {k: v[:, None] for k, v in wide.items()}
    out = compare(scores, {k: torch.full((40, 1), 0.25) for k in wide}, resamples=300, level=0.95, seed=3)
    assert isinstance(out["min_win_rate"], float)
    ci = out["min_win_rate_ci"]
    assert ci["level"] == 0.95 and ci["low"] <= out["min_win_rate"] <= ci["high"]
    assert ci["high"] <= min(out["win_rate"][k]["ci_high"] for k in wide)  # min of means ≤ each mean, per draw


def test_ties_count_half_and_min_over_objectives():
    x = torch.tensor([[1.0], [2.0]])
    assert win_indicators(x, x).tolist() == [[0.5], [0.5]]
    out = compare({"a": x + 1, "b": x - 1}, {"a": x, "b": x}, resamples=50)
    assert out["win_rate"]["a"]["mean"] == 1.0 and out["win_rate"]["b"]["mean"] == 0.0
    assert out["min_win_rate"] == 0.0 and out["min_win_rate_objective"] == "b"


def test_bootstrap_ci_against_plain_percentiles():
    values = torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, 1.0, 1.0, 0.5])
    low, high = bootstrap_ci(values, 2000, 0.9, seed=3)
    gen = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 8, (2000, 8), generator=gen)
    means = sorted(float(values[i].mean()) for i in idx)
    assert low == pytest.approx(torch.quantile(torch.tensor(means), 0.05).item())
    assert high == pytest.approx(torch.quantile(torch.tensor(means), 0.95).item())
    assert 0 <= low < values.mean() < high <= 1


class ListPolicy:
    """A policy that answers every prompt with a fixed response: a deliberately better/worse policy."""

    def __init__(self, response: str):
        self.response = response

    def generate(self, prompts, decoding):
        return [self.response for _ in prompts]


class RandomLengthPolicy:
    def generate(self, prompts, decoding):
        rng = random.Random(decoding.seed)
        return [" good" * rng.randint(1, 9) for _ in prompts]


def length(prompts, responses):
    return [float(len(r.split())) for r in responses]


def test_better_policy_wins_and_self_is_half():
    prompts = [f"p{i}" for i in range(40)]
    dec = Decoding(batch_size=16, seed=0)
    reference = sample(RandomLengthPolicy(), prompts, 2, Decoding(batch_size=16, seed=99))
    ref_scores = {"length": torch.tensor(length(None, reference.responses)).view(40, 2)}
    scorers = {"length": length}
    better = evaluate(ListPolicy(" good" * 20), reference, ref_scores, scorers, dec, resamples=100)
    itself = evaluate(RandomLengthPolicy(), reference, ref_scores, scorers, dec, resamples=100)
    assert better["win_rate"]["length"]["mean"] == 1.0
    assert 0.35 < itself["win_rate"]["length"]["mean"] < 0.65
    assert better["samples"][0] == {"prompt": "p0", "response": " good" * 20, "reference": reference.responses[0]}
    assert better["per_prompt"]["prompts_sha256"] == prompts_fingerprint(prompts)
    assert better["per_prompt"]["win_rate"]["length"] == [1.0] * 40 and better["per_prompt"]["seed"] == 0


def test_scorer_with_wrong_length_is_an_error():
    s = Samples(["a", "b"], 1, ["x", "y"])
    from mpo.stages.evaluation import score_all

    with pytest.raises(ValueError, match="returned 1 scores for 2"):
        score_all({"bad": lambda p, r: [0.0]}, s)


def test_objective_correlations_against_plain_pearson():
    from mpo.stages.evaluation import objective_correlations

    a = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    b = -2 * a + 1
    c = torch.tensor([[0.3, -1.0], [2.0, 0.1]])
    out = objective_correlations({"a": a, "b": b, "c": c})
    assert out["a~b"] == pytest.approx(-1.0)
    xs, ys = a.flatten().tolist(), c.flatten().tolist()
    mx, my = sum(xs) / 4, sum(ys) / 4
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    var = (sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys)) ** 0.5
    assert out["a~c"] == pytest.approx(cov / var) and set(out) == {"a~b", "a~c", "b~c"}


class _Density:
    """A policy whose log-density of every sampled response is a fixed number (plain stand-in for a model)."""

    def __init__(self, values):
        self.values = torch.tensor(values, dtype=torch.float64)

    def response_logprobs(self, prompt_ids, completion_ids, log_normaliser=None):
        return self.values


def test_kl_to_reference_is_the_per_prompt_mean_log_ratio_with_a_prompt_bootstrap(caplog):
    samples = Samples(["p", "q"], 2, ["a", "b", "c", "d"], [True] * 4, [[1]] * 4, [[2]] * 4)
    policy, reference = _Density([-1.0, -2.0, -3.0, -5.0]), _Density([-2.0, -2.0, -4.0, -4.0])
    kl = kl_to_reference(policy, reference, samples, Decoding(seed=0), resamples=200, level=0.9)
    assert kl["mean"] == pytest.approx(((1 + 0) / 2 + (1 - 1) / 2) / 2)  # prompts p: 0.5, q: 0.0
    assert kl["ci_low"] == pytest.approx(0.0) and kl["ci_high"] == pytest.approx(0.5)
    # no density for a tempered or truncated decoding: nothing rather than a wrong number, and it says why
    assert kl_to_reference(policy, reference, samples, Decoding(temperature=0.7), resamples=10, level=0.9) is None
    assert "eval.temperature=1" in caplog.text
    assert kl_to_reference(object(), reference, samples, Decoding(), resamples=10, level=0.9) is None
