"""DPO stage (TRL DPOTrainer) on a tiny local GPT-2: the policy moves toward the chosen word, β reaches TRL."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from mpo.training.dpo import completion_logprobs, train_dpo
from test_reward_model import PROMPTS, build_tiny_lm, filler, preference_pairs

DPO_ARGS = {"max_steps": 30, "per_device_train_batch_size": 16, "learning_rate": 3e-3, "logging_steps": 10}
BETA = 0.3



class RecordArgs(TrainerCallback):
    """Keeps the TrainingArguments the trainer actually ran with."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.args = args


@torch.no_grad()
def plain_logprob(model, tokenizer, prompt: str, completion: str) -> float:
    """Reference: one unpadded sequence, sum of log p of the completion's tokens (EOS included)."""
    prompt_len = len(tokenizer(prompt)["input_ids"])
    ids = torch.tensor([tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]])
    logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
    targets = ids[0, 1:]
    return float(logp[torch.arange(len(targets)), targets][prompt_len - 1 :].sum())


def margins(path, pairs) -> torch.Tensor:
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    prompts = list(pairs["prompt"])
    return (completion_logprobs(model, tokenizer, prompts, list(pairs["chosen"]))
            - completion_logprobs(model, tokenizer, prompts, list(pairs["rejected"])))


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo")
    policy = build_tiny_lm(root / "lm", seed=1)
    recorder = RecordArgs()
    metrics = train_dpo(policy, preference_pairs(96, seed=0), root / "dpo", beta=BETA, trl_args=DPO_ARGS,
                        eval_pairs=preference_pairs(48, seed=1), callbacks=[recorder], seed=0)
    return root, metrics, recorder


def test_completion_logprobs_match_unbatched_reference(tmp_path):
    path = build_tiny_lm(tmp_path / "lm", seed=2)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    rng = random.Random(0)
    prompts = [rng.choice(PROMPTS) for _ in range(7)]
    completions = [" good" + filler(rng, 0, 5) for _ in range(7)]
    expected = [plain_logprob(model, tokenizer, p, c) for p, c in zip(prompts, completions)]
    got = completion_logprobs(model, tokenizer, prompts, completions, batch_size=3)
    assert got.tolist() == pytest.approx(expected, abs=1e-4)


def test_dpo_raises_chosen_over_rejected_relative_to_reference(dpo_run):
    root, metrics, _ = dpo_run
    held_out = preference_pairs(48, seed=2)
    gain = margins(root / "dpo", held_out) - margins(root / "lm", held_out)
    assert gain.mean() > 0.5 and (gain > 0).float().mean() > 0.9
    before = AutoModelForCausalLM.from_pretrained(root / "lm").state_dict()
    after = AutoModelForCausalLM.from_pretrained(root / "dpo").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert metrics["eval/reward_accuracy"] > 0.5 and metrics["eval/reward_margin"] > 0
    assert metrics["train/loss"] < 0.69  # below log 2, the loss of an untrained policy
    # a pair is two sequences: the budget's unit (mpo.config.budget)
    assert metrics["trained_sequences"] == 2 * DPO_ARGS["max_steps"] * DPO_ARGS["per_device_train_batch_size"]


def test_beta_reaches_trl_and_scales_eval_margin(dpo_run):
    root, metrics, recorder = dpo_run
    assert recorder.args.beta == BETA and metrics["beta"] == BETA
    assert recorder.args.precompute_ref_log_probs
    eval_pairs = preference_pairs(48, seed=1)
    expected = BETA * (margins(root / "dpo", eval_pairs) - margins(root / "lm", eval_pairs))
    assert metrics["eval/reward_margin"] == pytest.approx(float(expected.mean()), rel=1e-4)
    assert metrics["eval/reward_accuracy"] == pytest.approx(float((expected > 0).float().mean()))


