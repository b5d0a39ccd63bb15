"""Bradley–Terry reward model via TRL RewardTrainer, and the reward-model scorer, on a tiny local GPT-2.

`build_tiny_lm` and `preference_pairs` are shared with test_dpo.py and test_em.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, GPT2Config, GPT2LMHeadModel
from transformers import PreTrainedTokenizerFast

from mpo.scorers.reward_model import RewardModelScore
from mpo.training.reward_model import train_reward_model

PROMPTS = [f"q{i} the movie was" for i in range(8)]
FILLERS = "a b c d e f g h".split()
WORDS = ["<pad>", "<eos>", "<unk>", *[f"q{i}" for i in range(8)], "the", "movie", "was", "good", "bad", *FILLERS]



def build_tiny_lm(path: Path, *, pad_is_eos: bool = False, seed: int = 0, n_embd: int = 32) -> Path:
    """A random 1-layer GPT-2 and a word-level tokenizer over WORDS, saved together like every model artifact."""
    vocab = {w: i for i, w in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>",
                                        pad_token="<eos>" if pad_is_eos else "<pad>", padding_side="left")
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=n_embd, n_layer=1, n_head=2,
                        bos_token_id=vocab["<eos>"], eos_token_id=vocab["<eos>"], pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def filler(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(" " + rng.choice(FILLERS) for _ in range(rng.randint(lo, hi)))


def preference_pairs(n: int, seed: int, prompts: list[str] = PROMPTS) -> Dataset:
    """Chosen says "good", rejected says "bad"; the rest (length, fillers) is noise shared by neither."""
    rng = random.Random(seed)
    rows = [{"prompt": rng.choice(prompts), "chosen": " good" + filler(rng, 0, 3),
             "rejected": " bad" + filler(rng, 0, 3)} for _ in range(n)]
    return Dataset.from_list(rows)


RM_ARGS = {"max_steps": 40, "per_device_train_batch_size": 16, "learning_rate": 3e-3, "logging_steps": 10}


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    backbone = build_tiny_lm(root / "lm")
    metrics = train_reward_model(backbone, preference_pairs(96, seed=0, prompts=PROMPTS[:6]), root / "rm",
                                 trl_args=RM_ARGS, eval_pairs=preference_pairs(64, seed=1, prompts=PROMPTS[:6]))
    return root, metrics


def test_reward_model_learns_held_out_preference(trained_rm):
    root, metrics = trained_rm
    assert metrics["eval/accuracy"] > 0.8, metrics
    assert metrics["eval/margin"] > 0
    assert metrics["train/steps"] == RM_ARGS["max_steps"]
    assert metrics["trained_sequences"] == 2 * RM_ARGS["max_steps"] * RM_ARGS["per_device_train_batch_size"]
    assert 0 < metrics["train/loss"] < 0.69  # below chance level log 2


def test_saved_reward_model_is_a_scalar_head_with_pad_id(trained_rm):
    root, _ = trained_rm
    model = AutoModelForSequenceClassification.from_pretrained(root / "rm")
    tokenizer = AutoTokenizer.from_pretrained(root / "rm")
    assert model.config.num_labels == 1
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert not (root / "rm" / "_trainer").exists()  # no empty trainer dir left in the artifact
    backbone = GPT2LMHeadModel.from_pretrained(root / "lm")
    assert not torch.equal(model.transformer.wte.weight, backbone.transformer.wte.weight)  # trained, not frozen


def test_scorer_ranks_unseen_pairs(trained_rm):
    root, _ = trained_rm
    unseen = preference_pairs(40, seed=7, prompts=PROMPTS[6:])  # prompts never seen in training
    score = RewardModelScore(root / "rm", batch_size=8)
    chosen = torch.tensor(score(list(unseen["prompt"]), list(unseen["chosen"])))
    rejected = torch.tensor(score(list(unseen["prompt"]), list(unseen["rejected"])))
    assert (chosen > rejected).float().mean() > 0.8


@torch.no_grad()
def plain_score(model, tokenizer, text: str) -> float:
    """Reference: the head's output at the last token of the unpadded sequence the trainer pooled."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    if tokenizer.pad_token_id == tokenizer.eos_token_id:  # the appended EOS counts as padding: pooled before it
        ids = ids[:, :-1]
    return float(model(input_ids=ids).logits[0, 0])


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_scorer_matches_unpadded_forward_at_any_batch_size(tmp_path, pad_is_eos):
    lm = build_tiny_lm(tmp_path / "lm", pad_is_eos=pad_is_eos, seed=3)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(lm, num_labels=1).eval()
    tokenizer = AutoTokenizer.from_pretrained(lm)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    rng = random.Random(0)
    prompts = [rng.choice(PROMPTS) for _ in range(9)]
    responses = [" good" + filler(rng, 0, 6) for _ in range(9)]  # lengths differ: padding is exercised
    expected = [plain_score(model, tokenizer, p + r + "<eos>") for p, r in zip(prompts, responses)]
    for batch_size in (1, 4, 64):
        got = RewardModelScore(tmp_path / "rm", batch_size=batch_size, device="cpu")(prompts, responses)
        assert got == pytest.approx(expected, abs=1e-5)


def test_scorer_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        RewardModelScore(tmp_path)(["a", "b"], ["c"])
