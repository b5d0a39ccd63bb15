"""LoRA policies (`mpo.models.adapters`, ``policy.lora``) on a tiny local GPT-2: the K-adapter mixture on one base
against K merged full copies, a DPO stage that trains an adapter, Reward Soups over adapters against the
interpolation of the merged weights, one-line config errors, and a smoke run end to end."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import traceback
import warnings
from contextlib import contextmanager

import pytest
import torch
import transformers
from conftest import compose
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import mpo
from mpo.config.load import load_config
from mpo.infra.errors import ConfigError
from mpo.models.adapters import (AdapterComponent, AdapterStack, adapter_base, interpolate_adapters, is_adapter,
    load_merged)
from mpo.models.adapters import peft_config, point_at_base
from mpo.models.mixing import LogLinearMixture
from mpo.models.policies import load_causal_lm, load_tokenizer
from test_reward_model import build_tiny_lm, preference_pairs

LORA = SimpleNamespace(r=4, alpha=8.0, dropout=0.0, target_modules=["c_attn", "c_proj"])
WEIGHTS = [0.3, 0.7]


def random_adapter(base: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter on ``base`` with random A and B (B ≠ 0: the adapter changes the policy), saved as a
    trained stage saves one."""
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(
        r=LORA.r, lora_alpha=LORA.alpha, target_modules=LORA.target_modules, task_type="CAUSAL_LM"))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 2.0)
    model.save_pretrained(out)
    load_tokenizer(base).save_pretrained(out)
    point_at_base(out, base)
    return out


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    base = build_tiny_lm(root / "base", seed=3)
    return base, [random_adapter(base, root / f"adapter_{k}", seed=k) for k in range(2)]


def prompts(tokenizer):
    return tokenizer(["q1 the movie was good", "q2 was", "q3 the movie"], return_tensors="pt", padding=True)