def test_saved_policy_loads_with_its_tokenizer(dpo_run):
    root, _, _ = dpo_run
    tokenizer = AutoTokenizer.from_pretrained(root / "dpo")
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"
    model = AutoModelForCausalLM.from_pretrained(root / "dpo")
    out = model.generate(**tokenizer([PROMPTS[0]], return_tensors="pt"), max_new_tokens=3, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > 4


def test_explicit_reference_equal_to_policy_gives_same_policy(dpo_run, tmp_path):
    """A reference given by path (loaded, precomputed) must act exactly like the default (the initial policy)."""
    root, _, _ = dpo_run
    train_dpo(root / "lm", preference_pairs(96, seed=0), tmp_path / "dpo", beta=BETA, trl_args=DPO_ARGS,
              ref_model_path=root / "lm", seed=0)
    default = AutoModelForCausalLM.from_pretrained(root / "dpo").state_dict()
    explicit = AutoModelForCausalLM.from_pretrained(tmp_path / "dpo").state_dict()
    assert all(torch.allclose(default[k], explicit[k], atol=1e-5) for k in default)


def test_conflicting_beta_is_refused(tmp_path):
    with pytest.raises(ValueError, match="disagrees"):
        train_dpo(tmp_path, preference_pairs(4, seed=0), tmp_path / "out", beta=0.1,
                  trl_args={"beta": 0.5}, seed=0)


def with_token_ids(pairs, tokenizer, truncate_rejected: bool):
    """The pairs as sampled ids: chosen finished (EOS), rejected cut off (no EOS) when ``truncate_rejected``."""
    eos = tokenizer.eos_token_id
    prompt_ids = [tokenizer(p)["input_ids"] for p in pairs["prompt"]]
    chosen = [tokenizer(c)["input_ids"] + [eos] for c in pairs["chosen"]]
    rejected = [tokenizer(r)["input_ids"] + ([] if truncate_rejected else [eos]) for r in pairs["rejected"]]
    return pairs.add_column("prompt_ids", prompt_ids).add_column("chosen_ids", chosen).add_column("rejected_ids", rejected)


def test_pairs_with_token_ids_train_on_exactly_those_ids(dpo_run, tmp_path):
    """DPO takes the sampled ids as they are (a truncated response keeps no EOS): TRL's prepared dataset is the
    ids, and the held-out implicit reward is measured on the same ids."""
    from mpo.models.policies import logprobs_of_ids
    from mpo.training.dpo import TokenIdDPOTrainer

    root, _, _ = dpo_run
    tokenizer = AutoTokenizer.from_pretrained(root / "lm")
    pairs = with_token_ids(preference_pairs(96, seed=0), tokenizer, truncate_rejected=True)
    seen = {}
    original = TokenIdDPOTrainer._prepare_dataset

    def spy(self, dataset, *args, **kwargs):
        prepared = original(self, dataset, *args, **kwargs)
        seen["rows"] = prepared
        return prepared

    TokenIdDPOTrainer._prepare_dataset = spy
    try:
        held_out = with_token_ids(preference_pairs(48, seed=2), tokenizer, truncate_rejected=True)
        metrics = train_dpo(root / "lm", pairs, tmp_path / "dpo", beta=BETA, trl_args=DPO_ARGS, eval_pairs=held_out,
                            seed=0)
    finally:
        TokenIdDPOTrainer._prepare_dataset = original
    assert seen["rows"]["chosen_ids"] == pairs["chosen_ids"] and seen["rows"]["rejected_ids"] == pairs["rejected_ids"]
    assert all(ids[-1] != tokenizer.eos_token_id for ids in seen["rows"]["rejected_ids"])
    policy = AutoModelForCausalLM.from_pretrained(tmp_path / "dpo").eval()
    reference = AutoModelForCausalLM.from_pretrained(root / "lm").eval()
    margin = torch.zeros(len(held_out), dtype=torch.float64)
    for model, sign in ((policy, 1.0), (reference, -1.0)):
        for column, side in (("chosen_ids", 1.0), ("rejected_ids", -1.0)):
            margin += sign * side * BETA * logprobs_of_ids(model, held_out["prompt_ids"], held_out[column],
                                                             tokenizer.pad_token_id)
    assert metrics["eval/reward_margin"] == pytest.approx(float(margin.mean()), rel=1e-4)
    assert metrics["eval/reward_accuracy"] > 0.8
