"""One training budget for every trained stage (mpo.config.budget), and the cost split (mpo.infra.costs)."""

import pytest

from mpo.baselines.mixed_po import shared_budget
from mpo.config.budget import SEQUENCES_PER_EXAMPLE, budgeted, split_steps
from mpo.config.load import load_config
from mpo.config.schema import ConfigError
from mpo.infra.costs import split, summary

STAGES = tuple(SEQUENCES_PER_EXAMPLE)


def sequences_per_step(stage: str, kwargs: dict, processes: int = 1) -> int:
    return (kwargs["per_device_train_batch_size"] * kwargs["gradient_accumulation_steps"] * processes
            * SEQUENCES_PER_EXAMPLE[stage])


@pytest.mark.parametrize("trainer", ["cpu", "gpu"])
def test_every_stage_gets_the_same_budget(compose_cfg, trainer):
    cfg = load_config(compose_cfg(f"trainer={trainer}", "method=mixed_po"))
    budget = cfg.trainer.budget
    for stage in STAGES:
        kwargs = getattr(cfg.trainer, stage)
        assert kwargs["max_steps"] == budget.steps
        assert sequences_per_step(stage, kwargs) == budget.sequences_per_step
    if trainer == "gpu":  # the preset's per-device batch is kept; accumulation makes up the rest
        assert cfg.trainer.dpo["per_device_train_batch_size"] == 8 and cfg.trainer.dpo["gradient_accumulation_steps"] == 4
        assert cfg.trainer.rl["gradient_accumulation_steps"] == 8
    # Mixed-PO's two stages share one budget
    dpo, rl = shared_budget(cfg.trainer, cfg.method.dpo_share)
    assert dpo["max_steps"] + rl["max_steps"] == budget.steps


def test_one_override_changes_every_stage(compose_cfg):
    cfg = load_config(compose_cfg("trainer.budget.steps=7", "trainer.budget.sequences_per_step=32"))
    assert {getattr(cfg.trainer, s)["max_steps"] for s in STAGES} == {7}
    assert {sequences_per_step(s, getattr(cfg.trainer, s)) for s in STAGES} == {32}


def test_without_a_budget_each_stage_keeps_its_own_keywords(compose_cfg):
    cfg = load_config(compose_cfg("trainer.budget.steps=null", "+trainer.dpo.max_steps=5"))
    assert cfg.trainer.dpo["max_steps"] == 5 and "max_steps" not in cfg.trainer.rl


@pytest.mark.parametrize("overrides,message", [
    (["+trainer.dpo.max_steps=5"], "trainer.dpo.max_steps=5 conflicts with trainer.budget.steps=60"),
    (["+trainer.reward_model.num_train_epochs=2"], "trainer.reward_model.num_train_epochs=2 conflicts"),
    (["trainer.budget.sequences_per_step=63"], "is odd"),
    (["+trainer.dpo.per_device_train_batch_size=5"], "trainer.dpo.per_device_train_batch_size=5"),
    (["trainer.budget.sequences_per_step=18"], "not a multiple of trainer.rl.num_generations=4"),
    (["+trainer.rl.per_device_train_batch_size=8", "+trainer.rl.gradient_accumulation_steps=4"], "≠ 64 examples"),
])
def test_a_conflicting_budget_is_refused_in_one_line(compose_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")) as err:
        load_config(compose_cfg(*overrides))
    assert "\n" not in str(err.value)


def test_budgeted_splits_examples_over_processes():
    kwargs = budgeted("dpo", {"per_device_train_batch_size": 4}, 10, 64, processes=2)
    assert kwargs["gradient_accumulation_steps"] == 4 and sequences_per_step("dpo", kwargs, 2) == 64
    kwargs = budgeted("rl", {}, 10, 64, processes=4)
    assert kwargs["per_device_train_batch_size"] == 16 and kwargs["gradient_accumulation_steps"] == 1


@pytest.mark.parametrize("steps,share", [(60, 0.5), (7, 0.3), (2, 0.9), (1, 0.5), (100, 0.01)])
def test_split_steps_gives_both_stages_at_least_one_step(steps, share):
    first, second = split_steps(steps, share)
    assert first >= 1 and second >= 1
    assert first + second == max(steps, 2)


def _stage(seconds, cpu, category, sequences=0, memory=100.0):
    return {"seconds": seconds, "cpu_seconds": cpu, "category": category, "trained_sequences": sequences,
            "peak_memory_mb": memory}


def test_cost_split_sums_each_category():
    costs = {"reference": _stage(30, 60, "shared"), "pairs_a": _stage(1, 2, "shared"),
             "single_a": _stage(10, 20, "singles", 3840), "single_b": _stage(12, 24, "singles", 3840, 300.0),
             "log_ratios": _stage(5, 9, "own"), "solve": _stage(1, 1, "own"),
             "evaluation": _stage(100, 190, "evaluation", memory=500.0)}
    parts = split(costs)
    assert parts["shared"]["cpu_seconds"] == 62 and parts["singles"]["cpu_seconds"] == 44
    assert parts["singles"]["trained_sequences"] == 7680 and parts["singles"]["peak_memory_mb"] == 300.0
    assert parts["own"]["stages"] == ["log_ratios", "solve"] and parts["own"]["seconds"] == 6
    out = summary(costs)
    assert out["given_singles"]["cpu_seconds"] == 10 and "stages" not in out["given_singles"]
    assert out["total"]["cpu_seconds"] == 62 + 44 + 10 + 190 and out["total"]["peak_memory_mb"] == 500.0
    assert out["single_a"] == costs["single_a"]  # the stages themselves stay
