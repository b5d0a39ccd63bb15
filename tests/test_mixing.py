"""The log-linear mixture decoder against plain reference computations on tiny random GPT-2 policies."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
from transformers.generation.logits_process import TopPLogitsWarper

from mpo.models.decoding import response_mask, top_p_filter_
from mpo.models.mixing import LogLinearMixture, MixturePolicy
from mpo.models.policies import Decoding, HFPolicy
from tests.enumerable import RESPONSE_LEN, VOCAB, all_responses, random_policy, sequence_logprobs

EOS = 0  # the enumerable policies' EOS (= pad) token


@pytest.fixture(scope="module")
def policies():
    return [random_policy(seed) for seed in (11, 12, 13)]


def left_padded_batch():
    """Three prompts of lengths 4, 2, 3, left-padded with EOS; also returned unpadded for references."""
    rows = [[1, 2, 3, 4], [3, 1], [2, 4, 4]]
    width = max(map(len, rows))
    ids = torch.tensor([[EOS] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask, rows


@torch.no_grad()
def reference_next_token(models, weights, row: list[int]) -> torch.Tensor:
    """Plain token-level mixture at the end of one unpadded row: full forward, no cache."""
    ids = torch.tensor([row])
    mixed = sum(w * torch.log_softmax(m(ids).logits[0, -1], -1) for m, w in zip(models, weights))
    return torch.log_softmax(mixed, -1)


@torch.no_grad()
def reference_sequence_logprob(models, weights, prompt: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """Σ_t log of the per-step token mixture, for every response after one prompt [1, P]: [Y]."""
    ids = torch.cat([prompt.repeat(len(responses), 1), responses], 1)
    mixed = sum(w * torch.log_softmax(m(ids).logits[:, :-1], -1) for m, w in zip(models, weights))
    token_logp = torch.log_softmax(mixed, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return token_logp[:, prompt.shape[1] - 1 :].sum(-1)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


def empirical(sequences: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Empirical distribution over all_responses()' order (base-VOCAB digits, most significant first)."""
    digits = VOCAB ** torch.arange(RESPONSE_LEN - 1, -1, -1)
    index = (sequences[:, prompt_len:] * digits).sum(-1)
    return torch.bincount(index, minlength=VOCAB**RESPONSE_LEN).double() / len(sequences)


# ------------------------------------------------------------------------------ reduces to one policy


@pytest.mark.parametrize("k", [0, 1, 2])
def test_one_hot_weights_give_that_policys_next_token_logprobs(policies, k):
    ids, mask, rows = left_padded_batch()
    weights = [float(j == k) for j in range(3)]
    got = LogLinearMixture(policies, weights).next_token_logprobs(ids, mask)
    want = torch.stack([torch.log_softmax(policies[k](torch.tensor([r])).logits[0, -1], -1) for r in rows]).detach()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_one_hot_greedy_equals_hf_generate(policies):
    ids, mask, _ = left_padded_batch()
    mixture = LogLinearMixture(policies, [0.0, 1.0, 0.0])
    got = mixture.generate(ids, mask, max_new_tokens=6, do_sample=False, eos_token_id=EOS, pad_token_id=EOS)
    want = policies[1].generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=6,
                                eos_token_id=EOS, pad_token_id=EOS)
    assert torch.equal(got, want)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.5)])
def test_one_hot_sampling_equals_hf_generate_with_same_seed(policies, temperature, top_p):
    ids, mask, _ = left_padded_batch()
    ids, mask = ids.repeat(4, 1), mask.repeat(4, 1)
    mixture = LogLinearMixture(policies, [1.0, 0.0, 0.0])
    for seed in range(4):
        got = mixture.generate(ids, mask, max_new_tokens=7, temperature=temperature, top_p=top_p, seed=seed,
                               eos_token_id=EOS, pad_token_id=EOS)
        torch.manual_seed(seed)
        want = policies[0].generate(ids, attention_mask=mask, do_sample=True, temperature=temperature, top_p=top_p,
                                    top_k=0, max_new_tokens=7, eos_token_id=EOS, pad_token_id=EOS)
        assert torch.equal(got, want), f"seed {seed}"
    assert (got[:, ids.shape[1] :] == EOS).any(), "EOS never sampled: the padding-after-EOS path went untested"


