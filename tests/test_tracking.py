"""`mpo.infra.tracking` against real wandb in offline mode, read back with `mpo.infra.wandb_offline` (no mocks)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import torch

from mpo.infra.masking import mask
from mpo.infra.tracking import (PER_OBJECTIVE_COLUMNS, RESULTS_ARTIFACT_TYPE, Tracker, TrackingConfig, _thin,
    sweep_group, resolve_mode, wandb_api_key_configured)
from mpo.infra.wandb_offline import find_offline_runs, read_offline_run

OBJECTIVES = ["sentiment", "conciseness"]
RUN_CONFIG = {
    "method": {"name": "mpo", "beta": 0.1, "bsmd": {"steps": 600, "step_size": None}},
    "task": {"name": "reviews", "objectives": OBJECTIVES, "max_new_tokens": 16},
    "policy": {"tokenizer": "gpt2", "hf_token": "hf_abc", "nested": [{"apiKey": "k", "lr": 1e-3}]},
    "seed": 0,
    "wandb_api_key": "0123456789",
    "db_password": "hunter2",
    "client_secret": "s",
}


def make_results() -> dict:
    trace = [1.0 / (1 + t) for t in range(600)]  # 600 history rows: the log crosses 32 KiB blocks
    return {
        "method": "mpo", "label": "mpo", "task": "reviews", "seed": 0, "beta": 0.1, "objectives": OBJECTIVES,
        "weights": {"sentiment": 0.39, "conciseness": 0.61},
        "reward": {"sentiment": 0.71, "conciseness": -0.25},
        "reward_reference": {"sentiment": 0.5, "conciseness": -0.375},
        "reward_delta": {"sentiment": 0.21, "conciseness": 0.125},
        "win_rate": {"sentiment": {"mean": 0.625, "ci_low": 0.5, "ci_high": 0.75},
                     "conciseness": {"mean": 0.5625, "ci_low": 0.4375, "ci_high": 0.6875}},
        "min_win_rate": 0.5625, "min_win_rate_objective": "conciseness",
        "min_win_rate_ci": {"low": 0.4375, "high": 0.65625, "level": 0.95},
        "per_prompt": {"prompts_sha256": "0123456789abcdef", "n_prompts": 2, "seed": 0,
                       "win_rate": {"sentiment": [0.5, 0.75], "conciseness": [0.5, 0.625]}},
        "cost": {"reference": {"seconds": 12.5, "cpu_seconds": 20.0, "reused": True},
                 "mixture": {"seconds": 1.5, "cpu_seconds": 2.5, "reused": False},
                 "total": {"seconds": 14.0, "cpu_seconds": 22.5}},
        "method_info": {"bsmd_trace": trace, "duality_gap": 2e-15, "bsmd_gap_from_exact": None,
                        "ess": {"median": 1.9, "m": 16.0}, "certificate": {"sentiment": -0.33, "conciseness": -0.33},
                        "weights_exact": {"sentiment": 0.39, "conciseness": 0.61}, "solver": "exact"},
        "samples": [{"prompt": "the film", "response": "was great", "reference": "was long"},
                    {"prompt": "a plot", "response": "so good", "reference": None}],
        "wandb": None,
    }


def tiny_trainer(out_dir: Path, callbacks: list):
    """A real HF Trainer on a 1-layer, 16-dim GPT-2 for 3 optimiser steps, logging every step."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from mpo.training.common import trl_kwargs

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=12, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 12, (12, 6))]
    args = TrainingArguments(**trl_kwargs({"max_steps": 3, "logging_steps": 1, "per_device_train_batch_size": 4,
                                           "learning_rate": 1e-2}, out_dir))
    return Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)