def test_adapter_mixture_equals_the_mixture_of_merged_full_models(adapters):
    base, paths = adapters
    stack = AdapterStack(paths)
    assert all(isinstance(c, AdapterComponent) for c in stack.components)
    on_one_base = LogLinearMixture(stack.components, WEIGHTS)
    full = LogLinearMixture([load_merged(p) for p in paths], WEIGHTS)
    batch = prompts(load_tokenizer(base))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    torch.testing.assert_close(on_one_base.next_token_logprobs(ids, mask), full.next_token_logprobs(ids, mask),
                               atol=1e-5, rtol=1e-5)
    scoring = dict(prompt_len=3, eos_token_id=1)
    components = full.component_logprobs(ids, mask, **scoring)
    assert (components[:, 0] - components[:, 1]).abs().max() > 0.1  # the two adapters are different policies
    torch.testing.assert_close(on_one_base.component_logprobs(ids, mask, **scoring), components, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(on_one_base.sequence_logprob(ids, mask, **scoring),
                               full.sequence_logprob(ids, mask, **scoring), atol=1e-4, rtol=1e-5)


def test_each_components_cache_is_computed_under_its_own_adapter(adapters):
    """Step by step, the one-base decoder's mixed log-probs equal the K-model decoder's (whose caches are
    separate models'), and sampling with one seed draws the same tokens."""
    base, paths = adapters
    on_one_base = LogLinearMixture(AdapterStack(paths).components, WEIGHTS)
    full = LogLinearMixture([load_merged(p) for p in paths], WEIGHTS)
    batch = prompts(load_tokenizer(base))
    decoders = [m.decoder(batch["input_ids"], batch["attention_mask"], max_new_tokens=6) for m in (on_one_base, full)]
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        torch.testing.assert_close(decoders[0].logprobs, decoders[1].logprobs, atol=1e-5, rtol=1e-5)
        tokens = torch.multinomial(decoders[1].logprobs.exp(), 1, generator=generator).squeeze(1)
        for decoder in decoders:
            decoder.advance(tokens)
    sample = dict(max_new_tokens=8, seed=5, eos_token_id=1)
    assert torch.equal(on_one_base.generate(**batch, **sample), full.generate(**batch, **sample))


def test_dpo_with_lora_saves_an_adapter_that_moved_on_a_base_that_did_not(tmp_path):
    from mpo.training.dpo import train_dpo

    base = build_tiny_lm(tmp_path / "base", seed=1)
    weights_before = load_file(base / "model.safetensors")
    args = {"max_steps": 8, "per_device_train_batch_size": 16, "learning_rate": 1e-2, "logging_steps": 4}
    metrics = train_dpo(base, preference_pairs(64, seed=0), tmp_path / "dpo", beta=0.3, trl_args=args,
                        eval_pairs=preference_pairs(32, seed=1), seed=0, lora=LORA)
    out = tmp_path / "dpo"
    assert is_adapter(out) and not (out / "model.safetensors").exists()
    adapter = load_file(out / "adapter_model.safetensors")
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert lora_b and all(t.abs().max() > 0 for t in lora_b)  # B starts at zero: training moved it
    after = load_file(base / "model.safetensors")
    assert all(torch.equal(weights_before[k], after[k]) for k in weights_before)
    # the saved policy is the base plus its update, and it prefers the chosen completions more than the base
    policy, reference = load_causal_lm(out), load_causal_lm(base)
    assert any(not torch.equal(a, b) for a, b in zip(policy.state_dict().values(), reference.state_dict().values()))
    assert metrics["eval/reward_margin"] > 0 and metrics["eval/reward_accuracy"] > 0.5


def test_rl_with_lora_trains_an_adapter_and_continues_one(tmp_path):
    """A fresh adapter on the start policy; RL from an adapter (Mixed-PO's second stage) trains that adapter on,
    and the saved adapter still points at the base, with TRL's frozen reference copy not kept."""
    from test_rl import PROMPTS, count_good, rl_args, save_tiny_policy

    from mpo.training.rl import train_rl

    base = save_tiny_policy(tmp_path / "base", seed=0)
    first = train_rl(base, PROMPTS, [count_good], tmp_path / "rl", beta=0.05, trl_args=rl_args(2), lora=LORA)
    second = train_rl(tmp_path / "rl", PROMPTS, [count_good], tmp_path / "rl2", beta=0.05, trl_args=rl_args(2),
                      lora=LORA)
    assert first["steps"] == second["steps"] == 2
    for out in (tmp_path / "rl", tmp_path / "rl2"):
        assert is_adapter(out) and Path(adapter_base(out)) == Path(base).resolve() and not (out / "ref").exists()
    before, after = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("rl", "rl2"))
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_reward_soup_of_adapters_is_the_interpolation_of_the_merged_weights(adapters, tmp_path):
    _, paths = adapters
    stats = interpolate_adapters(paths, WEIGHTS, tmp_path / "soup")
    assert is_adapter(tmp_path / "soup") and stats["rank"] == 2 * LORA.r
    soup = load_merged(tmp_path / "soup").state_dict()
    merged = [load_merged(p).state_dict() for p in paths]
    for name, tensor in soup.items():
        expected = WEIGHTS[0] * merged[0][name] + WEIGHTS[1] * merged[1][name]
        torch.testing.assert_close(tensor, expected, atol=1e-5, rtol=1e-5, msg=name)
    changed = [n for n in soup if not torch.allclose(merged[0][n], merged[1][n])]
    assert changed  # the singles differ, so the soup is not one of them


