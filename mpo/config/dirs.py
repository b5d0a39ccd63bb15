"""Where the Hydra configs are, in a clone and in an installed wheel.

In a clone (and an editable install of it) they are the top-level `conf/` and `sweeps/` folders users edit, read
live. A wheel ships copies of both inside the package, as `mpo/conf/` and `mpo/sweeps/` (pyproject.toml maps the
folders there), so `pip install .` works from any directory.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # mpo/, this file being mpo/config/dirs.py


def config_dir(name: str) -> Path:
    """``conf`` or ``sweeps``: the clone's folder next to the package source, else the copy inside the package.

    The clone is recognised by its pyproject.toml, so a stray top-level folder of that name in site-packages
    is never taken for ours."""
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name
    return PACKAGE_DIR / name


CONF_DIR = config_dir("conf")
SWEEPS_DIR = config_dir("sweeps")


def with_shipped_sweeps(argv: list[str], cwd: Path | None = None) -> list[str]:
    """``--config-dir sweeps`` (as the README and Makefile write it) names ./sweeps where the working directory
    has one, else `SWEEPS_DIR`: the sweep files an installed package ships. Any other value is left as written."""
    if ((cwd or Path.cwd()) / "sweeps").is_dir():
        return list(argv)
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("--config-dir", "-cd") and i + 1 < len(out) and out[i + 1] in ("sweeps", "sweeps/"):
            out[i + 1] = str(SWEEPS_DIR)
        elif arg in ("--config-dir=sweeps", "--config-dir=sweeps/"):
            out[i] = f"--config-dir={SWEEPS_DIR}"
    return out
