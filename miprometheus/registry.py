"""Find components by name: problems and models, registered by a decorator beside the class or by a plugin.

``@register_problem`` / ``@register_model`` sit beside the class; a name belongs to one class, and a
second class under a taken name is refused. A built-in component not imported yet is found by
:mod:`miprometheus.discovery` (which reads the sources) and imported when a config names it. What
``mip list`` shows (docs, parameters) is :mod:`miprometheus.catalogue`'s; optimizers and schedulers by
name, :mod:`miprometheus.optimizers`'.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import Any, TypeVar

from miprometheus.discovery import KINDS, builtin_index, entry_points
from miprometheus.errors import RegistryError

T = TypeVar("T", bound=type)

_registered: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}


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
