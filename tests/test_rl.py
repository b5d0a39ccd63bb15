"""The RL stage (TRL GRPO / RLOO) on a tiny GPT-2 over a 14-word vocabulary: it raises the reward it
optimises (measured by our own seeded sampling, not by TRL's logs), keeps a finite KL, honours a separate KL
reference, and passes weights and callbacks through."""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, TrainerCallback

from mpo.models.policies import Decoding, HFPolicy
from mpo.training.rl import as_reward_func, train_rl

WORDS = ["<pad>", "<eos>", "good", "bad", "the", "movie", "was", "a", "plot", "and", "very", "not", "film", "it"]
PROMPTS = ["the movie was", "it was a", "the plot", "a film"] * 8
MAX_NEW_TOKENS = 8


def save_tiny_policy(path, seed: int, sharpness: float = 1.0):
    """A random tiny GPT-2 + WordLevel tokenizer; ``sharpness`` > 1 scales the (tied) embeddings so its
    next-token distributions are far from the near-uniform ones of a fresh init."""
    vocab = {w: i for i, w in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece()  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=32, n_layer=1, n_head=2,
                        eos_token_id=1, pad_token_id=0)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        model.transformer.wte.weight.mul_(sharpness)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def count_good(prompts, responses):
    return [float(r.split().count("good")) for r in responses]


def count_bad(prompts, responses):
    return [float(r.split().count("bad")) for r in responses]


def sampled_reward(path, n: int = 256, seed: int = 123) -> float:
    """Plain reference: mean count of "good" in n seeded samples from the saved policy."""
    prompts = ["the movie was", "it was a"] * (n // 2)
    responses = HFPolicy.from_pretrained(path).generate(prompts, Decoding(max_new_tokens=MAX_NEW_TOKENS, seed=seed))
    return sum(count_good(prompts, responses)) / n


def max_param_change(a, b) -> float:
    pa = AutoModelForCausalLM.from_pretrained(str(a)).state_dict()
    pb = AutoModelForCausalLM.from_pretrained(str(b)).state_dict()
    return max((pa[k].float() - pb[k].float()).abs().max().item() for k in pa)


def rl_args(steps: int, lr: float = 3e-3, **extra):
    return {"max_steps": steps, "per_device_train_batch_size": 16, "num_generations": 8,
            "max_completion_length": MAX_NEW_TOKENS, "learning_rate": lr, **extra}


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return save_tiny_policy(tmp_path_factory.mktemp("policy"), seed=0)


@pytest.fixture(scope="module")
def other_policy(tmp_path_factory):
    return save_tiny_policy(tmp_path_factory.mktemp("other"), seed=1, sharpness=20.0)



@pytest.mark.parametrize("algorithm, steps", [("grpo", 30), ("rloo", 20)])
def test_rl_raises_the_reward_it_optimises(policy, tmp_path, algorithm, steps):
    metrics = train_rl(policy, PROMPTS, [count_good], tmp_path / "rl", beta=0.05, algorithm=algorithm,
                       trl_args=rl_args(steps), seed=0, eval_prompts=PROMPTS[:8])
    before, after = sampled_reward(policy), sampled_reward(tmp_path / "rl")
    assert after > before + 0.5, (before, after)
    assert metrics["steps"] == steps
    assert metrics["trained_sequences"] == steps * 16  # completions seen by the optimizer steps (mpo.config.budget)
    assert metrics["reward_end"] > metrics["reward_start"]
    assert math.isfinite(metrics["kl_final"]) and metrics["kl_max"] > 0
    assert {"eval_reward_initial", "eval_reward_final", "train_seconds"} <= metrics.keys()
    rows = metrics["completions"]  # the last step's samples for the W&B table: TRL still keeps them
    assert 0 < len(rows) <= 16 and all(r["prompt"] in PROMPTS and isinstance(r["completion"], str) for r in rows)
    assert all(r["reward/count_good"] == count_good([r["prompt"]], [r["completion"]])[0] for r in rows)
    assert max_param_change(policy, tmp_path / "rl") > 1e-3
    assert (tmp_path / "rl" / "tokenizer.json").exists()


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_a_separate_reference_is_the_kl_reference(policy, other_policy, tmp_path, algorithm):
    args = rl_args(2, lr=0.0)  # no update: the policy stays the initial one, so the KL is all reference
    same = train_rl(policy, PROMPTS, [count_good], tmp_path / "same", beta=0.1, trl_args=args,
                    algorithm=algorithm, ref_model_path=policy)
    other = train_rl(policy, PROMPTS, [count_good], tmp_path / "other", beta=0.1, trl_args=args,
                     algorithm=algorithm, ref_model_path=other_policy)
    assert abs(same["kl_max"]) < 1e-5  # the reference is the policy itself
    assert other["kl_final"] > 1.0  # ~8 nats/token against the sharpened reference
    assert max_param_change(policy, tmp_path / "other") == 0.0  # trained from the policy, not the reference


class RecordLogs(TrainerCallback):
    def __init__(self):
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_reward_weights_and_callbacks_reach_trl(policy, tmp_path):
    recorder = RecordLogs()
    train_rl(policy, PROMPTS, [count_good, count_bad], tmp_path / "w", beta=0.05, reward_weights=[0.25, 0.75],
             trl_args=rl_args(2), callbacks=[recorder])
    step_logs = [log for log in recorder.logs if "reward" in log]
    assert len(step_logs) == 2
    for log in step_logs:
        weighted = 0.25 * log["rewards/count_good/mean"] + 0.75 * log["rewards/count_bad/mean"]
        assert log["reward"] == pytest.approx(weighted, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="2 entries for 1 reward functions"):
        train_rl(policy, PROMPTS, [count_good], tmp_path / "x", beta=0.05, reward_weights=[0.5, 0.5],
                 trl_args=rl_args(1))
    with pytest.raises(ValueError, match="'grpo' or 'rloo'"):
        train_rl(policy, PROMPTS, [count_good], tmp_path / "y", beta=0.05, algorithm="ppo")


def test_reward_wrapper_speaks_trl_and_keeps_the_scorer_name():
    func = as_reward_func(count_good, "good")
    assert func.__name__ == "good"
    assert func(["p", "q"], ["good good bad", "bad"], completion_ids=[[2, 2, 3], [3]]) == [2.0, 0.0]
    conversational = [[{"role": "assistant", "content": "good"}]]
    assert func([[{"role": "user", "content": "p"}]], conversational) == [1.0]