def test_identical_policies_give_that_policy(policies):
    mixture = LogLinearMixture([policies[0]] * 3, [0.2, 0.3, 0.5])
    ids, mask, rows = left_padded_batch()
    want = torch.stack([reference_next_token(policies[:1], [1.0], r) for r in rows])
    torch.testing.assert_close(mixture.next_token_logprobs(ids, mask), want, atol=1e-5, rtol=0)
    prompt, responses = torch.tensor([[1, 2]]), all_responses()
    seqs = torch.cat([prompt.repeat(len(responses), 1), responses], 1)
    torch.testing.assert_close(mixture.sequence_logprob(seqs, prompt_len=2),
                               sequence_logprobs(policies[0], prompt, responses)[0], atol=1e-5, rtol=0)


# --------------------------------------------------------------------- token-level mixture vs reference


def test_next_token_logprobs_equal_reference_with_left_padding(policies):
    weights = [0.2, 0.5, 0.3]
    ids, mask, rows = left_padded_batch()
    got = LogLinearMixture(policies, weights).next_token_logprobs(ids, mask)
    want = torch.stack([reference_next_token(policies, weights, r) for r in rows])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.exp().sum(-1), torch.ones(3), atol=1e-5, rtol=0)


def test_incremental_decoding_equals_full_recompute(policies):
    """The KV caches stay consistent: at every step the cached log-probs match a from-scratch forward."""
    weights = [0.6, 0.1, 0.3]
    mixture = LogLinearMixture(policies, weights)
    ids, mask, rows = left_padded_batch()
    decoder = mixture.decoder(ids, mask, max_new_tokens=6)
    generator = torch.Generator().manual_seed(0)
    for step in range(6):
        want = torch.stack([reference_next_token(policies, weights, r) for r in rows])
        torch.testing.assert_close(decoder.logprobs, want, atol=1e-5, rtol=0, msg=f"step {step}")
        if step < 5:
            tokens = torch.randint(0, VOCAB, (3,), generator=generator)
            rows = [r + [int(t)] for r, t in zip(rows, tokens)]
            decoder.advance(tokens)


def test_zero_weight_models_are_not_run_while_decoding(policies):
    calls = []
    handle = policies[2].register_forward_hook(lambda *args: calls.append(1))
    try:
        mixture = LogLinearMixture(policies, [0.5, 0.5, 0.0])
        mixture.generate(torch.tensor([[1, 2]]), max_new_tokens=4, seed=0)
        assert calls == []
        mixture.component_logprobs(torch.tensor([[1, 2, 3]]), prompt_len=2)  # but all components are scored
        assert calls != []
    finally:
        handle.remove()


# ------------------------------------------------------- sequence distributions on the enumerable space


@pytest.fixture(scope="module")
def sharp_mixture():
    """Two sharp policies whose token-level and sequence-level mixtures differ a lot (TV ≈ 0.34)."""
    models = [random_policy(6, temperature=0.1), random_policy(7, temperature=0.1)]
    return LogLinearMixture(models, [0.3, 0.7]), models


