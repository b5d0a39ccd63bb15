"""Baseline building blocks against plain reference computations: reward normalisers (z-score, the P
operator), aggregation (weighted sum, per-sample min), reward soups (parameter interpolation), Mixed-PO's
easy/hard split."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from mpo.baselines.aggregation import MinOf, MinOfExpected, WeightedSum
from mpo.baselines.mixed_po import easy_threshold, hard_prompts, split_pairs, unique_pairs
from mpo.baselines.reward_soups import interpolate
from mpo.core.normalisation import PNormalizer, ZScore, fit_normalizer
from mpo.core.simplex import check_simplex


def length_scorer(prompts, responses):
    """A reward that depends on prompt and response: response length plus prompt length / 10."""
    return [len(y) + len(x) / 10 for x, y in zip(prompts, responses)]


def count_a(prompts, responses):
    return [y.count("a") for y in responses]


# ---------------------------------------------------------------- normalisers

def test_zscore_has_mean_zero_std_one_on_its_fit_data():
    prompts = ["p", "q", "p", "r", "q"]
    responses = ["a", "abcd", "abcdefg", "ab", "abcdefghij"]
    normalised = ZScore.fit(length_scorer, prompts, responses)(prompts, responses)
    t = torch.tensor(normalised, dtype=torch.float64)
    assert t.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert t.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-12)
    raw = length_scorer(prompts, responses)
    mean = sum(raw) / len(raw)
    std = math.sqrt(sum((r - mean) ** 2 for r in raw) / len(raw))
    assert ZScore.fit(length_scorer, prompts, responses)(["z"], ["abc"])[0] == pytest.approx((3.1 - mean) / std)


def test_zscore_of_a_constant_reward_says_what_to_do():
    with pytest.raises(ValueError, match="constant"):
        ZScore.fit(lambda xs, ys: [1.0] * len(ys), ["p", "q"], ["a", "b"])


def test_p_operator_matches_a_hand_computed_example():
    # prompt "x": reference rewards 1, 2, 4 (response lengths; prompt term 0.1); beta = 0.5
    beta = 0.5
    refs = [["a", "ab", "abcd"], ["abc"]]
    p = PNormalizer.fit(lambda xs, ys: [float(len(y)) for y in ys], ["x", "y"], refs, beta)
    b_x = beta * math.log((math.exp(1 / beta) + math.exp(2 / beta) + math.exp(4 / beta)) / 3)
    assert p.baselines["x"] == pytest.approx(b_x, rel=1e-12)
    assert p.baselines["y"] == pytest.approx(3.0, rel=1e-12)  # one sample: b = r exactly
    assert p(["x", "y", "x"], ["abcde", "ab", ""]) == pytest.approx([5 - b_x, 2 - 3.0, 0 - b_x])


def test_p_operator_is_stable_for_large_rewards_over_small_beta():
    p = PNormalizer.fit(lambda xs, ys: [1000.0 * len(y) for y in ys], ["x"], [["a", "aa"]], beta=0.01)
    assert math.isfinite(p.baselines["x"])
    assert p.baselines["x"] == pytest.approx(2000.0 + 0.01 * math.log(0.5), rel=1e-12)


def test_p_operator_is_idempotent_with_the_same_reference_samples():
    prompts = ["x", "y"]
    refs = [["a", "abc", "abcdefg"], ["ab", "abcdef"]]
    once = PNormalizer.fit(length_scorer, prompts, refs, beta=2.0)
    twice = PNormalizer.fit(once, prompts, refs, beta=2.0)
    assert twice.baselines["x"] == pytest.approx(0.0, abs=1e-12)
    queries_x, queries_y = ["x", "y", "y"], ["abcd", "", "abcdefghij"]
    assert twice(queries_x, queries_y) == pytest.approx(once(queries_x, queries_y), abs=1e-12)


def test_p_operator_pools_repeated_prompts_and_handles_unseen_prompts():
    score = lambda xs, ys: [float(len(y)) for y in ys]  # noqa: E731
    pooled = PNormalizer.fit(score, ["x", "x"], [["a"], ["abc"]], beta=1.0)
    assert pooled.baselines["x"] == pytest.approx(math.log((math.e + math.e**3) / 2))
    with pytest.raises(KeyError, match="no reference samples for prompt 'z'"):
        pooled(["z"], ["a"])
    fallback = PNormalizer.fit(score, ["x", "y"], [["a"], ["abc"]], beta=1.0, unseen="mean")
    assert fallback(["z"], ["ab"]) == pytest.approx([2.0 - (1.0 + 3.0) / 2])


def test_fit_normalizer_dispatch_and_errors():
    refs = [["a", "abc"], ["ab", "abcd"]]
    z = fit_normalizer("zscore", length_scorer, ["x", "y"], refs)
    assert isinstance(z, ZScore) and z.__name__ == "zscore_length_scorer"
    p = fit_normalizer("p", length_scorer, ["x", "y"], refs, beta=1.0)
    assert isinstance(p, PNormalizer) and p.__name__ == "p_length_scorer"
    with pytest.raises(ValueError, match="needs beta"):
        fit_normalizer("p", length_scorer, ["x", "y"], refs)
    with pytest.raises(ValueError, match="'zscore' or 'p'"):
        fit_normalizer("minmax", length_scorer, ["x", "y"], refs)
    with pytest.raises(ValueError, match="one list of reference responses per prompt"):
        fit_normalizer("p", length_scorer, ["x"], refs, beta=1.0)


# ---------------------------------------------------------------- aggregation

def test_weighted_sum_and_min_of_per_sample():
    prompts, responses = ["p"] * 3, ["aaa", "ab", "bbbbbb"]
    lengths, a_counts = [3, 2, 6], [3, 1, 0]
    assert WeightedSum([lambda x, y: [len(r) for r in y], count_a], [0.25, 0.75])(prompts, responses) == \
        pytest.approx([0.25 * l + 0.75 * a for l, a in zip(lengths, a_counts)])
    assert MinOf([lambda x, y: [len(r) for r in y], count_a])(prompts, responses) == [3, 1, 0]


def test_min_of_expected_scores_the_batch_by_its_worst_mean_objective():
    """min_k E[r_k]: lengths average 11/3 and a-counts 4/3, so every sample gets its a-count; against a constant 4
    the lengths' mean is lower, so every sample gets its length, 6 included (the per-sample min would give 4)."""
    prompts, responses = ["p"] * 3, ["aaa", "ab", "bbbbbb"]
    lengths = lambda x, y: [len(r) for r in y]  # noqa: E731
    assert MinOfExpected([lengths, count_a])(prompts, responses) == [3, 1, 0]
    assert MinOfExpected([lengths, lambda x, y: [4, 4, 4]])(prompts, responses) == [3, 2, 6]  # mean 3.67 < 4
    assert MinOfExpected([lengths, lambda x, y: [4, 4, 4]]).__name__ == "min_of_expected"