def rows_with(history: list[dict], key: str) -> list[dict]:
    return [row for row in history if key in row]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """One offline run that every round-trip test reads back (a start/finish costs ~0.5 s)."""
    run_dir = tmp_path_factory.mktemp("job")
    results = make_results()
    started = time.perf_counter()
    tracker = Tracker.start(TrackingConfig(mode="offline", group="sweep-a", tags=["t1", "t2"]),
                            run_config=RUN_CONFIG, name="mpo-seed0", job_type="mpo", group="ignored",
                            run_dir=run_dir)
    start_seconds = time.perf_counter() - started
    assert tracker.active
    tracker.log_stage("dpo_sentiment", {"loss": 0.75, "rewards/margins": torch.tensor(0.5), "note": "x"}, step=3)
    tracker.log_stage("dpo_sentiment", {"loss": 0.5})  # no step: continues from the last one
    trainer = tiny_trainer(run_dir, [tracker.callback("sft")])
    trainer.train()
    tracker.log_results(results)
    started = time.perf_counter()
    tracker.finish()
    finish_seconds = time.perf_counter() - started
    tracker.finish()  # idempotent
    print(f"\noffline tracker start {start_seconds:.2f} s, finish {finish_seconds:.2f} s")
    return {"tracker": tracker, "run_dir": run_dir, "results": results, "trainer": trainer,
            "run": read_offline_run(tracker.run_dir)}


def test_run_identity_and_config(logged_run):
    run, tracker = logged_run["run"], logged_run["tracker"]
    assert not tracker.active and tracker.run_path.endswith(run["id"])
    assert find_offline_runs(logged_run["run_dir"]) == [tracker.run_dir]
    assert tracker.run_dir.is_relative_to(logged_run["run_dir"])
    assert (run["group"], run["job_type"], run["name"], run["project"]) == ("sweep-a", "mpo", "mpo-seed0", "mpo")
    assert run["tags"] == ["t1", "t2"] and run["exit_code"] == 0
    assert run["config"]["method"] == RUN_CONFIG["method"]
    assert run["config"]["task"] == RUN_CONFIG["task"]
    assert run["config"]["seed"] == 0


def test_secrets_are_masked_in_the_config(logged_run):
    config = logged_run["run"]["config"]
    assert config["policy"] == {"tokenizer": "gpt2", "hf_token": "***", "nested": [{"apiKey": "***", "lr": 1e-3}]}
    assert {config[k] for k in ("wandb_api_key", "db_password", "client_secret")} == {"***"}
    assert config["task"]["max_new_tokens"] == 16  # "tokens" is not "token"
    assert mask({"API_KEY": 1, "AccessToken": 2, "Path": Path("/x")}) == {"API_KEY": "***", "AccessToken": "***",
                                                                          "Path": "/x"}


def test_stage_metrics_have_their_own_step(logged_run):
    history = logged_run["run"]["history"]
    dpo = rows_with(history, "train/dpo_sentiment/loss")
    assert [(r["train/dpo_sentiment/step"], r["train/dpo_sentiment/loss"]) for r in dpo] == [(3, 0.75), (4, 0.5)]
    assert dpo[0]["train/dpo_sentiment/rewards/margins"] == 0.5
    assert not rows_with(history, "train/dpo_sentiment/note")
    # the callback forwarded exactly what the real Trainer logged, at its global step
    expected = [(h["step"], h["loss"]) for h in logged_run["trainer"].state.log_history if "loss" in h]
    sft = rows_with(history, "train/sft/loss")
    assert [r["train/sft/step"] for r in sft] == [step for step, _ in expected] == [1, 2, 3]
    assert [r["train/sft/loss"] for r in sft] == pytest.approx([loss for _, loss in expected], rel=1e-12)
    assert rows_with(history, "train/sft/train_runtime")  # the end-of-training summary log too


