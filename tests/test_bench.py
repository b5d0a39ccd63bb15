"""The cost-scaling study (`python -m mpo.studies.bench --study cost-scaling`): its ratios are those of the runs' own
results.json, its parameter count is the built base model's, and it writes its plot."""

import json

import pytest
import torch

from mpo.studies import bench, cost_scaling


def _results(own: float, singles: float = 0.0, evaluation: float = 1.0, min_win_rate: float = 0.5) -> dict:
    part = lambda cpu: {"cpu_seconds": cpu, "seconds": cpu + 1.0, "stages": ["x"]}  # noqa: E731
    return {"cost": {"split": {"own": part(own), "singles": part(singles), "evaluation": part(evaluation)}},
            "min_win_rate": min_win_rate, "min_win_rate_ci": {"low": 0.4, "high": 0.6}}


def test_size_row_ratios_and_table():
    runs = {"single_0": _results(5.0), "single_1": _results(5.0), "mpo": _results(2.0, singles=6.0, evaluation=9.0),
            "maxmin_rlhf": _results(8.0, evaluation=3.0)}
    row = cost_scaling.size_row("x", 1234, runs)
    assert row["ratio_given_singles"] == pytest.approx(0.25)
    assert row["ratio_with_singles"] == pytest.approx(1.0)
    assert row["wall_ratio_given_singles"] == pytest.approx(3.0 / 9.0)  # wall seconds only beside the CPU ratios
    table = cost_scaling.format_table([row])
    assert "| 0.250 | 1.000 | n/a | n/a | 9.0 / 3.0 |" in table


def test_sizes_name_or_shape():
    assert cost_scaling.architecture("768x12x12") == {"n_embd": 768, "n_layer": 12, "n_head": 12}
    assert cost_scaling.architecture("30M")["n_embd"] == 512
    with pytest.raises(SystemExit, match="EMBDxLAYERSxHEADS"):
        cost_scaling.architecture("huge")


def test_cost_scaling_study_end_to_end(tmp_path):
    from transformers import AutoModelForCausalLM

    threads = torch.get_num_threads()
    report = bench.main(["--study", "cost-scaling", "--sizes", "32x1x2", "--vocab", "384", "--budget-steps", "2",
                         "--budget-sequences", "8", "--sft-steps", "40", "--mpo-prompts", "4", "--mpo-samples", "4",
                         "--mpo-candidates", "4", "--eval-prompts", "4", "--eval-samples", "1",
                         "--out-dir", str(tmp_path), "--set", "eval.bootstrap=20"])
    assert torch.get_num_threads() == threads  # restored after the runs set it
    written = json.loads((tmp_path / "cost_scaling.json").read_text())
    (row,) = written["sizes"]
    # recomputed from the runs' own results.json files
    runs = {m: json.loads((tmp_path / "32x1x2" / "runs" / m / "results.json").read_text())
            for m in cost_scaling.METHODS}
    assert written["run_dirs"]["32x1x2"]["mpo"] == str(tmp_path / "32x1x2" / "runs" / "mpo")
    mpo, singles = (runs["mpo"]["cost"]["split"][c]["cpu_seconds"] for c in ("own", "singles"))
    maxmin = runs["maxmin_rlhf"]["cost"]["split"]["own"]["cpu_seconds"]
    assert mpo > 0 and singles > 0 and maxmin > 0
    assert row["ratio_given_singles"] == pytest.approx(mpo / maxmin)
    assert row["ratio_with_singles"] == pytest.approx((mpo + singles) / maxmin)
    assert row["ratio_given_singles"] == report["sizes"][0]["ratio_given_singles"]
    # MPO's singles are the two DPO policies; MaxMin-RLHF's own stages are its reward models and RL
    assert len(row["mpo_singles"]["stages"]) == 2 and not set(row["mpo_singles"]["stages"]) & set(row["mpo_own"]["stages"])
    assert row["min_win_rate"]["mpo"]["mean"] == runs["mpo"]["min_win_rate"]
    # what no stage recorded: the whole run's CPU time (process.json) less the stages this run built
    for method in ("mpo", "maxmin_rlhf"):
        process = json.loads((tmp_path / "32x1x2" / "runs" / method / "process.json").read_text())
        built = sum(e["cpu_seconds"] for name, e in runs[method]["cost"].items()
                    if isinstance(e, dict) and "cpu_seconds" in e and name not in {"split", "given_singles", "total"}
                    and not e.get("reused"))
        assert row["residual"][method]["cpu_seconds"] == pytest.approx(process["cpu_seconds"] - built)
        assert row["residual"][method]["cpu_seconds"] > -0.5  # the stages ran inside the measured run
    # the parameter count is the built base model's
    base = runs["mpo"]["cost"]["base_model"]["artifact"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "32x1x2" / "artifacts" / base)
    assert row["parameters"] == sum(p.numel() for p in model.parameters())
    assert model.config.n_embd == 32 and model.config.n_layer == 1
    png = tmp_path / "cost_scaling.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and report["plot"] == str(png)
    with pytest.raises(SystemExit, match="exists"):  # a second study never reuses the first one's stages
        cost_scaling.run_size("32x1x2", ["mpo"], bench.parse_args(["--out-dir", str(tmp_path)]), tmp_path)
