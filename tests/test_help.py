"""`python -m mpo.run --help` teaches: what mpo does, every group's user-facing presets (never the `_<name>`
schemas or `base_config`), example commands; a preset that does not exist is told with the ones that do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# chosen by `experiment` itself (conf/config.yaml's optional defaults), never on the command line
AUTOMATIC_GROUPS = {"experiment_task", "experiment_policy"}


def mpo_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m mpo.run ...` with torch unimportable: help and config errors must not need it."""
    fake = tmp_path / "no_torch" / "torch"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "__init__.py").write_text("raise ImportError('torch was imported')\n")
    env = {**os.environ, "MPO_OUTPUTS": str(tmp_path / "outputs"), "PYTHONPATH": str(fake.parent)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "mpo.run", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def user_groups() -> dict[str, set[str]]:
    groups = {path.name: {f.stem for f in path.glob("*.yaml")} for path in (ROOT / "conf").iterdir()
              if path.is_dir() and path.name != "hydra" and path.name not in AUTOMATIC_GROUPS}
    groups["hydra/launcher"] = {f.stem for f in (ROOT / "conf/hydra/launcher").glob("*.yaml")}
    return groups


def listed(help_text: str) -> dict[str, list[str]]:
    """``group=  a, b*, c`` lines of the help, as {group: [a, b, c]}."""
    return {m.group(1): [o.rstrip("*") for o in m.group(2).split(", ")]
            for m in re.finditer(r"^  ([\w/]+)= +(\S.*)$", help_text, flags=re.M)}


@pytest.fixture(scope="module")
def help_text(tmp_path_factory):
    proc = mpo_run(tmp_path_factory.mktemp("help"), "method=mpo", "--help")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_lists_every_group_with_its_user_facing_presets_only(help_text):
    groups = listed(help_text)
    assert set(groups) == set(user_groups())
    for group, files in user_groups().items():
        assert files <= set(groups[group]), group  # every preset file (launchers: Hydra's plugins' too)
        assert not [o for o in groups[group] if o.startswith("_")], group
    assert groups["method"] == sorted(user_groups()["method"])
    # no schema entry (`_mpo`, `_single`, ...) as a word of its own; `reward_soups_mpo` is a preset
    assert "base_config" not in help_text and not re.search(r"(?<![\w])_(mpo|single|reference)\b", help_text)
    assert re.search(r"^  method= +.*\bmpo\*", help_text, flags=re.M)  # this command's choice is marked


def test_help_says_what_mpo_does_and_shows_example_commands(help_text):
    assert "combines them by several methods" in help_text
    examples = re.findall(r"^  (python -m mpo\.\w+ .*?)\s+#", help_text, flags=re.M)
    assert len(examples) == 5
    assert any(" -m " in e for e in examples)
    assert any("--config-dir sweeps --config-name compare_methods" in e for e in examples)
    assert any("method.weights=[0.8,0.2]" in e for e in examples)
    assert examples[-1].startswith("python -m mpo.compare")
    assert "method:\n  _target_: mpo.methods.mpo" in help_text  # the composed config, with the overrides


def test_help_of_a_sweep_file(tmp_path):
    proc = mpo_run(tmp_path, "--config-dir", "sweeps", "--config-name", "compare_methods", "--help")
    assert proc.returncode == 0, proc.stderr
    assert set(listed(proc.stdout)) == set(user_groups()) and "experiment_name: compare_methods" in proc.stdout


@pytest.mark.parametrize("override,line", [
    ("method=mpoo", "error: method=mpoo: no such method preset (did you mean 'mpo'?); the presets are maxmin_rlhf, "
                    "maxmin_rlhf_expected, mixed_po, morlhf, mpo, mpo_defensive, mpo_paper, mpo_token, reference, reward_soups, reward_soups_mpo, single, single_0, single_1, "
                    "single_2"),
    ("method=_mpo", "error: method=_mpo is an internal schema entry, not a preset: use method=mpo (python -m mpo.run "
                    "--help lists the presets)"),
    ("task=zzz", "error: task=zzz: no such task preset; the presets are hh_rlhf, imdb, reviews, reviews3"),
    ("hydra/launcher=sge", "error: hydra/launcher=sge: no such hydra/launcher preset; the presets are basic, joblib, "
                           "local_parallel, slurm, submitit_local, submitit_slurm"),
])
def test_an_unknown_preset_lists_the_presets(tmp_path, override, line):
    proc = mpo_run(tmp_path, override, "logger=none")
    assert proc.returncode == 2 and proc.stderr.strip() == line, proc.stderr
