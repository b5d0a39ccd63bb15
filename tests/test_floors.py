"""The house rules of the layout (docs/design.md "Layout"), read from the code's own imports: every module of
mpo/ and baselines/ (shipped as mpo.baselines), every import in it (at module level or inside a function).

Floors, lowest first: core and infra stand on nothing else; store, data and scorers on infra; models on core and
infra; config on core, infra and data; training below stages; analysis never on the store, models, training or stages;
nothing in mpo imports mpo.baselines or mpo.studies; no import circle; no module takes another's ``_private``
name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what each floor may import besides itself (None: any floor of mpo, less `NOBODY_IMPORTS`)
ALLOWED = {
    "core": set(),
    "infra": set(),
    "store": {"infra"},
    "data": {"infra"},
    "scorers": {"infra"},
    "models": {"core", "infra"},
    "config": {"core", "infra", "data"},
    "training": {"core", "infra", "store", "config", "data", "scorers", "models"},
    "stages": {"core", "infra", "store", "config", "data", "scorers", "models", "training"},
    "analysis": {"core", "infra", "config"},
}
NOBODY_IMPORTS = ("baselines", "studies")  # the plug-ins and the studies stand on mpo; mpo never on them


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[0] == "baselines":
        parts = ["mpo", *parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_modules(root: Path = ROOT) -> dict[str, list[tuple[str, str | None, int]]]:
    """Every module -> [(imported mpo module, name taken from it or None, line)]."""
    files = [*sorted((root / "mpo").rglob("*.py")), *sorted((root / "baselines").rglob("*.py"))]
    names = {module_name(f, root) for f in files}
    graph: dict[str, list[tuple[str, str | None, int]]] = {}
    for file in files:
        edges = graph.setdefault(module_name(file, root), [])
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                edges += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("mpo.")]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("mpo"):
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    edges.append((submodule, None, node.lineno) if submodule in names
                                 else (node.module, alias.name, node.lineno))
    return graph


def floor(module: str) -> str:
    """``mpo.core.solver`` -> ``core``; ``mpo.run`` -> ``entry``; ``mpo.baselines.em`` -> ``baselines``."""
    parts = module.split(".")
    if len(parts) == 2 and parts[1] not in ALLOWED and parts[1] not in NOBODY_IMPORTS:
        return "entry"  # mpo/run.py and the other thin entry points at the top
    return parts[1] if len(parts) > 1 else "entry"


def broken_rules(graph: dict[str, list[tuple[str, str | None, int]]]) -> list[str]:
    broken = []
    for module, edges in graph.items():
        here = floor(module)
        for target, name, line in edges:
            there = floor(target)
            where = f"{module}:{line} imports {target}" + (f".{name}" if name else "")
            if there != here and here in ALLOWED and there not in ALLOWED[here]:
                broken.append(f"{where}: {here} may import only {sorted(ALLOWED[here]) or 'itself'}")
            if there in NOBODY_IMPORTS and here not in NOBODY_IMPORTS:
                broken.append(f"{where}: nothing in mpo imports mpo.{there}")
            if name is not None and name.startswith("_") and not name.startswith("__") and target != module:
                broken.append(f"{where}: {name} is private to {target}")
    return broken + [f"import circle: {' -> '.join(c)}" for c in circles(graph)]


def circles(graph: dict[str, list[tuple[str, str | None, int]]]) -> list[list[str]]:
    """One cycle through each strongly tied group of modules (a depth-first walk)."""
    edges = {m: sorted({t for t, _, _ in es if t in graph and t != m}) for m, es in graph.items()}
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in edges[module]:
            if state.get(target) == 1:
                found.append(path[path.index(target):] + [module, target] if target in path else [module, target])
            elif target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    return found


def test_every_module_keeps_to_its_floor():
    graph = read_modules()
    assert len(graph) > 40  # the walk read the tree
    assert broken_rules(graph) == []


def test_no_module_is_over_500_lines():
    long = {module_name(f): n for f in [*(ROOT / "mpo").rglob("*.py"), *(ROOT / "baselines").rglob("*.py")]
            if (n := len(f.read_text().splitlines())) > 500}
    assert long == {}


@pytest.mark.parametrize("module, line, rule", [
    ("mpo.core.solver", "from mpo.infra.errors import ConfigError", "core may import only itself"),
    ("mpo.models.policies", "from mpo.config.schema import Config", "models may import only"),
    ("mpo.analysis.table", "from mpo.stages.pipeline import task_data", "analysis may import only"),
    ("mpo.stages.pipeline", "from mpo.baselines.morlhf import build", "nothing in mpo imports mpo.baselines"),
    ("mpo.experiment", "from mpo.studies import bench", "nothing in mpo imports mpo.studies"),
    ("mpo.stages.rl", "from mpo.stages.pipeline import _link", "_link is private to mpo.stages.pipeline"),
    ("mpo.infra.errors", "from mpo.infra.console import say", "import circle"),
])
def test_a_broken_rule_is_found(tmp_path, module, line, rule):
    """Each rule fails on a deliberate violation: a copy of the tree with one import added."""
    for folder in ("mpo", "baselines"):
        for file in (ROOT / folder).rglob("*.py"):
            copy = tmp_path / file.relative_to(ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(file.read_text())
    parts = module.split(".")
    target = tmp_path.joinpath(*parts[:-1], parts[-1] + ".py")
    target.write_text(target.read_text() + f"\n\ndef _violation():\n    {line}\n")
    if rule == "import circle":  # console already imports errors' floor-mates; close a circle through errors
        (tmp_path / "mpo/infra/console.py").write_text((tmp_path / "mpo/infra/console.py").read_text()
                                                      + "\nfrom mpo.infra.errors import UserError\n")
    broken = broken_rules(read_modules(tmp_path))
    assert any(rule in b for b in broken), broken
