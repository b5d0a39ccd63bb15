"""What a run records about itself: a secret given on the command line is written nowhere (results.json
overrides, .hydra/, multirun.yaml, the W&B run's config, name and args, artifact manifests, the console);
the same config and seed give the same results.json metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import compose

from mpo.experiment import run
from mpo.infra.wandb_offline import find_offline_runs, read_offline_run

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hf_Zq9SeCrEtVaLuE"
PASSWORD = "Zq9PaSsWoRd"  # under an ordinary key, in a URL's userinfo: masked by value


def test_a_secret_on_the_command_line_is_written_nowhere(tmp_path):
    outputs, sweep = tmp_path / "outputs", tmp_path / "outputs" / "multirun" / "secret"
    env = {**os.environ, "MPO_OUTPUTS": str(outputs)}
    proc = subprocess.run([sys.executable, "-m", "mpo.run", "-m", "experiment=smoke", "method=reference",
                           f"+trainer.sft.hub_token={SECRET}", f"+trainer.sft.hub_model_id=https://u:{PASSWORD}@h/x",
                           "logger.mode=offline", f"hydra.sweep.dir={sweep}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr and PASSWORD not in proc.stdout + proc.stderr
    leaks = [p for p in outputs.rglob("*") if p.is_file() for s in (SECRET, PASSWORD) if s.encode() in p.read_bytes()]
    assert leaks == []  # text and binary files alike: W&B's run file, checkpoints, weights, manifests
    job = sweep / "0"
    masked = "+trainer.sft.hub_token=***"
    assert masked in json.loads((job / "results.json").read_text())["overrides"]
    assert masked in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
    assert yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["trainer"]["sft"]["hub_token"] == "***"
    assert yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["trainer"]["sft"]["hub_model_id"] == \
        "https://***@h/x"
    assert yaml.safe_load((sweep / "multirun.yaml").read_text())["trainer"]["sft"]["hub_token"] == "***"
    (wandb_run,) = find_offline_runs(job)
    logged = read_offline_run(wandb_run)
    assert logged["config"]["trainer"]["sft"]["hub_token"] == "***" and masked in logged["name"]
    manifests = [json.loads(p.read_text()) for p in outputs.glob("artifacts/reference/*/manifest.json")]
    assert [m["spec"]["trainer"]["hub_token"] for m in manifests] == ["***"]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()  # the smoke preset sets threads=1 for the process
    yield
    torch.set_num_threads(threads)


def test_same_config_and_seed_give_the_same_metrics(tmp_path, one_thread):
    """Two runs from empty artifact stores (every stage built twice: data, tokenizer, SFT, samples, pairs,
    DPO); a constant objective makes a correlation undefined, which results.json holds as null."""
    metrics = ("reward", "reward_reference", "reward_delta", "win_rate", "min_win_rate", "min_win_rate_objective",
               "mean_response_words", "samples", "weights", "reference_correlation", "objectives", "label")
    flat = "+task.objectives.flat={scorer:{_target_:tests.bad_scorers.constant_score}}"
    results = []
    for name in ("first", "second"):
        root = tmp_path / name
        run(compose(["experiment=smoke", "method=single_0", "logger=none", flat], root))
        text = (root / "run" / "results.json").read_text()
        results.append(json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in results.json")))
    first, second = ({k: r[k] for k in metrics} for r in results)
    assert first == second
    assert first["reference_correlation"]["sentiment~flat"] is None
    assert results[0]["cost"]["single_sentiment"]["artifact"] == results[1]["cost"]["single_sentiment"]["artifact"]


def test_a_scorer_that_ties_every_pair_stops_the_run_and_publishes_nothing(tmp_path, one_thread):
    """Every sampled pair tied: one clear error naming the objective, and no empty pairs artifact to reuse."""
    from mpo.infra.errors import DataError

    tied = "+task.objectives.flat={scorer:{_target_:tests.bad_scorers.constant_score}}"
    with pytest.raises(DataError, match=r"task.objectives.flat: its scorer tied every one of the \d+ sampled pairs"):
        run(compose(["experiment=smoke", "method=single_2", "logger=none", tied], tmp_path))
    assert not list((tmp_path / "artifacts").glob("pairs/*/manifest.json")) or all(
        json.loads(m.read_text())["info"]["pairs"] > 0 for m in (tmp_path / "artifacts").glob("pairs/*/manifest.json"))
