"""policy.dtype reaches every trained stage (the GPU default is bf16): checked on CPU, where bf16 also runs."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from mpo.config.load import load_config
from mpo.config.schema import ConfigError
from mpo.training.dpo import train_dpo
from test_reward_model import build_tiny_lm, preference_pairs
from tests.conftest import compose

STAGES = ("sft", "dpo", "reward_model", "rl")


def test_bf16_policy_sets_every_stage_and_float32_adds_nothing(tmp_path):
    bf16 = load_config(compose(["policy.dtype=bfloat16"], tmp_path)).trainer
    assert all(getattr(bf16, s)["model_init_kwargs"] == {"dtype": "bfloat16"} for s in STAGES)
    fp32 = load_config(compose([], tmp_path)).trainer
    assert not any("model_init_kwargs" in getattr(fp32, s) for s in STAGES)  # float32 artifact keys unchanged


@pytest.mark.parametrize("overrides, match", [
    (["policy.dtype=bf16"], "policy.dtype='bf16': use one of"),
    (["policy.dtype=bfloat16", "+trainer.dpo.model_init_kwargs.dtype=float32"], "disagrees with policy.dtype"),
])
def test_bad_dtype_is_one_clear_error(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(compose(overrides, tmp_path))


def test_dpo_trains_and_saves_in_bf16(tmp_path):
    policy = build_tiny_lm(tmp_path / "lm", seed=1)
    args = {"max_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-2, "logging_steps": 1,
            "model_init_kwargs": {"dtype": "bfloat16"}}
    train_dpo(policy, preference_pairs(16, seed=0), tmp_path / "dpo", beta=0.3, trl_args=args, seed=0)
    assert json.loads((tmp_path / "dpo" / "config.json").read_text())["dtype"] == "bfloat16"
    before = AutoModelForCausalLM.from_pretrained(policy)
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "dpo", dtype="auto")
    assert next(after.parameters()).dtype == torch.bfloat16
    moved = [(a.float() - b.float()).abs().max() for a, b in zip(after.parameters(), before.parameters())]
    assert max(moved) > 1e-3  # the bf16 weights were trained, not only cast