def test_results_metrics_and_summary(logged_run):
    summary, results = logged_run["run"]["summary"], logged_run["results"]
    for obj in OBJECTIVES:
        win = results["win_rate"][obj]
        assert summary[f"eval/reward/{obj}"] == results["reward"][obj]
        assert summary[f"eval/reward_delta/{obj}"] == results["reward_delta"][obj]
        assert summary[f"eval/win_rate/{obj}"] == win["mean"] == summary[f"win_rate/{obj}"]
        assert (summary[f"eval/win_rate/{obj}_ci_low"], summary[f"eval/win_rate/{obj}_ci_high"]) == (
            win["ci_low"], win["ci_high"])
        assert summary[f"mpo/weight/{obj}"] == results["weights"][obj] == summary[f"weight/{obj}"]
    assert summary["eval/min_win_rate"] == summary["min_win_rate"] == 0.5625
    assert summary["eval/min_win_rate_ci_low"] == summary["min_win_rate_ci_low"] == 0.4375
    assert summary["eval/min_win_rate_ci_high"] == summary["min_win_rate_ci_high"] == 0.65625
    assert not [k for k in summary if "per_prompt" in k or k.endswith("ci_level")]  # lists are no metrics
    assert summary["cost/reference_seconds"] == 12.5 and summary["cost/mixture_seconds"] == 1.5
    assert summary["cost/total_seconds"] == summary["total_seconds"] == 14.0
    assert (summary["method"], summary["task"], summary["min_win_rate_objective"]) == ("mpo", "reviews",
                                                                                         "conciseness")


def test_mpo_diagnostics_are_in_the_run(logged_run):
    summary, info = logged_run["run"]["summary"], logged_run["results"]["method_info"]
    assert summary["mpo/duality_gap"] == 2e-15
    assert (summary["mpo/ess/median"], summary["mpo/ess/m"]) == (1.9, 16.0)
    for obj in OBJECTIVES:
        assert summary[f"mpo/certificate/{obj}"] == info["certificate"][obj]
        assert summary[f"mpo/weights_exact/{obj}"] == info["weights_exact"][obj]
    assert "mpo/bsmd_gap_from_exact" not in summary and "mpo/solver" not in summary  # null and text: not metrics


def test_bsmd_trace_is_a_line_series(logged_run):
    run, trace = logged_run["run"], logged_run["results"]["method_info"]["bsmd_trace"]
    rows = rows_with(run["history"], "mpo/bsmd/objective")
    assert [r["mpo/bsmd/step"] for r in rows] == list(range(len(trace)))
    assert [r["mpo/bsmd/objective"] for r in rows] == pytest.approx(trace, rel=1e-12)
    assert next(logged_run["tracker"].run_dir.glob("run-*.wandb")).stat().st_size > 32 * 1024


def test_tables(logged_run):
    tables, results = logged_run["run"]["tables"], logged_run["results"]
    per_objective = tables["eval/per_objective"]
    assert per_objective["columns"] == PER_OBJECTIVE_COLUMNS
    assert per_objective["data"] == [
        [o, results["reward"][o], results["reward_reference"][o], results["reward_delta"][o],
         results["win_rate"][o]["mean"], results["win_rate"][o]["ci_low"], results["win_rate"][o]["ci_high"]]
        for o in OBJECTIVES]
    samples = tables["eval/samples"]
    assert samples["columns"] == ["prompt", "response", "reference"]
    assert samples["data"] == [["the film", "was great", "was long"], ["a plot", "so good", ""]]


def results_artifacts(run: dict) -> list[dict]:
    return [a for a in run["artifacts"] if a["type"] == RESULTS_ARTIFACT_TYPE]


def test_results_and_stage_lineage_are_an_artifact(logged_run):
    run, results = logged_run["run"], logged_run["results"]
    (artifact,) = results_artifacts(run)
    assert artifact["name"] == f"results-{run['id']}"
    assert set(artifact["files"]) == {"results.json", "lineage.json"}
    lineage = json.loads(Path(artifact["files"]["lineage.json"]).read_text())  # wandb's staged copy
    assert lineage == {"reference": {"seconds": 12.5, "cpu_seconds": 20.0, "reused": True},
                       "mixture": {"seconds": 1.5, "cpu_seconds": 2.5, "reused": False}}
    assert json.loads(Path(artifact["files"]["results.json"]).read_text())["min_win_rate"] == results["min_win_rate"]
    meta = artifact["metadata"]
    assert (meta["method"], meta["label"], meta["seed"], meta["min_win_rate"]) == ("mpo", "mpo", 0, 0.5625)
    assert meta["stages"] == {"reference": None, "mixture": None}  # make_results() names no store keys


