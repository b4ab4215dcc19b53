"""Where components are defined, found without importing them: the package's sources and installed plugins.

Built-in components are located by reading the package's source files for the registering
decorator (``@register_problem`` / ``@register_model``) with ``ast``, so that a component's module
is imported only when a config names it, and ``mip list`` imports neither torch nor the components.
Third-party packages add components through the entry-point groups ``miprometheus.problems`` and
``miprometheus.models`` (``name = "package.module:Class"``). The registry (:mod:`miprometheus.registry`)
imports a component found here when it is asked for by name.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any, NamedTuple

#: the kinds of components, and the decorator that registers one of each kind
KINDS = {"problems": "register_problem", "models": "register_model"}
ENTRY_POINT_GROUPS = {"problems": "miprometheus.problems", "models": "miprometheus.models"}
_PACKAGE_ROOT = Path(__file__).resolve().parent


class Location(NamedTuple):
    """Where a built-in component is defined: its module, class name and source file."""

    module: str
    class_name: str
    path: str


def _module_name(path: Path) -> str:
    rel = path.relative_to(_PACKAGE_ROOT.parent).with_suffix("")
    return ".".join(rel.parts)


def decorator_name(node: ast.expr) -> str | None:
    """The name a decorator (or a call) is written with: ``register_model`` in ``@registry.register_model(...)``."""
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


def _registered_name(node: ast.ClassDef, decorator: str) -> str | None:
    for dec in node.decorator_list:
        if decorator_name(dec) == decorator:
            if isinstance(dec, ast.Call):
                for kw in dec.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                        return str(kw.value.value)
            return node.name
    return None


_index_cache: dict[str, dict[str, Location]] = {}


def builtin_index(kind: str) -> dict[str, Location]:
    """Built-in components of a kind, found by reading the sources of ``miprometheus/<kind>/``."""
    if kind in _index_cache:
        return _index_cache[kind]
    decorator = KINDS[kind]
    found: dict[str, Location] = {}
    for path in sorted((_PACKAGE_ROOT / kind).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if decorator not in text:
            continue
        for node in ast.parse(text, filename=str(path)).body:
            if isinstance(node, ast.ClassDef):
                name = _registered_name(node, decorator)
                if name:
                    found[name] = Location(_module_name(path), node.name, os.path.realpath(path))
    _index_cache[kind] = found
    return found


def entry_points(kind: str) -> dict[str, Any]:
    """Components of a kind that installed packages declare (name -> ``importlib.metadata.EntryPoint``)."""
    from importlib.metadata import entry_points as installed

    return {ep.name: ep for ep in installed(group=ENTRY_POINT_GROUPS[kind])}


__all__ = ["ENTRY_POINT_GROUPS", "KINDS", "Location", "builtin_index", "decorator_name", "entry_points"]