def test_token_level_sequence_distribution(sharp_mixture):
    mixture, models = sharp_mixture
    prompt, responses = torch.tensor([[1, 2]]), all_responses()
    seqs = torch.cat([prompt.repeat(len(responses), 1), responses], 1)
    token_level = mixture.sequence_logprob(seqs, prompt_len=2)
    torch.testing.assert_close(token_level.double().exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(token_level, reference_sequence_logprob(models, mixture.weights, prompt, responses),
                               atol=1e-4, rtol=0)
    components = mixture.component_logprobs(seqs, prompt_len=2)
    for k, model in enumerate(models):
        torch.testing.assert_close(components[:, k], sequence_logprobs(model, prompt, responses)[0], atol=1e-4, rtol=0)
    target = torch.softmax(components.double() @ torch.tensor(mixture.weights, dtype=torch.float64), 0)
    assert total_variation(token_level.double().exp(), target) > 0.25  # the two mixtures really differ


def sequence_target(mixture, prompt):
    """The sequence-level target over every response to ``prompt``, and the token-level law's TV from it."""
    responses = all_responses()
    seqs = torch.cat([prompt.repeat(len(responses), 1), responses], 1)
    components = mixture.component_logprobs(seqs, prompt_len=prompt.shape[1]).double()
    target = torch.softmax(components @ torch.tensor(mixture.weights, dtype=torch.float64), 0)
    return target, total_variation(mixture.sequence_logprob(seqs, prompt_len=prompt.shape[1]).double().exp(), target)


def test_sequence_level_resampling_approaches_sequence_level_target(sharp_mixture):
    mixture, _ = sharp_mixture
    prompt = torch.tensor([[1, 2]])
    target, exact_token_tv = sequence_target(mixture, prompt)

    draws = 1000
    prompts = prompt.repeat(draws, 1)
    token_level = mixture.generate(prompts, max_new_tokens=RESPONSE_LEN, seed=1)
    sir = mixture.sample_sequence_level(prompts, num_candidates=8, max_new_tokens=RESPONSE_LEN, seed=0)
    token_tv = total_variation(empirical(token_level, 2), target)
    sir_tv = total_variation(empirical(sir.sequences, 2), target)
    assert sir_tv < 0.5 * exact_token_tv and sir_tv < 0.5 * token_tv, (sir_tv, token_tv, exact_token_tv)
    assert (sir.effective_sample_size > 1).all() and (sir.effective_sample_size <= 8 + 1e-4).all()
    via_generate = mixture.generate(prompts[:4], max_new_tokens=RESPONSE_LEN, mode="sequence", num_candidates=8, seed=0)
    assert via_generate.shape == (4, 2 + RESPONSE_LEN)


def test_defensive_resampling_weights_are_the_target_over_the_balance_density(policies):
    """Candidates from q_tok and from each π_k with λ_k > 0 (a zero-weight model draws none), weighted by
    Π_k π_k^λ_k / (α_0 q_tok + Σ α_k π_k): the weights equal that ratio recomputed by full forwards, EOS included."""
    from mpo.models.resampling import defensive_counts, sample_defensive

    mixture = LogLinearMixture(policies, [0.35, 0.65, 0.0])
    prompt = torch.tensor([[1, 2, 3]])
    drawn = sample_defensive(mixture, prompt.repeat(5, 1), num_candidates=6, share=0.5, max_new_tokens=RESPONSE_LEN,
                             generator=torch.Generator().manual_seed(4), eos_token_id=EOS, pad_token_id=EOS)
    assert defensive_counts(6, 0.5, 2) == [3, 2, 1] and drawn.candidates.shape[:2] == (5, 6)
    seqs = drawn.candidates.flatten(0, 1)
    assert (seqs[:, 3:] == EOS).any()
    components = mixture.component_logprobs(seqs, prompt_len=3, eos_token_id=EOS).double()
    token = mixture.sequence_logprob(seqs, prompt_len=3, eos_token_id=EOS).double()
    log_q = torch.logsumexp(torch.stack([token + torch.tensor(3 / 6).log(), components[:, 0] + torch.tensor(2 / 6).log(),
                                         components[:, 1] + torch.tensor(1 / 6).log()], -1), -1)
    want = 0.35 * components[:, 0] + 0.65 * components[:, 1] - log_q
    torch.testing.assert_close(drawn.log_weights.flatten(), want, atol=1e-6, rtol=0)
    assert ((drawn.sequences[:, None] == drawn.candidates).all(-1)).any(-1).all()  # each output is a candidate
    assert (drawn.effective_sample_size <= 6 + 1e-6).all()
    with pytest.raises(ValueError, match="at least 3 candidates"):
        defensive_counts(2, 0.5, 2)


def test_defensive_resampling_approaches_the_sequence_level_target(sharp_mixture):
    mixture, _ = sharp_mixture
    from mpo.models.resampling import sample_defensive

    prompt = torch.tensor([[1, 2]])
    target, token_tv = sequence_target(mixture, prompt)
    drawn = sample_defensive(mixture, prompt.repeat(1000, 1), num_candidates=8, share=0.5,
                             max_new_tokens=RESPONSE_LEN, generator=torch.Generator().manual_seed(0))
    assert total_variation(empirical(drawn.sequences, 2), target) < 0.5 * token_tv


@torch.no_grad()
def reference_log_weights(models, weights, seqs, prompt_len, *, temperature, top_p, min_new_tokens, eos):
    """log Π_k π_k(y)^λ_k − log q(y) by full forwards, q being the per-step sampling rule (EOS ban, T, top-p)."""
    mixed = sum(w * torch.log_softmax(m(seqs).logits[:, :-1], -1) for m, w in zip(models, weights))
    targets = seqs[:, 1:, None]
    mask = response_mask(seqs, prompt_len, eos)[:, 1:]
    total = torch.zeros(len(seqs))
    for t in range(prompt_len - 1, seqs.shape[1] - 1):
        scores = torch.log_softmax(mixed[:, t], -1)
        if t - (prompt_len - 1) < min_new_tokens:
            scores[:, eos] = -float("inf")
        scores = top_p_filter_(scores / temperature, top_p)
        log_q = torch.log_softmax(scores, -1).gather(-1, targets[:, t]).squeeze(-1)
        total += (mixed[:, t].gather(-1, targets[:, t]).squeeze(-1) - log_q) * mask[:, t]
    return total


@pytest.mark.parametrize("temperature,top_p,min_new_tokens", [(1.0, 1.0, 0), (0.7, 0.9, 0), (1.3, 1.0, 2)])
def test_resampling_weights_accumulated_while_decoding_match_a_full_rescoring(policies, temperature, top_p,
                                                                              min_new_tokens):
    """The SIR weights are summed step by step in the decode loop (no second pass): they must equal the
    target's log-density minus the proposal's, both recomputed from scratch, EOS and its ban included."""
    mixture = LogLinearMixture(policies[:2], [0.35, 0.65])
    prompt = torch.tensor([[1, 2, 3]])
    sir = mixture.sample_sequence_level(prompt.repeat(6, 1), num_candidates=4, max_new_tokens=RESPONSE_LEN, seed=3,
                                        temperature=temperature, top_p=top_p, min_new_tokens=min_new_tokens,
                                        eos_token_id=EOS, pad_token_id=EOS)
    seqs = sir.candidates.flatten(0, 1)
    want = reference_log_weights(policies[:2], mixture.weights, seqs, 3, temperature=temperature, top_p=top_p,
                                 min_new_tokens=min_new_tokens, eos=EOS)
    assert (seqs[:, 3:] == EOS).any()  # some candidates sampled EOS: its masking is exercised
    torch.testing.assert_close(sir.log_weights.flatten(), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.9, 0.999])
