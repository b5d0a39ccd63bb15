"""Scorers are checked: one finite float per response or the run stops naming the objective and the scorer;
a scorer that raises is reported with its objective; a plain function named by `_target_` is a scorer."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpo.config.load import load_config
from mpo.infra.errors import ScorerError
from mpo.scorers.checked import build_scorer, check_scores
from mpo.stages.context import RunContext
from mpo.store.artifacts import write_json

ROOT = Path(__file__).resolve().parents[1]
TARGET = "tests.bad_scorers"


def objective(name: str, function: str) -> str:
    return f"+task.objectives.{name}={{scorer:{{_target_:{TARGET}.{function}}}}}"


@pytest.mark.parametrize("function,message", [
    ("nan_score", r"returned nan for response 1: .* \(no NaN or inf\)"),
    ("inf_score", r"returned inf for response 0"),
    ("text_score", r"returned '0.7' \(str\) for response 0"),
    ("short_score", r"returned 3 scores for 4 responses"),
    ("raising_score", r"raised KeyError: 'no such label'"),
])
def test_a_bad_score_stops_naming_objective_and_scorer(function, message):
    scorer = build_scorer("broken", {"_target_": f"{TARGET}.{function}"})
    with pytest.raises(ScorerError, match=rf"the scorer of objective 'broken' \({TARGET}.{function}\) {message}"):
        scorer(["p"] * 4, ["a", "bb", "ccc", "dddd"])


def test_check_scores_takes_arrays_and_refuses_other_containers():
    assert check_scores(np.array([1, 2.5]), 2, "k", "t") == [1.0, 2.5]
    for values in ({"a": 1.0}, "12", None, [True, False], [1.0, None]):
        with pytest.raises(ScorerError, match="objective 'k' \\(t\\)"):
            check_scores(values, 2, "k", "t")


def test_a_plain_function_is_a_scorer_with_its_keywords_bound():
    scorer = build_scorer("length", {"_target_": f"{TARGET}.length_score", "per_char": 0.5})
    assert scorer(["p", "q"], ["ab", "abcd"]) == [1.0, 2.0]
    assert scorer.__name__ == "length_score"


def test_the_pipeline_scores_through_the_checks(compose_cfg):
    config = load_config(compose_cfg("experiment=smoke", "logger=none", objective("broken", "nan_score")))
    ctx = RunContext(config, store=None)
    assert ctx.scorers["sentiment"](["p"], ["a great film"]) == [pytest.approx(0.6249)]
    with pytest.raises(ScorerError, match="objective 'broken'"):
        ctx.scorers["broken"](["p", "p"], ["a", "b"])  # what labelling pairs and evaluation call


def test_results_json_never_holds_bare_nan(tmp_path):
    write_json(tmp_path / "r.json", {"correlation": {"a~b": math.nan}, "x": [math.inf, 1.0]})

    def refuse(constant: str):
        raise ValueError(f"bare {constant} in JSON")

    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse) == {
        "correlation": {"a~b": None}, "x": [None, 1.0]}


def test_results_json_keeps_the_objective_order(tmp_path):
    """`method.weights=[0.8,0.2]` is in objective order (sentiment, conciseness); results.json says it the same way."""
    write_json(tmp_path / "r.json", {"objectives": ["sentiment", "conciseness"],
                                     "weights": {"sentiment": 0.8, "conciseness": 0.2}})
    assert list(json.loads((tmp_path / "r.json").read_text())["weights"]) == ["sentiment", "conciseness"]


def test_the_cli_reports_a_nan_scorer_in_one_line(tmp_path):
    env = {**os.environ, "MPO_OUTPUTS": str(tmp_path / "outputs")}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([sys.executable, "-m", "mpo.run", "experiment=smoke", "logger=none",
                           objective("broken", "nan_score")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the scorer of objective 'broken' (tests.bad_scorers.nan_score) returned nan")
    assert not list((tmp_path / "outputs").glob("runs/*/*/results.json"))  # no plausible numbers written