@pytest.mark.parametrize("weights, message", [
    ([0.5, 0.5, 0.0], "3 weights but there are 2 objectives"),
    ([1.5, -0.5], "must be >= 0"),
    ([0.3, 0.3], r"sum to 1 .* got sum 0.6.*divide each by their sum: \[0.5, 0.5\]"),
    ([0.0, 0.0], "give at least one positive weight"),
    ([float("nan"), 1.0], "finite"),
])
def test_weight_validation_names_the_problem_and_the_fix(weights, message):
    with pytest.raises(ValueError, match=message):
        check_simplex(weights, 2)
    with pytest.raises(ValueError, match=message):
        WeightedSum([count_a, count_a], weights)


# ---------------------------------------------------------------- reward soups

WORDS = ["<pad>", "<eos>", "a", "b", "c"]


def save_tiny(path, seed: int, n_embd: int = 16, words=WORDS):
    vocab = {w: i for i, w in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(words), n_positions=16, n_embd=n_embd, n_layer=1, n_head=2,
                        eos_token_id=1, pad_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def params(path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(str(path)).state_dict().items()}


@pytest.fixture(scope="module")
def three_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("soup")
    return [save_tiny(root / f"m{k}", seed=k) for k in range(3)]


def test_one_hot_weights_give_exactly_that_model(three_models, tmp_path):
    interpolate(three_models, [0.0, 1.0, 0.0], tmp_path / "soup")
    soup, target = params(tmp_path / "soup"), params(three_models[1])
    assert soup.keys() == target.keys()
    assert all(torch.equal(soup[k], target[k]) for k in target)
    assert (tmp_path / "soup" / "tokenizer.json").exists()


def test_half_half_is_the_average_and_three_way_is_the_weighted_sum(three_models, tmp_path):
    metrics = interpolate(three_models[:2], [0.5, 0.5], tmp_path / "half")
    a, b, soup = params(three_models[0]), params(three_models[1]), params(tmp_path / "half")
    assert metrics["num_models"] == 2.0
    for k in a:
        assert torch.allclose(soup[k], (a[k] + b[k]) / 2, atol=1e-7), k
    weights = [0.2, 0.3, 0.5]
    interpolate(three_models, weights, tmp_path / "three")
    c, soup3 = params(three_models[2]), params(tmp_path / "three")
    assert not torch.equal(a["transformer.h.0.mlp.c_fc.weight"], b["transformer.h.0.mlp.c_fc.weight"])
    for k in a:
        expected = weights[0] * a[k] + weights[1] * b[k] + weights[2] * c[k]
        assert torch.allclose(soup3[k], expected, atol=1e-6), k


def test_soup_mismatches_raise(three_models, tmp_path):
    wide = save_tiny(tmp_path / "wide", seed=0, n_embd=32)
    with pytest.raises(ValueError, match="shape"):
        interpolate([three_models[0], wide], [0.5, 0.5], tmp_path / "x")
    other_vocab = save_tiny(tmp_path / "vocab", seed=0, words=["<pad>", "<eos>", "a", "b", "d"])
    with pytest.raises(ValueError, match="tokenizer"):
        interpolate([three_models[0], other_vocab], [0.5, 0.5], tmp_path / "y")
    with pytest.raises(ValueError, match="sum to 1"):
        interpolate(three_models[:2], [0.5, 0.6], tmp_path / "z")
    with pytest.raises(ValueError, match="3 weights but there are 2 objectives"):
        interpolate(three_models[:2], [0.2, 0.3, 0.5], tmp_path / "w")


# ---------------------------------------------------------------- Mixed-PO split

@pytest.fixture
def pairs():
    return Dataset.from_dict({"prompt": ["p0", "p1", "p1", "p2", "p3", "p4"],
                              "chosen": ["c"] * 6, "rejected": ["r"] * 6})


def test_split_by_threshold(pairs):
    gaps = [3.0, 0.5, -4.0, 1.0, 2.0, 1.0]
    easy, hard = split_pairs(pairs, gaps, threshold=1.0)
    assert easy["prompt"] == ["p0", "p3"]  # gaps 3.0 and 2.0: strictly above the threshold
    assert hard["prompt"] == ["p1", "p1", "p2", "p4"]  # small, equal to the threshold, or against the label
    assert hard_prompts(hard) == ["p1", "p2", "p4"]
    easy0, hard0 = split_pairs(pairs, gaps, threshold=0.0)
    assert hard0["prompt"] == ["p1"] and len(easy0) == 5  # only the pair the reward model disagrees with
    with pytest.raises(ValueError, match=">= 0"):
        split_pairs(pairs, gaps, threshold=-1.0)


def test_split_by_quantile(pairs):
    gaps = [6.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert easy_threshold(gaps, quantile=0.5) == pytest.approx(3.5)  # linear-interpolated median
    easy, hard = split_pairs(pairs, gaps)  # default: the upper half by gap is easy
    assert easy["prompt"] == ["p0", "p3", "p4"] and hard["prompt"] == ["p1", "p1", "p2"]
    easy, _ = split_pairs(pairs, gaps, quantile=0.8)
    assert easy["prompt"] == ["p0"]  # 0.8-quantile = 5.0; only 6.0 is above it
    # the quantile never makes a pair the reward model ranks against its label easy
    negative = [-5.0, -4.0, -3.0, -2.0, -1.0, 0.5]
    easy, hard = split_pairs(pairs, negative, quantile=0.1)
    assert easy["prompt"] == ["p4"] and len(hard) == 5
    # a threshold takes precedence over the quantile
    assert split_pairs(pairs, gaps, threshold=4.5, quantile=0.1)[0]["prompt"] == ["p0", "p4"]


def test_pooled_duplicates_are_kept_once_in_the_scalarised_orientation():
    """Objective A compares (a, b) and (c, d); objective B compares (b, a) the other way, (c, d) alike, (e, f)."""
    pooled = Dataset.from_dict({"prompt": ["p0", "p1", "p0", "p1", "p2"], "chosen": ["a", "c", "b", "c", "e"],
                                "rejected": ["b", "d", "a", "d", "f"]})
    gaps = [-2.0, 1.0, 2.0, 1.0, -0.5]  # the scalarised reward prefers b to a; f to e (no conflict: kept as labelled)
    kept, kept_gaps = unique_pairs(pooled, gaps)
    rows = list(zip(kept["prompt"], kept["chosen"], kept["rejected"]))
    assert rows == [("p0", "b", "a"), ("p1", "c", "d"), ("p2", "e", "f")] and kept_gaps == [2.0, 1.0, -0.5]
    # plain reference: one row per unordered pair, no pair twice, no pair in both orientations
    assert len({(p, frozenset((c, r))) for p, c, r in rows}) == len(rows) == 3
    with pytest.raises(ValueError, match="5 pairs"):
        unique_pairs(pooled, [1.0])


def test_split_input_errors(pairs):
    with pytest.raises(ValueError, match="6 pairs"):
        split_pairs(pairs, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        split_pairs(pairs, [1.0] * 6, quantile=1.5)
    with pytest.raises(ValueError, match="either threshold"):
        split_pairs(pairs, [1.0] * 6, quantile=None)