def test_top_p_filter_keeps_the_same_nucleus_as_hf(top_p):
    scores = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)) * 3
    scores[0, 7] = 100.0  # one row where a single token holds all the mass: it alone is kept
    got = top_p_filter_(scores.clone(), top_p)
    assert torch.equal(got, TopPLogitsWarper(top_p)(None, scores.clone()))
    assert torch.isfinite(got[0]).sum() == 1 and torch.isfinite(got).sum(-1).min() >= 1


def test_response_mask_stops_after_first_eos():
    seqs = torch.tensor([[5, 5, 1, 0, 0, 0], [5, 5, 1, 2, 3, 4], [5, 5, 0, 0, 0, 0]])
    want = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [0, 0, 1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(response_mask(seqs, prompt_len=2, eos_token_id=0), want)


# ------------------------------------------------------------------------------------ clear errors


def test_mismatched_vocab_size_is_rejected():
    with pytest.raises(ValueError, match=r"model 1 has vocab_size 7 but model 0 has 5"):
        LogLinearMixture([random_policy(0), random_policy(1, vocab=7)], [0.5, 0.5])


def test_mismatched_tokenizers_are_rejected(tmp_path):
    a, b = word_tokenizer(["a", "b", "c"]), word_tokenizer(["a", "b", "d"])
    models = [tiny_lm(len(a), seed) for seed in (0, 1)]
    with pytest.raises(ValueError, match=r"tokenizer 1 differs from tokenizer 0"):
        LogLinearMixture(models, [0.5, 0.5], tokenizers=[a, b])
    LogLinearMixture(models, [0.5, 0.5], tokenizers=[a, word_tokenizer(["a", "b", "c"])])  # equal vocabularies pass


@pytest.mark.parametrize("weights,message", [
    ([0.5, 0.6], r"sum to 1.*normalise"),
    ([0.5], r"one weight per model.*pass exactly 2"),
    ([0.5, 0.25, 0.25], r"one weight per model.*pass exactly 2"),
    ([1.5, -0.5], r"non-negative"),
    ([float("nan"), 1.0], r"finite"),
])
def test_weights_off_the_simplex_are_rejected(weights, message):
    with pytest.raises(ValueError, match=message):
        LogLinearMixture([random_policy(0), random_policy(1)], weights)


def test_no_models_is_rejected():
    with pytest.raises(ValueError, match="at least one model"):
        LogLinearMixture([], [])


# ------------------------------------------------------------------------------------ text adapter


WORDS = ["good", "bad", "movie", "film", "very", "not", "the", "a", "is", "was"]


def word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<eos>")
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_lm(vocab_size: int, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=2, eos_token_id=2, pad_token_id=0)
    return GPT2LMHeadModel(config).eval()


def test_mixture_policy_returns_strings(tmp_path):
    tokenizer = word_tokenizer(WORDS)
    tokenizer.save_pretrained(tmp_path / "tok")  # a locally trained tokenizer round-trips from disk
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path / "tok", padding_side="left")
    models = [tiny_lm(len(tokenizer), seed) for seed in (0, 1)]
    prompts = ["the movie was", "a film", "not very good movie", "bad"]
    decoding = Decoding(max_new_tokens=6, seed=3, batch_size=3)

    policy = MixturePolicy(LogLinearMixture(models, [0.4, 0.6], tokenizers=[tokenizer, tokenizer]), tokenizer)
    responses = policy.generate(prompts, decoding)
    assert len(responses) == len(prompts) and all(isinstance(r, str) for r in responses)
    assert any(responses) and policy.generate(prompts, decoding) == responses  # seeded by decoding.seed
    assert set(" ".join(responses).split()) <= set(WORDS) | {"<unk>"}

    one_hot = MixturePolicy(LogLinearMixture(models, [0.0, 1.0]), tokenizer)
    assert one_hot.generate(prompts, decoding) == HFPolicy(models[1], tokenizer).generate(prompts, decoding)
    sequence_level = MixturePolicy(LogLinearMixture(models, [0.4, 0.6]), tokenizer, mode="sequence", num_candidates=4)
    assert len(sequence_level.generate(prompts, decoding)) == len(prompts)