@pytest.mark.parametrize("override,message", [
    ("policy.lora.r=0", "policy.lora.r=0: the adapter's rank must be at least 1"),
    ("policy.lora.dropout=1.5", "policy.lora.dropout=1.5"),
    ("policy.lora.target_modules=[]", "policy.lora.target_modules is empty"),
])
def test_a_malformed_lora_config_is_one_line(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")) as err:
        load_config(compose(["+policy/lora=gpt2", override], tmp_path))
    assert "\n" not in str(err.value)


def test_an_unknown_target_module_is_one_line_naming_the_layers_there(adapters):
    base, _ = adapters
    with pytest.raises(ConfigError, match=r"\['q_proj'\] name no linear layer of .*c_attn") as err:
        peft_config(SimpleNamespace(**{**vars(LORA), "target_modules": ["c_attn", "q_proj"]}), base)
    assert "\n" not in str(err.value)


def test_lora_is_off_by_default_and_in_the_hub_presets(tmp_path):
    assert load_config(compose(["policy=tiny"], tmp_path)).policy.lora is None
    for preset in ("qwen2.5-0.5b", "llama-3.2-3b", "qwen2.5-7b"):
        lora = load_config(compose([f"policy={preset}"], tmp_path)).policy.lora
        assert lora.r == 16 and lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_smoke_mpo_and_reward_soups_run_on_adapters_of_one_base(tmp_path):
    """`+policy/lora=gpt2` end to end on the smoke config: the singles are adapters on the SFT reference (their
    specs carry the LoRA config), MPO mixes them on one base, Reward Soups interpolates them as an adapter."""
    from mpo.baselines import reward_soups
    from mpo.methods import mpo
    from mpo.models.policies import Decoding
    from mpo.stages.context import RunContext, model_path
    from mpo.stages.pipeline import reference_policy
    from mpo.stages.singles import single_policy
    from mpo.store.artifacts import ArtifactStore

    def context(*overrides):
        config = load_config(compose(["experiment=smoke", "logger=none", "+policy/lora=gpt2", *overrides], tmp_path))
        return RunContext(config, ArtifactStore(config.paths.artifacts))

    ctx = context("method=mpo", "method.weights=[0.4,0.6]", "method.decoding=token")
    out = mpo(ctx, ctx.cfg.method)
    assert all(isinstance(m, AdapterComponent) for m in out.policy.mixture.models)
    assert len(out.policy.generate(["The film", "A plot"], Decoding(max_new_tokens=4))) == 2
    singles = [single_policy(ctx, k) for k in ctx.objectives]
    reference = model_path(reference_policy(ctx))
    for single in singles:
        assert is_adapter(single.path) and single.manifest["spec"]["lora"]["r"] == 8
        assert Path(adapter_base(single.path)) == Path(reference).resolve()
    soups = context("method=reward_soups")
    soup = reward_soups.build(soups, soups.cfg.method)
    assert soups.costs["soup"]["reused"] is False and soups.costs["single_sentiment"]["reused"] is True
    assert len(list(Path(soups.cfg.paths.artifacts, "reward_soup").glob("*/adapter_config.json"))) == 1
    assert len(soup.policy.generate(["The film"], Decoding(max_new_tokens=4))) == 1



@contextmanager
def deprecations_called_by_mpo():
    """Every FutureWarning/DeprecationWarning whose call into transformers (or torch) came from mpo's own code:
    the innermost frame outside transformers and torch is ours. PEFT's or TRL's own deprecated calls are theirs."""
    found: list[str] = []
    libraries = tuple(str(Path(m.__file__).parent) for m in (transformers, torch))
    mine = str(Path(mpo.__file__).parent)

    def record(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (FutureWarning, DeprecationWarning)):
            caller = next(f for f in reversed(traceback.extract_stack()[:-1])
                          if not f.filename.startswith(libraries) and "warnings" not in Path(f.filename).name)
            if caller.filename.startswith(mine):
                found.append(f"{caller.filename}:{caller.lineno}: {message}")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        yield found


def test_decoding_on_adapters_and_full_models_calls_no_deprecated_transformers_argument(adapters):
    """Our forwards pass the KV cache by the argument the installed transformers takes (`cache`, not the
    `past_key_values` that transformers 5.40 removes): no deprecation warning from mpo's own calls in a decode."""
    base, paths = adapters
    batch = prompts(load_tokenizer(base))
    with deprecations_called_by_mpo() as found:
        for models in (AdapterStack(paths).components, [load_merged(p) for p in paths]):
            LogLinearMixture(models, WEIGHTS).generate(**batch, max_new_tokens=4, seed=0, eos_token_id=1)
    assert found == []
