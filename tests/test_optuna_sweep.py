"""sweeps/optuna_weights.yaml: Hydra's Optuna sweeper over MPO's preset weights, maximising the min win-rate
that `mpo.run`'s task function returns. Every weight it can try composes and passes the config checks, and a
study run through `mpo.run` itself (the evaluation replaced by a stand-in that scores the weights, so it takes
seconds) ends with Optuna's best weights being the best the jobs returned."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper",
                    reason="the Optuna sweeper plugin is an optional extra: pip install -e '.[optuna]'")

from test_readme_commands import check  # noqa: E402  (composes every job a README-style command launches)

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python -m mpo.run --config-dir sweeps --config-name optuna_weights"


def test_every_weight_the_study_can_try_composes_and_validates(tmp_path):
    assert check(COMMAND, tmp_path) == 21  # the 21 points of the simplex it chooses from
    assert check(f"{COMMAND} task.beta=0.5", tmp_path) == 21


# `mpo.run` with `mpo.experiment.run` replaced: the config is still composed, recorded and checked by
# `mpo.config.load.load_config` as in a real job; the stand-in's "min win-rate" peaks at the weights (0.8, 0.2).
STAND_IN = textwrap.dedent("""
    import sys, types
    def run(cfg):
        w = list(cfg.method.weights)
        assert cfg.method.name == "mpo" and len(w) == 2
        return {"label": "mpo", "min_win_rate": 1.0 - abs(w[0] - 0.8)}  # what the console's job line reads
    sys.modules["mpo.experiment"] = types.SimpleNamespace(run=run)
    import mpo.run
    sys.argv = ["mpo.run", *sys.argv[1:]]
    mpo.run.main()
""")


def test_a_study_maximises_the_min_win_rate_the_task_function_returns(tmp_path):
    sweep_dir = tmp_path / "study"
    env = {**os.environ, "MPO_OUTPUTS": str(tmp_path / "outputs")}
    proc = subprocess.run(
        [sys.executable, "-c", STAND_IN, "--config-dir", str(ROOT / "sweeps"), "--config-name", "optuna_weights",
         "hydra.sweeper.n_trials=6", f"hydra.sweep.dir={sweep_dir}", "logger=none"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 6
    tried = {}
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        (weights,) = [o.split("=", 1)[1] for o in overrides if o.startswith("method.weights=")]
        tried[weights] = 1.0 - abs(yaml.safe_load(weights)[0] - 0.8)
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(tried.values()))
    assert tried[best["best_params"]["method.weights"]] == pytest.approx(max(tried.values()))
