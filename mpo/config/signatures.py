"""What keyword arguments a `_target_` or a TRL config accepts, read from source files without importing them.

Importing TRL costs ~7 s and torch ~1 s; a config check that waited for that would tell the user about a typo
ten seconds late. So the accepted names are read from the defining source with `ast`: a function's or class's
parameters, a dataclass's annotated fields (following base classes through the module's imports). Anything
that cannot be read this way (compiled code, lazy re-exports, dynamic signatures) answers None, meaning
"unknown": the caller then skips the check and the library itself reports the error later.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

# names a package re-exports lazily (no `def`/`class`/import the parser can follow) -> their module
_REEXPORTS = {("transformers", "TrainingArguments"): "transformers.training_args"}


@dataclass(frozen=True)
class Params:
    """The keyword names a callable accepts; ``open`` when it also takes ``**kwargs``."""

    names: frozenset[str]
    open: bool = False


@functools.cache
def module_source(module: str) -> Path | None:
    """The ``.py`` file of a dotted module, found without importing it (or any parent package)."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for base in spec.submodule_search_locations or ():
        stem = Path(base, *rest)
        for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


@functools.cache
def _tree(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None


def _split(target: str) -> tuple[str, str] | None:
    """``pkg.mod.Name`` -> (``pkg.mod``, ``Name``) when ``pkg.mod`` is a source module."""
    module, _, name = target.rpartition(".")
    return (module, name) if module and module_source(module) is not None else None


def _top_level(tree: ast.Module, name: str) -> ast.AST | None:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return node
    return None


def _imported_from(tree: ast.Module, module: str, name: str) -> str | None:
    """The module a name is imported from (``from x import name``), resolved if relative."""
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            if node.level == 0:
                return node.module
            package = module.rsplit(".", node.level)[0] if node.level else module
            return f"{package}.{node.module}" if node.module else package
    return None


def defines(target: str) -> bool | None:
    """Whether ``module.Name`` exists: True/False when the module's source says so, None when it cannot."""
    parts = _split(target)
    if parts is None:
        return None
    module, name = parts
    tree = _tree(module_source(module))
    if tree is None or _open_module(tree):
        return None
    return name in _module_names(tree)


def module_missing(target: str) -> bool:
    """True when the module part of ``pkg.mod.name`` certainly does not exist (no such package, or no file or
    directory for a submodule); False when it exists or cannot be told without importing."""
    if "." not in target:
        return False
    top, *rest = target.split(".")[:-1]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return True
    locations = list(spec.submodule_search_locations or ())
    for part in rest:
        entries = [e for base in locations for e in Path(base).glob(f"{part}*")]
        if not any(e.name == part or e.stem.split(".")[0] == part for e in entries):
            return bool(locations)  # a package directory without it; no locations: a plain module's attribute
        locations = [str(e) for e in entries if e.is_dir() and e.name == part]
        if not locations:
            return False  # a module file: the rest are attributes
    return False


def _open_module(tree: ast.Module) -> bool:
    """A module whose names cannot be listed statically: star imports, a module-level ``__getattr__``, or a
    lazy module that replaces itself in ``sys.modules`` (transformers)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            return True
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and "sys.modules" in ast.unparse(node):
            return True
    return _top_level(tree, "__getattr__") is not None


def _module_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _function_params(node: ast.FunctionDef | ast.AsyncFunctionDef, skip_self: bool) -> Params:
    args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
    names = [a.arg for a in args][1 if skip_self else 0 :]
    return Params(frozenset(names), node.args.kwarg is not None)


def _is_dataclass(node: ast.ClassDef) -> bool:
    def name(d: ast.expr) -> str:
        d = d.func if isinstance(d, ast.Call) else d
        return d.attr if isinstance(d, ast.Attribute) else getattr(d, "id", "")

    return any(name(d) == "dataclass" for d in node.decorator_list)


def _base_refs(node: ast.ClassDef) -> list[str]:
    return [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]


@functools.cache
def class_params(module: str, name: str) -> Params | None:
    """The keyword names ``module.name(...)`` accepts: its ``__init__``, or its dataclass fields and those of
    its bases. None when some part of that cannot be read from source."""
    path = module_source(module)
    tree = _tree(path) if path is not None else None
    node = _top_level(tree, name) if tree is not None else None
    if not isinstance(node, ast.ClassDef):
        return None
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is not None:
        return _function_params(init, skip_self=True)
    names: set[str] = set()
    if _is_dataclass(node):
        names = {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    for base in _base_refs(node):
        if base in ("object", "ABC", "Generic", "Protocol"):
            continue
        parent = _resolve_base(tree, module, base)
        if parent is None:
            return None
        names |= parent.names
        if parent.open:
            return Params(frozenset(names), True)
    if not _is_dataclass(node) and not node.bases:
        return Params(frozenset())
    return Params(frozenset(names))


def _resolve_base(tree: ast.Module, module: str, base: str) -> Params | None:
    if "." in base:
        return None
    if _top_level(tree, base) is not None:
        return class_params(module, base)
    source = _imported_from(tree, module, base)
    if source is None:
        return None
    if (source, base) in _REEXPORTS:
        source = _REEXPORTS[(source, base)]
    return class_params(source, base)


def callable_params(target: str) -> Params | None:
    """The keyword names the callable at ``target`` (``pkg.mod.name``) accepts, or None when unknown."""
    parts = _split(target)
    if parts is None:
        return None
    module, name = parts
    tree = _tree(module_source(module))
    node = _top_level(tree, name) if tree is not None else None
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return _function_params(node, skip_self=False)
    if isinstance(node, ast.ClassDef):
        return class_params(module, name)
    return None