def test_mixture_policy_densities_for_the_kl(tmp_path):
    """What `mpo.stages.evaluation.kl_to_reference` reads: token mode's density is the token-level mixture's, exactly;
    sequence mode's is Σ_k λ_k log π_k − log Ẑ, with Ẑ the mean importance weight of the response's own
    candidates (checked against the exact Z on one prompt by enumeration)."""
    tokenizer = word_tokenizer(WORDS)
    models = [tiny_lm(len(tokenizer), seed) for seed in (0, 1)]
    mixture = LogLinearMixture(models, [0.4, 0.6])
    prompts, decoding = ["the movie was", "a film"], Decoding(max_new_tokens=2, seed=3, batch_size=2)
    token = MixturePolicy(mixture, tokenizer).generate_tokens(prompts, decoding)
    got = MixturePolicy(mixture, tokenizer).response_logprobs(token.prompt_ids, token.completion_ids)
    for i, (p_ids, c_ids) in enumerate(zip(token.prompt_ids, token.completion_ids)):
        ids = torch.tensor([p_ids + c_ids])
        want = reference_sequence_logprob(models, mixture.weights, ids[:, : len(p_ids)], ids[:, len(p_ids):])
        torch.testing.assert_close(got[i], want[0].double(), atol=1e-5, rtol=0)

    # sequence mode on one prompt, responses of exactly 2 tokens (EOS masked out of the vocabulary)
    vocab = len(tokenizer)
    for model in models:
        with torch.no_grad():
            model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.clone())
            model.lm_head.weight[tokenizer.eos_token_id] = -1e4  # never ends: all responses have 2 tokens
    policy = MixturePolicy(mixture, tokenizer, mode="sequence", num_candidates=2000)
    drawn = policy.generate_tokens(["the movie was"], Decoding(max_new_tokens=2, seed=0, batch_size=1))
    prompt = torch.tensor([drawn.prompt_ids[0]])
    grid = torch.cartesian_prod(torch.arange(vocab), torch.arange(vocab))
    components = torch.stack([sequence_logprobs(m, prompt, grid)[0] for m in models], -1).double()
    log_z = torch.logsumexp(components @ torch.tensor(mixture.weights, dtype=torch.float64), 0)
    assert abs(drawn.log_normaliser[0] - float(log_z)) < 0.05
    density = policy.response_logprobs(drawn.prompt_ids, drawn.completion_ids, drawn.log_normaliser)
    row = (grid == torch.tensor(drawn.completion_ids[0])).all(-1)
    want = components[row][0] @ torch.tensor(mixture.weights, dtype=torch.float64) - drawn.log_normaliser[0]
    torch.testing.assert_close(density[0], want, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="needs log Ẑ"):
        policy.response_logprobs(drawn.prompt_ids, drawn.completion_ids)


