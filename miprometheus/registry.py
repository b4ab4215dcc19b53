"""Find components by name: problems, models (decorators + entry points), optimizers, schedulers.

``@register_problem`` / ``@register_model`` sit beside the class. Built-in components are
located by reading the package's source files for the decorator (no import), so a component's
module is imported only when a config names it. Third-party packages add components through the
entry-point groups ``miprometheus.problems`` and ``miprometheus.models``
(``name = "package.module:Class"``). What ``mip list`` shows (docs, parameters) is
:mod:`miprometheus.catalogue`'s.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from miprometheus.errors import RegistryError

T = TypeVar("T", bound=type)

KINDS = {"problems": "register_problem", "models": "register_model"}
ENTRY_POINT_GROUPS = {"problems": "miprometheus.problems", "models": "miprometheus.models"}
_PACKAGE_ROOT = Path(__file__).resolve().parent

_registered: dict[str, dict[str, type]] = {"problems": {}, "models": {}}


class Location(NamedTuple):
    """Where a built-in component is defined: its module, class name and source file."""

    module: str
    class_name: str
    path: str


def _source_file(cls: type) -> str | None:
    module = sys.modules.get(cls.__module__)
    origin = getattr(module, "__file__", None)
    return os.path.realpath(origin) if origin else None


def _same_class(a: type, b: type) -> bool:
    """Whether two class objects are one class defined again.

    A class is identified by its module and qualname. ``importlib.reload``, a notebook cell run
    twice, or a module imported under two names (``tests.helpers`` and ``helpers``) define new
    class objects of the same class: the module has the same name or the same source file. Two
    ``LSTM`` classes in two modules share a qualname but are different classes.
    """
    if a is b:
        return True
    if a.__qualname__ != b.__qualname__:
        return False
    if a.__module__ == b.__module__:
        return True
    file = _source_file(a)
    return file is not None and file == _source_file(b)


def _taken(kind: str, key: str, first: str, second: type) -> RegistryError:
    decorator = KINDS[kind]
    return RegistryError(f"two {kind} are registered as '{key}': {first} and "
                         f"{second.__module__}.{second.__qualname__}; register one under another name "
                         f"(@{decorator}(name=...))")


def _register(kind: str, cls: T, name: str | None) -> T:
    key = name or cls.__name__
    existing = _registered[kind].get(key)
    if existing is not None and not _same_class(existing, cls):
        raise _taken(kind, key, f"{existing.__module__}.{existing.__qualname__}", cls)
    builtin = builtin_index(kind).get(key)
    if existing is None and builtin is not None and builtin.module != cls.__module__:
        # A built-in not imported yet still owns its name: otherwise which class a config gets
        # would depend on what happened to be imported first.
        if builtin.path != _source_file(cls) or builtin.class_name != cls.__qualname__:
            raise _taken(kind, key, f"{builtin.module}.{builtin.class_name}", cls)
    _registered[kind][key] = cls
    return cls


def register_problem(cls: T | None = None, *, name: str | None = None) -> Any:
    """Class decorator: make a Problem available by name in configs (``problem.name``)."""
    if cls is None:
        return lambda c: _register("problems", c, name)
    return _register("problems", cls, name)


def register_model(cls: T | None = None, *, name: str | None = None) -> Any:
    """Class decorator: make a Model available by name in configs (``model.name``)."""
    if cls is None:
        return lambda c: _register("models", c, name)
    return _register("models", cls, name)


# --- built-ins located from the source, without importing them ------------------------------------
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


def registered(kind: str) -> dict[str, type]:
    """Components of a kind registered so far in this process (a copy)."""
    return dict(_registered[kind])


def names(kind: str) -> list[str]:
    """Every name a config may use for a kind: built-in, from entry points, registered at run time."""
    return sorted({*builtin_index(kind), *entry_points(kind), *_registered[kind]})


def unknown(kind: str, name: str, known: list[str]) -> RegistryError:
    """The error for a name not among ``known``, with the closest names as a hint."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    close += [n for n in known if n.lower() == str(name).lower() and n not in close]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return RegistryError(f"unknown {kind[:-1]} '{name}'.{hint} Known {kind}: {', '.join(sorted(known))}.")


def get(kind: str, name: str) -> type:
    """The class of a component, importing only its module."""
    if name in _registered[kind]:
        return _registered[kind][name]
    index = builtin_index(kind)
    if name in index:
        importlib.import_module(index[name].module)
        if name in _registered[kind]:
            return _registered[kind][name]
    eps = entry_points(kind)
    if name in eps:
        try:
            cls = eps[name].load()
        except Exception as exc:  # a broken plugin is the user's input
            raise RegistryError(f"{kind[:-1]} '{name}' from entry point '{eps[name].value}' "
                                f"failed to import: {exc}") from exc
        return _register(kind, cls, name)
    raise unknown(kind, name, names(kind))


def get_problem(name: str) -> type:
    """The Problem class registered as ``name``."""
    return get("problems", name)


def get_model(name: str) -> type:
    """The Model class registered as ``name``."""
    return get("models", name)


# --- optimizers and schedulers from torch, by name --------------------------------------------------
def _torch_classes(module: Any, base: type) -> dict[str, type]:
    return {n: c for n, c in vars(module).items()
            if isinstance(c, type) and issubclass(c, base) and c is not base and not n.startswith("_")}


def get_optimizer(name: str) -> type:
    """A ``torch.optim`` optimizer class by name (``Adam``, ``SGD``, ...)."""
    import torch.optim

    classes = _torch_classes(torch.optim, torch.optim.Optimizer)
    if name not in classes:
        raise unknown("optimizers", name, list(classes))
    return classes[name]


def get_scheduler(name: str) -> type:
    """A ``torch.optim.lr_scheduler`` class by name (``StepLR``, ``ReduceLROnPlateau``, ...)."""
    import torch.optim.lr_scheduler as sched

    classes = _torch_classes(sched, sched.LRScheduler)
    classes["ReduceLROnPlateau"] = sched.ReduceLROnPlateau
    if name not in classes:
        raise unknown("schedulers", name, list(classes))
    return classes[name]