def test_the_artifact_holds_the_results_json_the_job_wrote(tmp_path):
    results = make_results()
    results["run_dir"] = str(tmp_path)
    results["cost"]["reference"]["artifact"] = "reference/fcdc1ebcfa764ecd"
    results["cost"]["reference"]["category"] = "shared"
    (tmp_path / "results.json").write_text('{"written": "by the job"}')
    tracker = Tracker.start(TrackingConfig(mode="offline"), run_config={}, name="n", job_type="mpo", group=None,
                            run_dir=tmp_path)
    tracker.log_results(results)
    tracker.finish()
    (artifact,) = results_artifacts(read_offline_run(tracker.run_dir))
    assert json.loads(Path(artifact["files"]["results.json"]).read_text()) == {"written": "by the job"}
    assert artifact["metadata"]["stages"] == {"reference": "reference/fcdc1ebcfa764ecd", "mixture": None}
    lineage = json.loads(Path(artifact["files"]["lineage.json"]).read_text())
    assert lineage["reference"] == {"artifact": "reference/fcdc1ebcfa764ecd", "reused": True, "category": "shared",
                                    "seconds": 12.5, "cpu_seconds": 20.0}


def exercise_everything(tracker: Tracker) -> None:
    """Every logging call a job makes; on a no-op tracker none may raise."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    tracker.log_stage("sft", {"loss": 1.0}, step=1)
    state = TrainerState()
    state.global_step = 2
    args = TrainingArguments(output_dir="unused", report_to="none", use_cpu=True)
    tracker.callback("sft").on_log(args, state, TrainerControl(), logs={"loss": 0.5})
    tracker.log_results(make_results())
    tracker.finish(exit_code=1)
    tracker.finish()


def dead_server(monkeypatch, tmp_path):
    """A configured (fake) key and a W&B host on loopback where nothing listens."""
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("WANDB_MODE", raising=False)


def test_dead_connection_gives_a_noop_tracker_and_a_warning(monkeypatch, tmp_path, caplog):
    dead_server(monkeypatch, tmp_path)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="mpo.infra.tracking"):
        tracker = Tracker.start(TrackingConfig(mode="online", init_timeout=3), run_config=RUN_CONFIG,
                                name="n", job_type="mpo", group=None, run_dir=tmp_path)
        assert not tracker.active and tracker.run_path is None and tracker.run_dir is None
        exercise_everything(tracker)
    assert time.perf_counter() - started < 60
    assert "127.0.0.1:9" in caplog.text and "wandb sync" in caplog.text


def test_auto_mode_falls_back_to_offline_when_the_server_is_dead(monkeypatch, tmp_path, caplog):
    dead_server(monkeypatch, tmp_path)
    with caplog.at_level(logging.WARNING, logger="mpo.infra.tracking"):
        tracker = Tracker.start(TrackingConfig(mode=None, init_timeout=3), run_config={"seed": 1},
                                name="n", job_type="mpo", group="g", run_dir=tmp_path)
    assert tracker.active and tracker.run_dir.name.startswith("offline-run-")
    assert f"wandb sync {tracker.run_dir}" in caplog.text
    tracker.log_stage("sft", {"loss": 1.0})
    tracker.finish()
    assert read_offline_run(tracker.run_dir)["summary"]["train/sft/loss"] == 1.0


def test_online_without_a_key_is_a_noop(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="mpo.infra.tracking"):
        tracker = Tracker.start(TrackingConfig(mode="online"), run_config={}, name="n", job_type="mpo",
                                group=None, run_dir=tmp_path)
    assert time.perf_counter() - started < 5
    assert not tracker.active and "wandb login" in caplog.text
    exercise_everything(tracker)


@pytest.mark.parametrize("config", [TrackingConfig(backend="none"), TrackingConfig(mode="disabled")])
def test_backend_none_and_disabled_write_nothing(tmp_path, config):
    tracker = Tracker.start(config, run_config=RUN_CONFIG, name="n", job_type="mpo", group=None,
                            run_dir=tmp_path)
    assert (tracker.active, tracker.run_path, tracker.run_dir) == (False, None, None)
    exercise_everything(tracker)
    assert list(tmp_path.iterdir()) == []


def test_only_rank_zero_reports(monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "1")
    tracker = Tracker.start(TrackingConfig(mode="offline"), run_config={}, name="n", job_type="mpo",
                            group=None, run_dir=tmp_path)
    assert not tracker.active and list(tmp_path.iterdir()) == []


def test_omegaconf_run_config_is_accepted(tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"task": {"objectives": OBJECTIVES, "n": "${seed}"}, "seed": 3, "api_key": "k"})
    tracker = Tracker.start(TrackingConfig(mode="offline", tags=OmegaConf.create(["a"])), run_config=cfg,
                            name="n", job_type="mpo", group=None, run_dir=tmp_path)
    tracker.finish()
    assert read_offline_run(tracker.run_dir)["config"] == {"task": {"objectives": OBJECTIVES, "n": 3},
                                                           "seed": 3, "api_key": "***"}


def test_auto_mode_follows_the_key(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "NETRC", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not wandb_api_key_configured() and resolve_mode(None) == "offline"
    tracker = Tracker.start(TrackingConfig(), run_config={}, name="n", job_type="reference", group=None,
                            run_dir=tmp_path / "job")
    assert tracker.active and tracker.run_dir.name.startswith("offline-run-")
    tracker.finish()

    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_api_key_configured() and resolve_mode(None) == "online"
    assert resolve_mode("offline") == "offline"  # explicit mode wins
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(None) == "disabled"  # so does the environment's
    monkeypatch.setenv("WANDB_MODE", "online")
    (tmp_path / ".netrc").unlink()
    tracker = Tracker.start(TrackingConfig(), run_config={}, name="n", job_type="reference", group=None,
                            run_dir=tmp_path / "job2")
    assert tracker.mode == "offline" and tracker.active  # online asked, no key: offline, never lost
    tracker.finish()
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_BASE_URL", "https://api.forge.coreweave.com")
    assert wandb_api_key_configured()  # wandb 0.31's default host accepts the api.wandb.ai entry
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert not wandb_api_key_configured()  # a key for another host does not count
    (tmp_path / ".netrc").write_text("machine wandb.example.org\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_api_key_configured()


def test_config_validation_and_trace_thinning():
    with pytest.raises(ValueError, match="logger.backend"):
        TrackingConfig(backend="tensorboard")
    with pytest.raises(ValueError, match="logger.mode"):
        TrackingConfig(mode="sometimes")
    thinned = _thin([float(i) for i in range(2500)], 1000)
    assert len(thinned) <= 1000 and thinned[0] == (0, 0.0) and thinned[-1] == (2499, 2499.0)
    assert all(step == value for step, value in thinned)


@pytest.mark.parametrize("name,sweep_dir,group", [
    ("default", None, "default"),  # a single run
    ("compare_methods", "outputs/multirun/compare_methods/2026-11-23_14-02-11", "compare_methods-2026-11-23_14-02-11"),
    ("default", "outputs/multirun/2026-11-23/14-02-11", "default-2026-11-23_14-02-11"),  # an ad-hoc -m grid
    ("default", "/tmp/x/outputs/multirun/two_methods", "two_methods"),  # a sweep dir the user named
])
def test_the_wandb_group_names_the_sweep_and_keeps_launches_apart(name, sweep_dir, group):
    assert sweep_group(name, sweep_dir) == group