def test_mixture_policy_needs_left_padding():
    tokenizer = word_tokenizer(WORDS)
    tokenizer.padding_side = "right"
    with pytest.raises(ValueError, match="padding_side = 'left'"):
        MixturePolicy(LogLinearMixture([tiny_lm(len(tokenizer), 0)], [1.0]), tokenizer)


# ------------------------------------------------------------------------------------ benchmark entry


def test_bench_runs_end_to_end_on_tiny_sizes(tmp_path, capsys):
    """Smoke test of `python -m mpo.studies.bench` (timings are reported, never asserted)."""
    import json

    from mpo.studies import bench

    out = tmp_path / "bench.json"
    bench.main(["--bsmd-shape", "8", "4", "2", "--bsmd-steps", "5", "--batch", "2", "--prompt-len", "3",
                "--new-tokens", "4", "--ks", "2", "--repeats", "1", "--warmup", "0", "--out", str(out)])
    results = json.loads(out.read_text())
    assert set(results["mixture"]["mixture"]) == {"1", "2"}
    assert all(row["ratio"] > 0 for row in results["mixture"]["mixture"].values())
    assert "mixture K=2 / HF generate" in capsys.readouterr().out
    if results["bsmd"]["available"]:
        assert abs(sum(results["bsmd"]["weights"]) - 1) < 1e-3
