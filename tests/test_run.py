"""End-to-end runs of `mpo.experiment.run` on the tiny `experiment=smoke` config: every method writes
results.json through the shared evaluation, logs to a real (offline) W&B run, and shares artifacts."""

import json
import math
import time

import pytest
import torch

from mpo.experiment import run
from mpo.infra.wandb_offline import find_offline_runs, read_offline_run
from tests.conftest import compose

REQUIRED = ["method", "label", "task", "seed", "beta", "objectives", "weights", "reward", "reward_delta", "win_rate",
            "min_win_rate", "min_win_rate_objective", "cost", "wandb", "samples"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One artifact store for the module, so the methods share their stages as a sweep does."""
    threads = torch.get_num_threads()  # the smoke preset sets threads=1 for the process
    yield tmp_path_factory.mktemp("outputs")
    torch.set_num_threads(threads)


def run_method(store, name, *overrides):
    run_dir = store / f"run-{name}-{time.time_ns()}"
    cfg = compose(["experiment=smoke", f"paths.root={store}", f"paths.output_dir={run_dir}", *overrides])
    results = run(cfg)
    assert json.loads((run_dir / "results.json").read_text()) == json.loads(json.dumps(results))
    return results, run_dir


def test_reference_run_results_and_wandb_files(store):
    results, run_dir = run_method(store, "reference", "method=reference", "logger.mode=offline")
    assert all(key in results for key in REQUIRED)
    assert results["objectives"] == ["sentiment", "conciseness"]
    for k in results["objectives"]:
        wr = results["win_rate"][k]
        assert wr["ci_low"] <= wr["mean"] <= wr["ci_high"]
        assert 0.2 < wr["mean"] < 0.8  # the reference against its own independent samples
    assert results["min_win_rate"] == min(v["mean"] for v in results["win_rate"].values())
    ci = results["min_win_rate_ci"]
    assert ci["low"] <= results["min_win_rate"] <= ci["high"] and ci["high"] <= min(
        v["ci_high"] for v in results["win_rate"].values())
    per_prompt = results["per_prompt"]  # what a paired comparison (mpo.compare --baseline) needs
    assert len(per_prompt["prompts_sha256"]) == 16 and per_prompt["seed"] == results["seed"]
    for k in results["objectives"]:
        values = per_prompt["win_rate"][k]
        assert len(values) == per_prompt["n_prompts"] and all(round(v, 6) == v for v in values)
        assert sum(values) / len(values) == pytest.approx(results["win_rate"][k]["mean"], abs=1e-6)
    assert {"data", "base_model", "reference", "evaluation", "total"} <= set(results["cost"])
    assert -1 <= results["reference_correlation"]["sentiment~conciseness"] <= 1
    # the W&B run holds what results.json holds
    (wandb_dir,) = find_offline_runs(run_dir)
    logged = read_offline_run(wandb_dir)
    assert results["wandb"] and results["wandb"].endswith(logged["id"])
    assert logged["job_type"] == "reference" and logged["config"]["method"]["name"] == "reference"
    assert logged["summary"]["eval/min_win_rate"] == pytest.approx(results["min_win_rate"])
    # the reference against itself: its KL is exactly 0 (same model, same sampled ids)
    assert results["kl"]["mean"] == 0.0 and results["kl"]["estimator"] == "exact density"
    assert logged["summary"]["eval/kl"] == 0.0
    assert logged["summary"]["cost/shared_cpu_seconds"] == pytest.approx(results["cost"]["split"]["shared"]["cpu_seconds"])
    assert logged["summary"]["eval/min_win_rate_ci_low"] == pytest.approx(results["min_win_rate_ci"]["low"])
    assert logged["summary"]["eval/min_win_rate_ci_high"] == pytest.approx(results["min_win_rate_ci"]["high"])
    for k in results["objectives"]:
        assert logged["summary"][f"eval/win_rate/{k}"] == pytest.approx(results["win_rate"][k]["mean"])
        assert logged["summary"][f"eval/reward/{k}"] == pytest.approx(results["reward"][k])
    # the SFT stage logged through the tracker's callback under its own namespace
    assert any(key.startswith("train/sft/") for row in logged["history"] for key in row)


def test_second_run_reuses_every_stage(store, capsys):
    results, _ = run_method(store, "reference-again", "method=reference", "logger=none")
    # the run ends with what it found: per-objective win-rates, the min with its CI, KL and the cost split
    summary = capsys.readouterr().out.strip().splitlines()[-6:]
    assert summary[0] == "== reference on reviews (β=0.1, seed 0) =="
    win = results["win_rate"]["sentiment"]
    assert summary[1].split() == ["win-rate", "sentiment", f"{win['mean']:.3f}", f"[{win['ci_low']:.3f},",
                                  f"{win['ci_high']:.3f}]"]
    assert summary[3].startswith("  min win-rate") and "KL to reference 0.00 nats" in summary[4]
    assert summary[5].startswith("  CPU-s: shared ") and summary[5].endswith("results.json")
    assert results["cost"]["reference"]["reused"] and results["cost"]["base_model"]["reused"]
    assert results["wandb"] is None


def test_mpo_weights_inside_simplex_with_certificate(store):
    results, _ = run_method(store, "mpo", "method=mpo", "logger=none", "method.estimator.n_prompts=16",
                            "method.estimator.samples_per_prompt=5", "method.bsmd.steps=200")
    weights = results["weights"]
    assert results["weights_source"] == "exact" and math.isclose(sum(weights.values()), 1.0, abs_tol=1e-6)
    info = results["method_info"]
    assert info["log_ratio_shape"] == [16, 5, 2] and len(info["bsmd_trace"]) > 0
    assert info["proposal_counts"] == {"reference": 1, "sentiment": 2, "conciseness": 2}
    assert info["weights_exact"] == pytest.approx(weights) and info["duality_gap"] <= 1e-9
    assert set(info["certificate"]) == {"sentiment", "conciseness"}
    assert 1 <= info["ess"]["min"] <= info["ess"]["median"] <= 5
    assert all(0.5 < c < 2 for c in info["self_check_mixture"].values())
    assert info["bsmd_l1_from_exact"] == pytest.approx(
        sum(abs(info["weights_bsmd"][k] - weights[k]) for k in weights), abs=1e-9)
    # MPO's cost includes its prerequisites: both single policies, the proposal samples, the tensor, the solve
    assert {"single_sentiment", "single_conciseness", "proposal_reference", "proposal_sentiment", "log_ratios",
            "solve"} <= set(results["cost"])
    # decoded as the sequence-level mixture by default; its KL uses log Ẑ from each response's candidates
    assert results["label"] == "mpo" and results["kl"]["estimator"].startswith("sequence-level")
    assert results["kl"]["ci_low"] <= results["kl"]["mean"] <= results["kl"]["ci_high"]


def test_mpo_preset_weights_and_drop(store):
    preset, _ = run_method(store, "mpo-preset", "method=mpo", "logger=none", "method.weights=[0.25,0.75]")
    assert preset["weights"] == {"sentiment": 0.25, "conciseness": 0.75} and preset["weights_source"] == "preset"
    assert "log_ratios" not in preset["cost"] and preset["label"] == "mpo[w=0.25,0.75]"
    assert preset["cost"]["split"]["singles"]["stages"] == ["single_sentiment", "single_conciseness"]
    # its own cost: only loading and mixing the policies (no estimate), caught as "unstaged"
    assert preset["cost"]["split"]["own"]["stages"] == ["unstaged"] and preset["singles"] == "dpo"
    assert preset["cost"]["split"]["own"]["trained_sequences"] == 0
    dropped, _ = run_method(store, "mpo-drop", "method=mpo", "logger=none", "method.weights=[0.25,0.75]",
                            "method.drop=sentiment")
    assert dropped["weights"] == {"sentiment": 0.0, "conciseness": 1.0} and dropped["label"].endswith("[-sentiment]")


# one budget (experiment=smoke: 6 steps x 16 sequences = 96) per trained stage: (singles, own) budgets per method
BUDGET = 96


@pytest.mark.parametrize("method,stages,budgets", [
    ("single_0", ["single_sentiment"], (1, 0)),
    ("reward_soups", ["single_sentiment", "single_conciseness", "soup"], (2, 0)),
    ("morlhf", ["reward_model_sentiment", "reward_model_conciseness", "rl_morlhf"], (0, 3)),
    ("maxmin_rlhf", ["reward_model_sentiment", "reward_model_conciseness", "rl_maxmin"], (0, 3)),
    # its DPO and RL stages share one budget
    ("mixed_po", ["reward_model_sentiment", "dpo_easy", "rl_mixed_po"], (0, 3)),
])
def test_every_method_runs_through_shared_evaluation(store, method, stages, budgets):
    results, _ = run_method(store, method, f"method={method}", "logger=none")
    assert all(key in results for key in REQUIRED)
    assert set(stages) <= set(results["cost"])
    assert results["cost"]["total"]["seconds"] >= sum(results["cost"][s]["seconds"] for s in stages)
    split = results["cost"]["split"]
    assert {"reference", "reference_samples", "pairs_sentiment"} <= set(split["shared"]["stages"])
    assert (split["singles"]["trained_sequences"], split["own"]["trained_sequences"]) == tuple(
        BUDGET * b for b in budgets)
    assert results["cost"]["given_singles"]["cpu_seconds"] == split["own"]["cpu_seconds"]
    assert split["evaluation"]["stages"] == ["evaluation"] and split["evaluation"]["cpu_seconds"] > 0
    assert "unstaged" in split["own"]["stages"] and results["cost"]["unstaged"]["cpu_seconds"] >= 0
    if method in ("morlhf", "maxmin_rlhf", "mixed_po"):  # scoring reference samples under the reward models
        assert results["cost"]["reward_normalization"]["cpu_seconds"] > 0
        assert "reward_normalization" in split["own"]["stages"]
    kl = results["kl"]
    assert kl["estimator"] == "exact density" and kl["ci_low"] <= kl["mean"] <= kl["ci_high"]
    if method.endswith(("rlhf", "_po")):
        rl = results["method_info"]["rl"]
        assert math.isfinite(rl["kl_final"]) and rl["steps"] > 0


def test_wandb_logs_the_validated_config(store):
    """What the run used, not what was typed: `single_0`'s objective by name, the budget's steps in each stage."""
    _, run_dir = run_method(store, "single-logged", "method=single_0", "logger.mode=offline")
    (wandb_dir,) = find_offline_runs(run_dir)
    config = read_offline_run(wandb_dir)["config"]
    assert config["method"]["objective"] == "sentiment"
    assert config["trainer"]["dpo"]["max_steps"] == 6 and config["trainer"]["budget"]["steps"] == 6


def test_rl_stage_logs_its_completions_table(tmp_path):
    """A built RL stage puts its last sampled completions, with rewards, in the run's W&B tables."""
    _, run_dir = run_method(tmp_path, "morlhf-table", "method=morlhf", "logger.mode=offline")
    (wandb_dir,) = find_offline_runs(run_dir)
    table = read_offline_run(wandb_dir)["tables"]["train/rl_morlhf/completions"]
    assert table["columns"][:2] == ["prompt", "completion"] and "advantage" in table["columns"]
    assert len(table["data"]) > 0


def test_rl_singles_are_mixed_and_charged_to_singles(store):
    """method.singles=rl: each π_k is RL on its own reward model; MPO mixes those, and the reward models and
    RL runs are the singles' cost (one budget each), not MPO's own."""
    results, _ = run_method(store, "mpo-rl-singles", "method=mpo", "logger=none", "method.singles=rl",
                            "method.weights=[0.5,0.5]")
    assert results["label"] == "mpo[w=0.50,0.50][rl-singles]" and results["singles"] == "rl"
    singles = results["cost"]["split"]["singles"]
    assert {"single_rl_sentiment", "single_rl_conciseness", "reward_model_sentiment"} <= set(singles["stages"])
    assert singles["trained_sequences"] == 4 * BUDGET  # two reward models, two RL runs
    assert results["cost"]["split"]["own"]["trained_sequences"] == 0
    single, _ = run_method(store, "single-rl", "method=single_1", "logger=none", "method.singles=rl")
    assert single["label"] == "single_rl[conciseness]"
    # the same RL policy, built once and reused
    assert single["cost"]["single_rl_conciseness"]["artifact"] == results["cost"]["single_rl_conciseness"]["artifact"]


def test_reward_soups_with_mpo_weights(store):
    """reward_soups_mpo interpolates with MPO's λ̂: the same estimate an MPO run makes, charged to its own cost."""
    results, _ = run_method(store, "soups-mpo", "method=reward_soups_mpo", "logger=none")
    exact = results["method_info"]["mpo_weights"]["weights_exact"]
    assert results["label"] == "reward_soups[λ=mpo]" and results["weights_source"] == "mpo"
    assert results["weights"] == pytest.approx(exact, abs=1e-12) and 0 < exact["sentiment"] < 1
    assert {"log_ratios", "solve"} <= set(results["cost"]["split"]["own"]["stages"])


def test_dead_wandb_connection_loses_nothing(store, monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    start = time.perf_counter()
    results, run_dir = run_method(store, "dead-wandb", "method=reference", "logger.mode=online",
                                  "logger.init_timeout=3")
    assert (run_dir / "results.json").exists() and results["min_win_rate"] >= 0
    assert time.perf_counter() - start < 90


def test_multi_process_em_is_refused(store, monkeypatch):
    """EM's alternation runs in one process: under torchrun it is refused before any rank starts work."""
    from mpo.config.schema import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="method.em=true .* launch it without torchrun"):
        run_method(store, "torchrun", "method=maxmin_rlhf", "method.em=true", "logger=none")


def test_bad_config_fails_before_any_model_loads(store):
    from mpo.config.schema import ConfigError

    with pytest.raises(ConfigError, match="sums to"):
        run_method(store, "bad", "method=mpo", "method.weights=[0.7,0.7]", "logger=none")
