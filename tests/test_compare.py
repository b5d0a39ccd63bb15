"""mpo.compare on synthetic results.json files laid out like Hydra run and multirun dirs."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import re
import shutil
import statistics
import time
from pathlib import Path

import pytest

from mpo import compare
from mpo.analysis.plots import preset_fronts
from mpo.analysis.results import load_results, load_wandb_runs, result_from_wandb, validate_result
from mpo.analysis.table import comparison_table, to_markdown, write_outputs
from mpo.infra.costs import summary as cost_summary

OBJECTIVES = ["sentiment", "conciseness"]
SEEDS = [0, 1]
PRESETS = [(0.2, 0.8), (0.5, 0.5), (0.8, 0.2)]
N_PROMPTS = 16
FINGERPRINT = "0123456789abcdef"
T_975_DF1 = 12.706204736174707  # Student-t 97.5% quantile, 1 degree of freedom (two seeds)


def make_result(method: str, label: str, seed: int, *, beta: float = 0.1, objectives=OBJECTIVES,
                weights=None, weights_source=None, job_num=None) -> dict:
    rng = random.Random(f"{label}-{seed}-{beta}")
    per_prompt = {o: [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(N_PROMPTS)] for o in objectives}
    if method == "reference":
        per_prompt = {o: [0.5] * N_PROMPTS for o in objectives}
    win = {o: statistics.fmean(v) for o, v in per_prompt.items()}
    reward_ref = {o: rng.uniform(-1, 1) for o in objectives}
    reward = {o: reward_ref[o] + rng.uniform(-0.5, 0.5) for o in objectives}
    worst = min(objectives, key=win.get)
    return {
        "method": method, "label": label, "task": "reviews", "policy": "tiny", "seed": seed, "beta": beta,
        "objectives": list(objectives),
        "weights": None if weights is None else dict(zip(objectives, weights)),
        "weights_source": weights_source,
        "reward": reward, "reward_reference": reward_ref,
        "reward_delta": {o: reward[o] - reward_ref[o] for o in objectives},
        "win_rate": {o: {"mean": w, "ci_low": w - 0.05, "ci_high": w + 0.04} for o, w in win.items()},
        "min_win_rate": win[worst], "min_win_rate_objective": worst,
        "min_win_rate_ci": {"low": win[worst] - 0.06, "high": win[worst] + 0.05, "level": 0.95},
        "per_prompt": {"prompts_sha256": FINGERPRINT, "n_prompts": N_PROMPTS, "seed": seed, "win_rate": per_prompt},
        "cost": cost_summary({
            "reference": {"seconds": 12.3, "cpu_seconds": 20.1, "reused": True, "category": "shared"},
            "single_x": {"seconds": 8.0, "cpu_seconds": rng.uniform(10, 20), "category": "singles",
                         "trained_sequences": 3840},
            "own_stage": {"seconds": 9.0, "cpu_seconds": rng.uniform(5, 50), "category": "own",
                          "trained_sequences": 7680},
            "evaluation": {"seconds": 3.0, "cpu_seconds": 5.0, "category": "evaluation"}}),
        "method_info": {}, "samples": [{"prompt": "p", "response": "r", "reference": "q"}],
        "overrides": [f"method={method}", f"seed={seed}"], "job_num": job_num, "run_dir": "", "wandb": None,
        "kl": (lambda m: {"mean": m, "ci_low": m - 0.3, "ci_high": m + 0.4, "estimator": "exact density"})(
            0.0 if method == "reference" else rng.uniform(0.5, 5.0)),
    }


def sweep_results(objectives=OBJECTIVES) -> list[dict]:
    """Reference, one single policy per objective, four methods and an MPO preset sweep, 2 seeds each."""
    specs = [("reference", "reference", {})]
    specs += [("single", f"single[{o}]", {}) for o in objectives]
    specs += [("mpo", "mpo", {"weights": [0.39, 0.61][: len(objectives)], "weights_source": "bsmd"}),
              ("morlhf", "morlhf", {"weights": [0.5, 0.5][: len(objectives)], "weights_source": "preset"}),
              ("maxmin_rlhf", "maxmin_rlhf", {}), ("reward_soups", "reward_soups", {})]
    if len(objectives) == 2:
        specs += [("mpo", f"mpo[w={a:.2f},{b:.2f}]", {"weights": [a, b], "weights_source": "preset"})
                  for a, b in reversed(PRESETS)]  # written out of weight order on purpose
    results = []
    for method, label, extra in specs:
        for seed in SEEDS:
            results.append(make_result(method, label, seed, objectives=objectives, job_num=len(results),
                                       **extra))
    return results


def write_multirun(root: Path, results: list[dict]) -> Path:
    sweep = root / "outputs" / "multirun" / "2026-11-02" / "10-00-00"
    for job_num, result in enumerate(results):
        job = sweep / str(job_num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.json").write_text("{}")  # not a results file: must be ignored
        (job / "results.json").write_text(json.dumps(dict(result, run_dir=str(job))))
        if job_num == 0:  # a copy inside the job's W&B dir is not a second result
            (job / "wandb" / "offline-run-x" / "files").mkdir(parents=True)
            (job / "wandb" / "offline-run-x" / "files" / "results.json").write_text(json.dumps(result))
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return sweep


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    return write_multirun(tmp_path, sweep_results())


def reference_rows(results_dir: Path) -> dict[tuple, dict]:
    """Plain re-computation from the files: per (label, beta), mean and sample std over seeds, and for
    win-rates and the min win-rate the two-seed t-interval mean ± t(0.975, 1) · std / √2, clipped to [0, 1]."""
    groups: dict[tuple, list[dict]] = {}
    for file in results_dir.glob("*/results.json"):
        r = json.loads(file.read_text())
        groups.setdefault((r["label"], r["beta"]), []).append(r)
    expected = {}
    for key, group in groups.items():
        stats = {"n": len(group)}
        series = {"min_win_rate": [r["min_win_rate"] for r in group],
                  "cost_seconds": [r["cost"]["total"]["seconds"] for r in group]}
        for o in OBJECTIVES:
            series[f"win_rate/{o}"] = [r["win_rate"][o]["mean"] for r in group]
            series[f"reward/{o}"] = [r["reward"][o] for r in group]
            series[f"reward_delta/{o}"] = [r["reward_delta"][o] for r in group]
        for name, values in series.items():
            stats[f"{name}/mean"] = statistics.fmean(values)
            stats[f"{name}/std"] = statistics.stdev(values) if len(values) > 1 else math.nan
            if "win_rate" in name and len(values) == 2:
                half = T_975_DF1 * stats[f"{name}/std"] / math.sqrt(2)
                stats[f"{name}/ci_low"] = max(0.0, stats[f"{name}/mean"] - half)
                stats[f"{name}/ci_high"] = min(1.0, stats[f"{name}/mean"] + half)
        expected[key] = stats
    return expected


def test_table_equals_plain_aggregation_of_files(multirun: Path) -> None:
    results = load_results([multirun])
    assert len(results) == len(sweep_results())
    rows = comparison_table(results)
    expected = reference_rows(multirun)
    assert {(r["label"], r["beta"]) for r in rows} == set(expected)
    for row in rows:
        want = expected[(row["label"], row["beta"])]
        assert row["n"] == want["n"] == 2
        assert row["seeds"] == "0;1"
        for key, value in want.items():
            assert row[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (row["label"], key)
        assert (row["ci"], row["ci_level"]) == ("seed-t", 0.95)
        assert row["min_win_rate/ci_low"] < row["min_win_rate/mean"] or row["min_win_rate/std"] == 0
        kls = [r["kl"]["mean"] for r in results if r["label"] == row["label"] and r["beta"] == row["beta"]]
        assert row["kl/mean"] == pytest.approx(statistics.fmean(kls))
        half = T_975_DF1 * statistics.stdev(kls) / math.sqrt(2)  # not clipped: KL is not a rate
        assert (row["kl/ci_low"], row["kl/ci_high"]) == pytest.approx((row["kl/mean"] - half, row["kl/mean"] + half))
    at_90 = comparison_table(results, level=0.9)  # another level: t(0.95, 1) = 6.3138
    row = next(r for r in at_90 if 0 < r["min_win_rate/std"] < 0.05)  # an interval inside [0, 1]
    half = 6.313751514675 * row["min_win_rate/std"] / math.sqrt(2)
    assert row["min_win_rate/ci_high"] == pytest.approx(row["min_win_rate/mean"] + half, rel=1e-9)


def test_rows_in_a_fixed_order_families_then_weights(multirun: Path) -> None:
    """Reference, singles, mpo, reward_soups, morlhf, maxmin_rlhf, ...; within a family weights in objective
    order (a single counts as all its weight on its objective; rows without weights first): not by win-rate,
    so rows do not move when a number changes."""
    rows = comparison_table(load_results([multirun]))
    assert [r["label"] for r in rows] == [
        "reference", "single[sentiment]", "single[conciseness]",
        "mpo[w=0.80,0.20]", "mpo[w=0.50,0.50]", "mpo", "mpo[w=0.20,0.80]",  # λ̂ = (0.39, 0.61) among the presets
        "reward_soups", "morlhf", "maxmin_rlhf"]
    results = load_results([multirun])
    for r in results:
        r["min_win_rate"] = 1.0 - r["min_win_rate"]
    assert [r["label"] for r in comparison_table(results)] == [r["label"] for r in rows]


def test_single_seed_keeps_ci_and_betas_are_separate_rows(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "outputs" / "runs" / "2026-11-02" / "11-00-00"
    run.mkdir(parents=True)
    one = make_result("mpo", "mpo", 0, beta=0.5, weights=[0.4, 0.6], weights_source="bsmd")
    (run / "results.json").write_text(json.dumps(one))
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps(make_result("mpo", "mpo", 0, beta=0.1)))
    rows = comparison_table(load_results([run, other]))
    assert [r["beta"] for r in rows] == [0.1, 0.5]
    row = rows[1]
    assert row["n"] == 1 and math.isnan(row["win_rate/sentiment/std"])
    assert row["win_rate/sentiment/ci_low"] == one["win_rate"]["sentiment"]["ci_low"]
    assert row["win_rate/conciseness/ci_high"] == one["win_rate"]["conciseness"]["ci_high"]
    assert row["weights/sentiment"] == 0.4
    assert (row["min_win_rate/ci_low"], row["min_win_rate/ci_high"]) == (one["min_win_rate_ci"]["low"],
                                                                        one["min_win_rate_ci"]["high"])
    assert (row["ci"], row["ci_level"]) == ("prompt-bootstrap", 0.95)
    table = to_markdown(rows)
    ci = one["win_rate"]["sentiment"]
    assert f"{ci['mean']:.3f} [{ci['ci_low']:.3f}, {ci['ci_high']:.3f}]" in table
    low, high = one["min_win_rate_ci"]["low"], one["min_win_rate_ci"]["high"]
    assert f"| {one['min_win_rate']:.3f} [{low:.3f}, {high:.3f}] |" in table
    kl = one["kl"]
    assert f"| {kl['mean']:.2f} [{kl['ci_low']:.2f}, {kl['ci_high']:.2f}] |" in table and "KL (nats)" in table
    monkeypatch.chdir(tmp_path)  # a file as the first PATH: outputs go to the cwd
    written = compare.main([str(run / "results.json"), str(other)])
    assert written["win_rates"] == Path.cwd() / "win_rates.png"
    assert_png_with_content(written["reward_front"])


def test_duplicate_seed_counts_once_with_a_warning(multirun: Path, tmp_path: Path) -> None:
    copy = tmp_path / "rerun.json"
    copy.write_text((multirun / "0" / "results.json").read_text())
    with pytest.warns(UserWarning, match="seed=0"):
        rows = comparison_table(load_results([multirun, copy]))
    assert next(r for r in rows if r["method"] == "reference")["n"] == 2


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_round_trips(multirun: Path, tmp_path: Path) -> None:
    results = load_results([multirun])
    rows = comparison_table(results)
    written = write_outputs(rows, results, tmp_path / "out")
    back = read_csv(written["csv"])
    assert len(back) == len(rows)
    for row, line in zip(rows, back):
        assert list(line) == list(row)
        for key, value in row.items():
            if isinstance(value, float):
                assert (line[key] == "" and math.isnan(value)) or float(line[key]) == value, key
            else:
                assert line[key] == str(value), key
    assert written["markdown"].read_text() == to_markdown(rows)


def assert_png_with_content(path: Path) -> None:
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert len(data) > 5_000, path
    pixels = imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 200
    rgb = pixels[..., :3]
    assert float(rgb.var()) > 1e-3, f"{path} looks blank"
    # Empty axes are black and grey only; bars and markers are coloured.
    coloured = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.2
    assert coloured.sum() > 200, f"{path} has axes but no data drawn"


def test_main_prints_table_and_writes_plots_into_first_dir(multirun: Path, capsys) -> None:
    written = compare.main([str(multirun)])
    out = capsys.readouterr().out
    assert out.startswith("| method | β | n | win-rate sentiment | win-rate conciseness | min win-rate")
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert lines[1].startswith("| reference | 0.1 | 2 | 0.500 [0.500, 0.500] |")
    assert "Student-t 95% interval over the n per-seed values" in out
    assert len(lines) == 1 + 10  # header + one row per label
    assert set(written) == {"markdown", "csv", "win_rates", "reward_front", "cost", "kl", "report"}
    for name in ("win_rates", "reward_front", "cost", "kl"):
        assert written[name].parent == multirun
        assert_png_with_content(written[name])


def test_three_objectives_have_a_reward_front_per_pair(tmp_path: Path) -> None:
    three = ["helpful", "harmless", "humorous"]
    sweep = write_multirun(tmp_path, sweep_results(three))
    written = compare.main([str(sweep), "--out", str(tmp_path / "cmp")])
    assert_png_with_content(written["reward_front"])
    assert_png_with_content(written["win_rates"])
    header = read_csv(written["csv"])[0]
    assert all(f"win_rate/{o}/mean" in header for o in three)


def test_preset_front_is_the_mpo_preset_sweep_in_weight_order(multirun: Path) -> None:
    rows = comparison_table(load_results([multirun]))
    (key, front), = preset_fronts(rows).items()
    assert key == ("reviews", "tiny", 0.1)
    assert [r["label"] for r in front] == [f"mpo[w={a:.2f},{b:.2f}]" for a, b in PRESETS]
    assert [r["weights/sentiment"] for r in front] == [a for a, _ in PRESETS]


def test_nothing_found_names_the_paths(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "outputs" / "multirun" / "empty"
    empty.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no results.json found under: .*empty"):
        load_results([empty])
    with pytest.raises(FileNotFoundError, match="missing-dir"):
        load_results([tmp_path / "missing-dir"])
    with pytest.raises(SystemExit) as exit_info:
        compare.main([str(empty)])
    assert exit_info.value.code == 2 and str(empty) in capsys.readouterr().err


def age(directory: Path, seconds_ago: float) -> None:
    """Every results.json under ``directory`` written ``seconds_ago``."""
    for file in directory.rglob("results.json"):
        os.utime(file, (time.time() - seconds_ago,) * 2)


def test_no_path_compares_the_latest_multirun(tmp_path: Path, monkeypatch, capsys) -> None:
    older = write_multirun(tmp_path, sweep_results())  # outputs/multirun/2026-11-02/10-00-00
    newer = tmp_path / "outputs" / "multirun" / "compare_methods" / "2026-11-03_09-00-00"
    shutil.copytree(older, newer)
    age(older, 3600)
    age(newer, 60)
    (older / "0" / "wandb" / "offline-run-x" / "files" / "results.json").touch()  # W&B's copy is not a run
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MPO_OUTPUTS", raising=False)
    written = compare.main([])
    captured = capsys.readouterr()
    assert f"comparing the latest multirun: {Path('outputs/multirun/compare_methods/2026-11-03_09-00-00')}" \
        in captured.err
    assert written["markdown"].parent == Path("outputs/multirun/compare_methods/2026-11-03_09-00-00")
    age(older, 0)  # the older sweep got a new job: it is the latest now
    assert compare.main([])["markdown"].parent == Path("outputs/multirun/2026-11-02/10-00-00")


def test_no_path_honours_mpo_outputs_and_says_when_there_is_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    sweep = write_multirun(tmp_path / "elsewhere", sweep_results())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPO_OUTPUTS", str(tmp_path / "elsewhere" / "outputs"))
    assert compare.main([])["markdown"].parent == sweep
    monkeypatch.delenv("MPO_OUTPUTS")  # outputs/ under the cwd: nothing there
    with pytest.raises(SystemExit) as exit_info:
        compare.main([])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and err == (
        "python -m mpo.compare: error: no PATH given, and no multirun under outputs/multirun has a results.json yet: "
        "give run or multirun dirs, or --wandb-project")


@pytest.mark.parametrize("breakage, key", [
    (lambda r: r.pop("win_rate"), "win_rate"),
    (lambda r: r["win_rate"]["conciseness"].pop("ci_low"), "win_rate.conciseness.ci_low"),
    (lambda r: r["reward"].pop("sentiment"), "reward.sentiment"),
    (lambda r: r["cost"].pop("total"), "cost.total"),
])
def test_malformed_file_names_file_and_key(multirun: Path, breakage, key: str) -> None:
    bad = multirun / "3" / "results.json"
    result = json.loads(bad.read_text())
    breakage(result)
    bad.write_text(json.dumps(result))
    with pytest.raises(ValueError, match=rf"3/results.json: missing key '{key}'"):
        load_results([multirun])


def test_invalid_json_and_wrong_types_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="results.json: not valid JSON"):
        load_results([tmp_path])
    bad.write_text(json.dumps(dict(make_result("mpo", "mpo", 0), min_win_rate="high")))
    with pytest.raises(ValueError, match="results.json: key 'min_win_rate' should be a number"):
        load_results([bad])


def test_wandb_summary_maps_to_the_results_schema() -> None:
    """Keys as mpo.infra.tracking logs them (eval/win_rate/<obj>_ci_low, cost/total_seconds, flat summary)."""
    summary = {"eval/win_rate/sentiment": 0.6, "eval/win_rate/sentiment_ci_low": 0.55,
               "eval/win_rate/sentiment_ci_high": 0.65, "eval/win_rate/conciseness": 0.52,
               "eval/min_win_rate": 0.52, "eval/min_win_rate_ci_low": 0.47, "eval/min_win_rate_ci_high": 0.58,
               "eval/reward/sentiment": 0.3, "eval/reward/conciseness": -0.7,
               "cost/total_seconds": 40.0, "weight/sentiment": 0.4, "weight/conciseness": 0.6,
               "label": "mpo", "seed": 1, "min_win_rate_objective": "conciseness", "_step": 3}
    config = {"method": {"name": "mpo", "weights": None}, "task": {"name": "reviews", "beta": 0.1},
              "policy": {"name": "tiny"}, "seed": 1}
    raw = result_from_wandb(summary, config, run_path="e/p/abc", job_type="mpo")
    result = validate_result(raw, "wandb:e/p/abc")
    assert result["objectives"] == ["sentiment", "conciseness"]
    assert (result["method"], result["label"], result["task"], result["beta"]) == ("mpo", "mpo", "reviews", 0.1)
    assert result["win_rate"]["sentiment"] == {"mean": 0.6, "ci_low": 0.55, "ci_high": 0.65}
    assert math.isnan(result["win_rate"]["conciseness"]["ci_low"])
    assert result["reward"] == {"sentiment": 0.3, "conciseness": -0.7}
    assert result["weights"] == {"sentiment": 0.4, "conciseness": 0.6}
    assert result["weights_source"] == "bsmd" and result["wandb"] == "e/p/abc"
    row, = comparison_table([result])
    assert row["min_win_rate/mean"] == 0.52 and row["cost_seconds/mean"] == 40.0
    assert (row["min_win_rate/ci_low"], row["min_win_rate/ci_high"]) == (0.47, 0.58)
    assert row["min_win_rate_objective"] == "conciseness" and row["weights/conciseness"] == 0.6
    preset = dict(config, method={"name": "mpo", "weights": [0.3, 0.7]})
    assert result_from_wandb(summary, preset, run_path="e/p/x")["weights_source"] == "preset"


def test_wandb_without_a_server_fails_fast_and_clearly(monkeypatch) -> None:
    """A closed local port stands in for 'no network'; the request timeout bounds the wait."""
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="could not read W&B project 'someone/nothing'"):
        load_wandb_runs("someone/nothing", timeout=1)
    assert time.monotonic() - start < 30


def test_mpo_rows_differing_in_decoding_or_estimator_get_their_own_labels():
    """compare keeps one result per (label, β, seed): runs that differ only in decoding, solver or proposal
    must not share a label, or one would silently replace the other."""
    from mpo.config.schema import EstimatorConfig, MPOMethod
    from mpo.methods import mpo_label

    variants = {
        "mpo": MPOMethod(),
        "mpo[bsmd]": MPOMethod(solver="bsmd"),
        "mpo[proposal=reference]": MPOMethod(estimator=EstimatorConfig(proposal="reference")),
        "mpo[round2=4]": MPOMethod(estimator=EstimatorConfig(round2_samples=4)),
        "mpo[token]": MPOMethod(decoding="token", num_candidates=4),
        "mpo[w=0.80,0.20][token]": MPOMethod(weights=[0.8, 0.2], decoding="token"),
        "mpo[seq×16]": MPOMethod(num_candidates=16),
        "mpo[w=0.80,0.20][seq×16]": MPOMethod(weights=[0.8, 0.2], decoding="sequence", num_candidates=16),
        "mpo[w=0.80,0.20]": MPOMethod(weights=[0.8, 0.2], estimator=EstimatorConfig(proposal="reference")),
        "mpo[bsmd][-sentiment]": MPOMethod(solver="bsmd", drop="sentiment"),
        "mpo[win_rate]": MPOMethod(criterion="win_rate"),
        "mpo[win_rate,target=token]": MPOMethod(criterion="win_rate", target="token", decoding="token"),
        "mpo[target=token]": MPOMethod(target="token", decoding="token"),
        "mpo[seq×16,defensive=0.5]": MPOMethod(num_candidates=16, defensive_share=0.5),
        "mpo[paper]": MPOMethod(solver="bsmd", decoding="token", label="mpo[paper]"),
    }
    for want, method in variants.items():
        assert mpo_label(method, method.weights or [0.5, 0.5]) == want


# ------------------------------------------------------------------------------------------- --baseline
def paired_inputs(files: dict, label: str, baseline: str, seeds=SEEDS) -> tuple[list, list]:
    """Per seed, [objective][prompt] win-rates of ``label`` and of ``baseline`` as the files hold them."""
    def rates(name):
        return [[files[(name, s)]["per_prompt"]["win_rate"][o] for o in OBJECTIVES] for s in seeds]
    return rates(label), rates(baseline)


def test_baseline_differences_match_a_plain_paired_bootstrap(multirun: Path, tmp_path: Path, capsys) -> None:
    from tests.test_statistics import plain_paired

    written = compare.main([str(multirun), "--baseline", "maxmin_rlhf", "--resamples", "300",
                            "--bootstrap-seed", "4", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert written["paired_markdown"] == tmp_path / "out" / "paired_vs_maxmin_rlhf.md"
    assert written["paired_markdown"].read_text() in out  # printed after the comparison table
    lines = read_csv(written["paired_csv"])
    table = comparison_table(load_results([multirun]))
    assert [r["label"] for r in lines] == [r["label"] for r in table if r["label"] != "maxmin_rlhf"]
    files = {(r["label"], r["seed"]): r for r in (json.loads(f.read_text()) for f in multirun.glob("*/results.json"))}
    names = ["min_win_rate", *(f"win_rate/{o}" for o in OBJECTIVES)]
    for line in lines:
        assert (line["baseline"], line["seeds"], line["n"], line["n_prompts"]) == ("maxmin_rlhf", "0;1", "2", "16")
        want = plain_paired(*paired_inputs(files, line["label"], "maxmin_rlhf"), 300, 0.95, 4)
        for name, (mean, low, high) in zip(names, want):
            got = [float(line[f"{name}/{k}"]) for k in ("diff", "ci_low", "ci_high")]
            assert got == pytest.approx([mean, low, high], abs=1e-12), (line["label"], name)
            assert line[f"{name}/significant"] == str(low > 0 or high < 0)
        # the point difference of the minima is the files' own min_win_rate difference, averaged over seeds
        files_diff = statistics.fmean(files[(line["label"], s)]["min_win_rate"]
                                      - files[("maxmin_rlhf", s)]["min_win_rate"] for s in SEEDS)
        assert float(line["min_win_rate/diff"]) == pytest.approx(files_diff, abs=1e-12)


def test_report_reads_the_paired_test_and_the_cost_ratio_from_the_files(multirun: Path, tmp_path: Path) -> None:
    written = compare.main([str(multirun), "--baseline", "maxmin_rlhf", "--resamples", "300", "--out",
                            str(tmp_path / "out")])
    report = written["report"].read_text()
    assert written["report"] == tmp_path / "out" / "report.md" and "## Paired differences" in report
    files = [json.loads(f.read_text()) for f in multirun.glob("*/results.json")]
    own = {label: statistics.fmean(r["cost"]["split"]["own"]["cpu_seconds"] for r in files if r["label"] == label)
           for label in ("mpo", "maxmin_rlhf")}
    singles = statistics.fmean(r["cost"]["split"]["singles"]["cpu_seconds"] for r in files if r["label"] == "mpo")
    (line,) = [x for x in report.splitlines() if x.startswith("- **reviews, β = 0.1**")]
    assert f"{own['mpo'] / own['maxmin_rlhf']:.2f}× maxmin_rlhf's" in line
    assert f"{(own['mpo'] + singles) / own['maxmin_rlhf']:.2f}×" in line
    paired = next(r for r in read_csv(written["paired_csv"]) if r["label"] == "mpo")
    assert f"Δ {float(paired['min_win_rate/diff']):+.3f}" in line and "vs reward_soups" in line
    assert ("not significant" in line) == (paired["min_win_rate/significant"] == "False")


def shifted(result: dict, shift: float) -> dict:
    """``result`` with every per-prompt win-rate moved by ``shift`` (and its summaries to match)."""
    out = json.loads(json.dumps(result))
    rates = {o: [v + shift for v in values] for o, values in out["per_prompt"]["win_rate"].items()}
    out["per_prompt"]["win_rate"] = rates
    out["win_rate"] = {o: {"mean": statistics.fmean(v), "ci_low": 0.0, "ci_high": 1.0} for o, v in rates.items()}
    out["min_win_rate"] = min(w["mean"] for w in out["win_rate"].values())
    return out


def test_a_clear_gain_is_significant_and_seeds_pair_by_seed(tmp_path: Path, capsys) -> None:
    base = {s: make_result("maxmin_rlhf", "maxmin_rlhf", s) for s in SEEDS}
    for result in base.values():  # room for the shift below 1
        result["per_prompt"]["win_rate"] = {o: [v * 0.5 for v in values]
                                            for o, values in result["per_prompt"]["win_rate"].items()}
    runs = [shifted(r, 0.0) for r in base.values()] + [shifted(dict(r, label="mpo", method="mpo"), 0.25)
                                                       for r in base.values()]
    runs.append(shifted(dict(make_result("mpo", "mpo", 2)), 0.0))  # seed 2 has no baseline run
    for i, result in enumerate(runs):
        (tmp_path / f"{i}.json").write_text(json.dumps(result))
    with pytest.warns(UserWarning, match=r"mpo beta=0.1: seed\(s\) \[2\] have no baseline run"):
        written = compare.main([*(str(tmp_path / f"{i}.json") for i in range(len(runs))), "--baseline",
                                "maxmin_rlhf", "--resamples", "200", "--out", str(tmp_path / "out")])
    line, = read_csv(written["paired_csv"])
    assert (line["label"], line["seeds"]) == ("mpo", "0;1")
    for name in ("min_win_rate", "win_rate/sentiment", "win_rate/conciseness"):
        assert float(line[f"{name}/diff"]) == pytest.approx(0.25) and line[f"{name}/significant"] == "True"
    assert "| mpo | 0.1 | 0;1 | 16 | +0.250 [+0.250, +0.250] * |" in capsys.readouterr().out


SEED_LEVEL_KEYS = ("seed_ci_low", "seed_ci_high", "seed_t_low", "seed_t_high", "seed_significant", "per_seed")


def test_paired_csv_has_the_seed_level_test_matching_plain_loops(multirun: Path, tmp_path: Path) -> None:
    from tests.test_statistics import plain_hierarchical, plain_seed_stats, plain_t

    written = compare.main([str(multirun), "--baseline", "maxmin_rlhf", "--resamples", "200",
                            "--bootstrap-seed", "3", "--out", str(tmp_path / "out")])
    lines = read_csv(written["paired_csv"])
    files = {(r["label"], r["seed"]): r for r in (json.loads(f.read_text()) for f in multirun.glob("*/results.json"))}
    names = ["min_win_rate", *(f"win_rate/{o}" for o in OBJECTIVES)]
    assert all(f"{name}/{key}" in lines[0] for name in names for key in SEED_LEVEL_KEYS)
    for line in lines:
        ours, theirs = paired_inputs(files, line["label"], "maxmin_rlhf")
        boot = plain_hierarchical(ours, theirs, 200, 0.95, 3)
        for j, (name, (low, high)) in enumerate(zip(names, boot)):
            per_seed = [plain_seed_stats(ours, theirs, s, list(range(N_PROMPTS)))[j] for s in range(len(SEEDS))]
            t_low, t_high = plain_t(per_seed, 0.95)
            got = [float(line[f"{name}/{k}"]) for k in ("seed_ci_low", "seed_ci_high", "seed_t_low", "seed_t_high")]
            assert got == pytest.approx([low, high, t_low, t_high], abs=1e-9), (line["label"], name)
            assert [float(v) for v in line[f"{name}/per_seed"].split(";")] == pytest.approx(per_seed, abs=1e-12)
            assert line[f"{name}/seed_significant"] == str((low > 0 and t_low > 0) or (high < 0 and t_high < 0))
    table = written["paired_markdown"].read_text()
    assert "| Δ min win-rate | seed-level |" in table and "conditions on the trained seeds" in table


def seed_spread_runs(shifts: dict[int, float]) -> list[dict]:
    """maxmin_rlhf (per-prompt win-rates halved, then +0.1) and mpo (the same per-prompt win-rates + shifts[seed])
    for each seed in ``shifts``: MPO − baseline is shifts[seed] − 0.1 on every prompt of that seed."""
    runs = []
    for seed, shift in shifts.items():
        base = make_result("maxmin_rlhf", "maxmin_rlhf", seed)
        base["per_prompt"]["win_rate"] = {o: [v * 0.5 for v in values]
                                          for o, values in base["per_prompt"]["win_rate"].items()}
        runs += [shifted(base, 0.1), shifted(dict(base, label="mpo", method="mpo"), shift)]
    return runs


def paired_report(tmp_path: Path, name: str, runs: list[dict]) -> tuple[str, dict, str]:
    """The β = 0.1 reading line of report.md, the mpo row of the paired CSV and the paired table."""
    folder = tmp_path / name
    folder.mkdir()
    for i, result in enumerate(runs):
        (folder / f"{i}.json").write_text(json.dumps(result))
    written = compare.main([*(str(folder / f"{i}.json") for i in range(len(runs))), "--baseline", "maxmin_rlhf",
                            "--resamples", "200", "--out", str(folder / "out")])
    report = written["report"].read_text()
    (line,) = [x for x in report.splitlines() if x.startswith("- **reviews, β = 0.1**")]
    (paired,) = read_csv(written["paired_csv"])
    return line, paired, written["paired_markdown"].read_text()


def test_report_says_which_claims_survive_the_seed_level_test(tmp_path: Path) -> None:
    # the same gain on every seed: significant over prompts and it survives the seed-level test
    line, paired, table = paired_report(tmp_path, "constant", seed_spread_runs({0: 0.35, 1: 0.35}))
    assert "Δ +0.250 [+0.250, +0.250] over prompts within 2 seed(s), significant; seed-level [+0.250, +0.250]; " \
           "t [+0.250, +0.250]: survives" in line
    assert paired["min_win_rate/seed_significant"] == "True"
    assert "| mpo | 0.1 | 0;1 | 16 | +0.250 [+0.250, +0.250] * | [+0.250, +0.250]; t [+0.250, +0.250] † |" in table

    # +0.30 on seed 0, −0.05 on seed 1: exact within each seed (a zero-width CI over prompts), not across seeds
    line, paired, table = paired_report(tmp_path, "spread", seed_spread_runs({0: 0.4, 1: 0.05}))
    t_low, t_high = 0.125 - T_975_DF1 * statistics.stdev([0.3, -0.05]) / math.sqrt(2), \
        0.125 + T_975_DF1 * statistics.stdev([0.3, -0.05]) / math.sqrt(2)
    assert (paired["min_win_rate/significant"], paired["min_win_rate/seed_significant"]) == ("True", "False")
    assert (f"Δ +0.125 [+0.125, +0.125] over prompts within 2 seed(s), significant; seed-level [-0.050, +0.300]; "
            f"t [{t_low:+.3f}, {t_high:+.3f}]: does not survive") in line
    assert f"| +0.125 [+0.125, +0.125] * | [-0.050, +0.300]; t [{t_low:+.3f}, {t_high:+.3f}] |" in table

    # one seed: no seed-to-seed spread to test against
    line, paired, table = paired_report(tmp_path, "one", seed_spread_runs({0: 0.35}))
    assert line.count("the seed-level test needs ≥ 2 seeds (this pair has 1)") == 1 and "survive" not in line
    assert all(paired[f"min_win_rate/{k}"] == "" for k in SEED_LEVEL_KEYS[:5])
    assert "| +0.250 [+0.250, +0.250] * | n/a (1 seed) |" in table
    assert not re.search(r"\b(nan|inf)\b", line + table, re.IGNORECASE)


def refusal(paths: list[Path], capsys, *flags: str) -> str:
    """The one-line error main() exits with (status 2), as argparse reports user errors."""
    with pytest.raises(SystemExit) as exit_info:
        compare.main([*map(str, paths), *flags])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("python -m mpo.compare: error: ")
    return error


def test_baseline_refuses_a_missing_label(multirun: Path, tmp_path: Path, capsys) -> None:
    error = refusal([multirun], capsys, "--baseline", "maxmin_rlfh", "--out", str(tmp_path / "out"))
    assert "--baseline 'maxmin_rlfh': no run has that label (did you mean 'maxmin_rlhf'?)" in error
    assert not (tmp_path / "out").exists()  # refused before anything was written
    error = refusal([multirun], capsys, "--baseline", "sft", "--out", str(tmp_path / "out"))
    assert "--baseline 'sft': no run has that label (labels: maxmin_rlhf, morlhf, mpo, " in error


def test_baseline_refuses_different_prompts(multirun: Path, tmp_path: Path, capsys) -> None:
    files = [f for f in sorted(multirun.glob("*/results.json")) if '"label": "mpo"' in f.read_text()]
    for file in files:  # every mpo seed: runs of one row on different prompts are refused before pairing
        result = json.loads(file.read_text())
        result["per_prompt"]["prompts_sha256"] = "fedcba9876543210"
        file.write_text(json.dumps(result))
    file = files[0]
    error = refusal([multirun], capsys, "--baseline", "maxmin_rlhf", "--out", str(tmp_path / "out"))
    assert f"{file}" in error and "evaluated on different prompts (fingerprints fedcba9876543210 vs " in error
    assert "needs the same eval prompts" in error and not (tmp_path / "out").exists()


def test_old_results_without_per_prompt_data(multirun: Path, tmp_path: Path, capsys) -> None:
    file = next(f for f in sorted(multirun.glob("*/results.json")) if '"label": "maxmin_rlhf"' in f.read_text())
    result = json.loads(file.read_text())
    del result["per_prompt"], result["min_win_rate_ci"]
    file.write_text(json.dumps(result))
    rows = comparison_table(load_results([file]))  # the table still reads it
    assert math.isnan(rows[0]["min_win_rate/ci_low"])
    assert f"| {result['min_win_rate']:.3f} |" in to_markdown(rows)  # the mean alone, no CI
    error = refusal([multirun], capsys, "--baseline", "maxmin_rlhf", "--out", str(tmp_path / "out"))
    assert f"{file}: no per-prompt win-rates (key 'per_prompt'), which --baseline needs: re-run its evaluation" in error


def test_a_sweep_ends_with_its_comparison(multirun: Path, tmp_path: Path, capsys) -> None:
    """The Hydra callback of sweeps/compare_methods.yaml: compare on the sweep dir, the report's path printed;
    a comparison that fails is a warning, never an exception that would hide the finished runs."""
    from omegaconf import OmegaConf

    from mpo.callbacks import CompareWhenDone

    CompareWhenDone(baseline="maxmin_rlhf").on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(multirun)}}}))
    captured = capsys.readouterr()
    *table, last = captured.out.strip().splitlines()  # the sweep's last words: the table, then the report's path
    assert len(table) == 2 + 10 and all(line.startswith("|") for line in table) and not captured.err
    assert last.startswith(f"report: {multirun / 'report.md'}") and (multirun / "report.md").exists()
    assert (multirun / "paired_vs_maxmin_rlhf.md").exists() and "Win-rate against" in (multirun / "comparison.md").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    CompareWhenDone().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(empty)}}}))
    assert not (empty / "report.md").exists()


# ------------------------------------------------------------------------------------ unlike and bad runs
def write_run(run_dir: Path, result: dict, config: dict | None = None) -> Path:
    """A run dir as mpo.run leaves it: results.json and, given ``config``, the composed .hydra/config.yaml."""
    import yaml

    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(dict(result, run_dir=str(run_dir))))
    if config is not None:
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir / "results.json"


def run_config(seed: int, **eval_settings) -> dict:
    """The part of a composed config that matters here: the seed, settings compared, settings never compared."""
    return {"seed": seed, "task": {"name": "reviews", "beta": 0.1}, "trainer": {"budget": {"steps": 60}},
            "eval": {"n_prompts": N_PROMPTS, "temperature": 1.0, "n_show_samples": 8, **eval_settings},
            "paths": {"root": "outputs", "output_dir": "${hydra:runtime.output_dir}"},
            "logger": {"backend": "wandb", "mode": None}, "device": "auto", "threads": 0,
            "experiment_name": "default"}


def test_one_label_with_two_budgets_is_refused_naming_keys_and_paths(tmp_path: Path, capsys) -> None:
    """The repro: runs of one label trained 96 and 288 sequences per step were averaged into one row."""
    first = dict(make_result("mpo", "mpo", 0), budget={"steps": 60, "sequences_per_step": 96})
    second = dict(make_result("mpo", "mpo", 1), budget={"steps": 60, "sequences_per_step": 288})
    second["per_prompt"] = dict(second["per_prompt"], n_prompts=8)
    paths = [write_run(tmp_path / "a", first), write_run(tmp_path / "b", second),
             write_run(tmp_path / "c", make_result("maxmin_rlhf", "maxmin_rlhf", 0))]
    error = refusal(paths, capsys, "--out", str(tmp_path / "out"))
    assert error == (
        "python -m mpo.compare: error: runs labelled 'mpo' (task reviews, policy tiny, β 0.1) differ in more than "
        "the seed, so they cannot be averaged into one row: "
        f"trainer.budget.sequences_per_step = 96 in {paths[0]} vs 288 in {paths[1]}; "
        f"per_prompt.n_prompts = 16 in {paths[0]} vs 8 in {paths[1]}. Compare each setting's runs on their own "
        "(python -m mpo.compare with the run dirs of one setting), or rerun them with the same settings")
    assert not (tmp_path / "out").exists()  # refused before anything was written
    with pytest.raises(ValueError, match="sequences_per_step"):  # the library refuses too, not only the CLI
        comparison_table(load_results(paths))


def test_unlike_runs_exit_2_from_the_command_line(tmp_path: Path) -> None:
    """``python -m mpo.compare`` itself: one line on stderr, exit status 2, from each run's .hydra/config.yaml
    (decoding there, which results.json does not record itself)."""
    import subprocess
    import sys

    a = write_run(tmp_path / "runs" / "a", make_result("mpo", "mpo", 0), run_config(0))
    b = write_run(tmp_path / "runs" / "b", make_result("mpo", "mpo", 1), run_config(1, temperature=0.7))
    done = subprocess.run([sys.executable, "-m", "mpo.compare", str(tmp_path / "runs"), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"differ in more than the seed, so they cannot be averaged into one row: eval.temperature = 1.0 in {a} " \
           f"vs 0.7 in {b}. Compare each setting's runs on their own" in last
    assert "Traceback" not in done.stderr and not done.stdout


def test_runs_differing_in_seed_alone_are_one_row(tmp_path: Path) -> None:
    """Seed, paths, logger, device, threads and the W&B group differ: one row of two seeds. ``method=single_0``
    and ``method=single method.objective=sentiment`` are one setting (results.json records the method node)."""
    method = {"_target_": "mpo.methods.single", "name": "single", "objective": "sentiment"}
    first = dict(make_result("single", "single[sentiment]", 0), method_config=method,
                 overrides=["method=single_0", "seed=0", "logger=none"])
    second = dict(make_result("single", "single[sentiment]", 1), method_config=method,
                  overrides=["method=single", "method.objective=sentiment", "seed=1", "hydra/launcher=joblib"])
    elsewhere = dict(run_config(1), paths={"root": "/elsewhere"}, logger={"backend": "none"}, device="cuda",
                     threads=4, experiment_name="other")
    paths = [write_run(tmp_path / "a", first, run_config(0)), write_run(tmp_path / "b", second, elsewhere),
             write_run(tmp_path / "c", first), write_run(tmp_path / "d", second)]
    for files in (paths[:2], paths[2:]):  # from .hydra/config.yaml, and from results.json alone
        row, = comparison_table(load_results(files))
        assert (row["n"], row["seeds"]) == (2, "0;1")


def test_an_override_one_run_lacks_is_its_default(tmp_path: Path, capsys) -> None:
    """From results.json alone (no .hydra/config.yaml), a key another run overrode was at its default here."""
    second = dict(make_result("mpo", "mpo", 1), overrides=["method=mpo", "seed=1", "eval.temperature=0.7"])
    paths = [write_run(tmp_path / "a", make_result("mpo", "mpo", 0)), write_run(tmp_path / "b", second)]
    error = refusal(paths, capsys)
    assert f": eval.temperature = (default) in {paths[0]} vs 0.7 in {paths[1]}. Compare each" in error


def test_wandb_runs_of_one_label_with_two_budgets_are_refused() -> None:
    from mpo.analysis.setups import wandb_setup

    summary = {"eval/win_rate/sentiment": 0.6, "eval/min_win_rate": 0.6, "eval/reward/sentiment": 0.3,
               "cost/total_seconds": 40.0, "label": "mpo"}
    results = []
    for seed, steps in ((0, 60), (1, 120)):
        config = {"method": {"name": "mpo"}, "task": {"name": "reviews", "beta": 0.1}, "policy": {"name": "tiny"},
                  "seed": seed, "trainer": {"budget": {"steps": {"value": steps}}}, "logger": {"mode": str(seed)}}
        raw = dict(result_from_wandb(summary, config, run_path=f"e/p/{seed}"), seed=seed)
        results.append(validate_result(raw, f"wandb:e/p/{seed}", wandb_setup(config)))
    with pytest.raises(ValueError, match=r"trainer.budget.steps = 60 in wandb:e/p/0 vs 120 in wandb:e/p/1\. "):
        comparison_table(results)
    results[1]["setup"] = results[0]["setup"]
    assert comparison_table(results)[0]["n"] == 2


@pytest.mark.parametrize("text, key, what", [
    ('"min_win_rate": NaN', "min_win_rate", "NaN"),
    ('"min_win_rate": Infinity', "min_win_rate", "Infinity"),
    ('"min_win_rate": 1e999', "min_win_rate", "1e999"),
])
def test_a_nan_in_a_results_file_is_refused_by_path(multirun: Path, tmp_path: Path, capsys, text: str, key: str,
                                                    what: str) -> None:
    bad = multirun / "7" / "results.json"  # mpo, seed 1
    result = json.loads(bad.read_text())
    bad.write_text(json.dumps(result).replace(f'"min_win_rate": {json.dumps(result["min_win_rate"])}', text))
    assert text in bad.read_text()
    error = refusal([multirun], capsys, "--baseline", "maxmin_rlhf", "--out", str(tmp_path / "out"))
    assert error.endswith(f"{bad}: key '{key}' is {what}, not a number: rerun that run, or move this file out "
                          "of the compared paths")
    assert not (tmp_path / "out").exists()


def test_a_nan_deep_in_a_file_names_its_key(multirun: Path, capsys) -> None:
    bad = multirun / "7" / "results.json"
    result = json.loads(bad.read_text())
    result["per_prompt"]["win_rate"]["conciseness"][3] = math.nan  # json.dumps writes a bare NaN
    bad.write_text(json.dumps(result))
    error = refusal([multirun], capsys)
    assert error.endswith(f"{bad}: key 'per_prompt.win_rate.conciseness[3]' is NaN, not a number: rerun that run, "
                          "or move this file out of the compared paths")


@pytest.mark.parametrize("breakage, key", [
    (lambda r: r.update(min_win_rate=None), "min_win_rate"),
    (lambda r: r["win_rate"]["sentiment"].update(mean=None), "win_rate.sentiment.mean"),
    (lambda r: r["reward"].update(conciseness=None), "reward.conciseness"),
    (lambda r: r["per_prompt"]["win_rate"]["sentiment"].__setitem__(2, None), "per_prompt.win_rate.sentiment[2]"),
])
def test_null_where_a_number_is_needed_is_refused_by_path(multirun: Path, tmp_path: Path, capsys, breakage,
                                                          key: str) -> None:
    """Before, a null min win-rate or per-prompt win-rate reached report.md as "Δ +nan, not significant"."""
    bad = multirun / "7" / "results.json"
    result = json.loads(bad.read_text())
    breakage(result)
    bad.write_text(json.dumps(result))
    error = refusal([multirun], capsys, "--baseline", "maxmin_rlhf", "--out", str(tmp_path / "out"))
    assert error.endswith(f"{bad}: key '{key}' is null, where a number is needed: rerun that run, or move this "
                          "file out of the compared paths")
    assert not (tmp_path / "out").exists()


def test_a_truncated_results_file_is_refused_by_path(multirun: Path, tmp_path: Path, capsys) -> None:
    bad = multirun / "4" / "results.json"
    text = bad.read_text()
    bad.write_text(text[: len(text) // 2])  # a job killed while writing (mpo writes atomically; a copy may not)
    error = refusal([multirun], capsys, "--out", str(tmp_path / "out"))
    assert error.startswith(f"python -m mpo.compare: error: {bad}: not valid JSON (")
    assert error.endswith("), damaged or cut short: rerun that run, or move this file out of the compared paths")


def test_report_never_shows_nan_for_costs_a_file_does_not_split(multirun: Path, tmp_path: Path) -> None:
    """Files from before the cost split: the report's cost sentence reads – where a cost is unknown."""
    for file in multirun.glob("*/results.json"):
        result = json.loads(file.read_text())
        del result["cost"]["split"]
        file.write_text(json.dumps(result))
    written = compare.main([str(multirun), "--baseline", "maxmin_rlhf", "--resamples", "50", "--out",
                            str(tmp_path / "out")])
    report = written["report"].read_text()
    (line,) = [x for x in report.splitlines() if x.startswith("- **reviews, β = 0.1**")]
    assert "MPO's own stages – CPU-s, –× maxmin_rlhf's – (given the single policies)" in line
    assert not re.search(r"\b(nan|inf)\b", report, re.IGNORECASE)
