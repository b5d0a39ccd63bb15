"""`pip install .` is a real package: a non-editable install into a fresh venv composes the config from any
directory (the configs ship inside the wheel), `mpo-run`/`mpo-compare` are console scripts, and nothing but `mpo`
installs at the top level. An editable install keeps reading the clone's live conf/.

The fresh venv gets the dependency stack of the interpreter running the tests through a `.pth` line (a plain path:
its own `.pth` files, such as an editable `mpo` finder, are not run), so nothing is downloaded; only `mpo` is
installed into it, with `--no-deps`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mpo.config.dirs import SWEEPS_DIR, with_shipped_sweeps

pytest.importorskip("setuptools", reason="building the wheel without network needs setuptools in this environment")

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "mpo", "baselines", "conf", "sweeps")
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
COMPOSE = """
import json, mpo
from hydra import compose, initialize_config_dir
from mpo.config.load import load_config
from mpo.config.dirs import CONF_DIR
with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
    cfg = compose(config_name="config", overrides=["experiment=smoke", "method=mpo", "paths.root=out",
                                                   "paths.output_dir=out/run"])
load_config(cfg)  # every schema check
print(json.dumps({"mpo": mpo.__file__, "conf": str(CONF_DIR), "method": cfg.method.name,
                  "n_prompts": cfg.eval.n_prompts}))
"""


def sh(args: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "MPO_OUTPUTS": str(cwd / "outputs")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def copy_sources(dest: Path) -> Path:
    """The files a build reads, copied: building in the clone would leave build/ and *.egg-info behind."""
    dest.mkdir()
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def fresh_venv(path: Path) -> Path:
    """A venv with no packages of its own; the test interpreter's site-packages are importable after its own."""
    sh([sys.executable, "-m", "venv", "--without-pip", str(path)], cwd=path.parent)
    python = path / "bin" / "python"
    purelib = sh([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=path.parent)
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(purelib.stdout.strip()) / "_mpo_test_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    return python


def install(python: Path, *target: str, cwd: Path) -> None:
    sh([*PIP, "--python", str(python), "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
        *target], cwd=cwd)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = copy_sources(tmp / "src")
    sh([*PIP, "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", "-w", str(tmp / "dist"),
        str(src)], cwd=tmp)
    (built,) = (tmp / "dist").glob("mpo-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh venv's bin/, a working directory that is neither the clone nor the venv)."""
    tmp = tmp_path_factory.mktemp("installed")
    python = fresh_venv(tmp / "venv")
    install(python, str(wheel), cwd=tmp)
    (tmp / "elsewhere").mkdir()
    return python.parent, tmp / "elsewhere"


def test_wheel_installs_only_mpo_with_every_module_and_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name.split("/")[0] for name in names} == {"mpo", f"{wheel.name.split('-py3')[0]}.dist-info"}
    expected = {f"mpo/{p.relative_to(ROOT / 'mpo').as_posix()}" for p in (ROOT / "mpo").rglob("*.py")}
    expected |= {f"mpo/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "baselines").rglob("*.py")}
    for folder in ("conf", "sweeps"):
        expected |= {f"mpo/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / folder).rglob("*.yaml")}
    missing = sorted(expected - names)
    assert not missing, f"missing from the wheel (a subpackage not listed in pyproject.toml?): {missing}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "mpo-run = mpo.run:cli" in scripts and "mpo-compare = mpo.compare:cli" in scripts


def test_installed_package_composes_the_config_from_another_directory(installed):
    bin_dir, elsewhere = installed
    site = sh([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
              cwd=elsewhere).stdout.strip()
    composed = json.loads(sh([str(bin_dir / "python"), "-c", COMPOSE], cwd=elsewhere).stdout.strip().splitlines()[-1])
    assert composed["mpo"] == f"{site}/mpo/__init__.py"  # the installed copy, not the clone
    assert composed["conf"] == f"{site}/mpo/conf"
    assert (composed["method"], composed["n_prompts"]) == ("mpo", 12)  # experiment=smoke applied

    printed = sh([str(bin_dir / "mpo-run"), "--cfg", "job", "experiment=smoke", "method=mpo"], cwd=elsewhere).stdout
    assert "name: mpo" in printed and "n_prompts: 12" in printed

    plugin = sh([str(bin_dir / "python"), "-c", "import mpo.baselines.morlhf as m; print(m.__file__)"], cwd=elsewhere)
    assert plugin.stdout.strip() == f"{site}/mpo/baselines/morlhf.py"  # the top-level baselines/ ships inside mpo
    no_baselines = subprocess.run([str(bin_dir / "python"), "-c", "import baselines"], cwd=elsewhere,
                                  capture_output=True, text=True)
    assert no_baselines.returncode != 0 and "No module named 'baselines'" in no_baselines.stderr


def test_installed_scripts_run_the_shipped_sweeps_and_help(installed):
    bin_dir, elsewhere = installed
    sweep = sh([str(bin_dir / "mpo-run"), "--config-dir", "sweeps", "--config-name", "compare_methods",
                "--cfg", "hydra"], cwd=elsewhere).stdout
    assert "mode: MULTIRUN" in sweep and "method: reference,single_0" in sweep
    launcher = sh([str(bin_dir / "mpo-run"), "hydra/launcher=local_parallel", "--cfg", "hydra"], cwd=elsewhere)
    assert "JoblibLauncher" in launcher.stdout  # conf/hydra/launcher ships too
    help_text = sh([str(bin_dir / "mpo-run"), "--help"], cwd=elsewhere).stdout  # presets of the shipped conf/
    assert "== Config groups" in help_text and re.search(r"^  method= +.*\bmpo\b", help_text, flags=re.M)
    assert "--baseline" in sh([str(bin_dir / "mpo-compare"), "--help"], cwd=elsewhere).stdout


def test_editable_install_reads_the_live_conf(tmp_path):
    src = copy_sources(tmp_path / "src")
    python = fresh_venv(tmp_path / "venv")
    install(python, "--editable", str(src), cwd=tmp_path)
    config = src / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("\nseed: 0\n", "\nseed: 7\n"))  # a user's edit
    (tmp_path / "elsewhere").mkdir()
    printed = sh([str(python.parent / "mpo-run"), "--cfg", "job"], cwd=tmp_path / "elsewhere").stdout
    assert "\nseed: 7\n" in printed


def test_config_dir_sweeps_means_the_local_folder_where_there_is_one(tmp_path):
    argv = ["mpo-run", "--config-dir", "sweeps", "--config-name", "beta"]
    assert with_shipped_sweeps(argv, cwd=tmp_path) == ["mpo-run", "--config-dir", str(SWEEPS_DIR), "--config-name",
                                                       "beta"]  # no ./sweeps here: the sweeps mpo ships
    assert with_shipped_sweeps(["mpo-run", "--config-dir=sweeps"], cwd=tmp_path) == [
        "mpo-run", f"--config-dir={SWEEPS_DIR}"]
    assert with_shipped_sweeps(["mpo-run", "-cd", "mine"], cwd=tmp_path) == ["mpo-run", "-cd", "mine"]
    (tmp_path / "sweeps").mkdir()
    assert with_shipped_sweeps(argv, cwd=tmp_path) == argv
