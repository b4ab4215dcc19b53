"""What ``mip list`` shows: every component with its doc and parameters, read from the source.

The docs and the ``Params`` dataclass of a component are read with ``ast`` from its source file,
so listing imports neither torch nor the components (``bench/cli_startup.py`` measures it). A
component that is not a plain source file (a compiled plugin) is imported instead. Finding and
importing classes by name is :mod:`miprometheus.registry`'s; where they are defined,
:mod:`miprometheus.discovery`'s.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miprometheus import discovery, registry
from miprometheus.errors import RegistryError
from miprometheus.params import bounds_text


@dataclass
class ParamInfo:
    """One parameter of a component, as ``mip list`` prints it."""

    name: str
    type: str
    default: str
    doc: str  # with the bounds and "[from the problem unless set]" appended, as mip list prints it
    bounds: str = ""  # what ``param(min=, max=, also=)`` declares: "at least 1", "-1 or at least 1", "between 0 and 1"


@dataclass
class ComponentInfo:
    """A component of a kind (problems, models): where it is defined, its doc and its parameters."""

    kind: str
    name: str
    module: str
    class_name: str
    doc: str = ""
    params: list[ParamInfo] = field(default_factory=list)


def available(kind: str) -> dict[str, ComponentInfo]:
    """Every component of a kind: built-in, from entry points, and registered at run time."""
    result = {name: ComponentInfo(kind, name, where.module, where.class_name)
              for name, where in discovery.builtin_index(kind).items()}
    for name, ep in discovery.entry_points(kind).items():
        module, _, attr = ep.value.partition(":")
        result.setdefault(name, ComponentInfo(kind, name, module, attr or name))
    for name, cls in registry.registered(kind).items():
        result.setdefault(name, ComponentInfo(kind, name, cls.__module__, cls.__name__,
                                              (cls.__doc__ or "").strip()))
    return result


def describe(kind: str, name: str) -> ComponentInfo:
    """A component's doc and parameters, read from its source (imports nothing)."""
    comps = available(kind)
    if name not in comps:
        raise registry.unknown(kind, name, list(comps))
    info = comps[name]
    found = _find_class(info.module, info.class_name)
    if found is None:  # not a plain source file: fall back to importing it
        try:
            return _describe_imported(kind, name)
        except RegistryError as exc:  # a broken plugin must not break the listing of all the others
            info.doc = f"(cannot be loaded: {exc})"
            info.params = []
            return info
    cls_node, module = found
    info.doc = info.doc or (ast.get_docstring(cls_node) or "").strip()
    params = _params_node(cls_node, module)
    info.params = _param_fields(*params) if params else []
    return info


# --- reading classes from the source ------------------------------------------------------------------
@functools.cache
def _parsed(path: str) -> ast.Module:
    """A source file's syntax tree, parsed once per listing (classes, constants and imports read from it)."""
    return ast.parse(Path(path).read_text(encoding="utf-8"))


def _source_classes(module: str) -> tuple[dict[str, ast.ClassDef], dict[str, str]]:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise LookupError(module)
    tree = _parsed(spec.origin)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    imports: dict[str, str] = {}
    for n in tree.body:
        if isinstance(n, ast.ImportFrom) and n.module:
            base = n.module
            if n.level:
                pkg = module.rsplit(".", n.level)[0]
                base = f"{pkg}.{n.module}"
            for alias in n.names:
                imports[alias.asname or alias.name] = f"{base}:{alias.name}"
    return classes, imports


def _find_class(module: str, name: str) -> tuple[ast.ClassDef, str] | None:
    """A class's AST node and the module that defines it, following ``from x import Y``."""
    try:
        classes, imports = _source_classes(module)
    except (LookupError, SyntaxError, ImportError, ValueError, OSError, UnicodeDecodeError):
        return None
    if name in classes:
        return classes[name], module
    if name in imports:
        target_module, _, target_name = imports[name].partition(":")
        return _find_class(target_module, target_name)
    return None


def _params_node(cls_node: ast.ClassDef, module: str, depth: int = 0) -> tuple[ast.ClassDef, str] | None:
    """The ``Params`` dataclass of a component class, looking through its base classes."""
    for stmt in cls_node.body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == "Params":
            return stmt, module
        assigned = (isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "Params"
                                                         for t in stmt.targets)) or \
                   (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and stmt.target.id == "Params" and stmt.value is not None)
        if assigned:  # ``Params = SomeParams`` or ``Params: ClassVar[type] = SomeParams``
            # Stop here either way: the bases of a class that sets Params (Problem, Model) are
            # torch classes, and looking them up would import torch.
            return _find_class(module, stmt.value.id) if isinstance(stmt.value, ast.Name) else None
    if depth > 8:
        return None
    for base in cls_node.bases:
        if isinstance(base, ast.Name):
            found = _find_class(module, base.id)
            if found:
                result = _params_node(found[0], found[1], depth + 1)
                if result:
                    return result
    return None


def _base_class(base: ast.expr, module: str) -> tuple[ast.ClassDef, str] | None:
    """A base class written ``Name`` or ``Component.Params`` (a task's Params extending its base task's)."""
    if isinstance(base, ast.Name):
        return _find_class(module, base.id)
    if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name):
        outer = _find_class(module, base.value.id)
        if outer and base.attr == "Params":
            return _params_node(*outer)  # the outer class may inherit its Params
        if outer:
            return next(((n, outer[1]) for n in outer[0].body
                         if isinstance(n, ast.ClassDef) and n.name == base.attr), None)
    return None


def _param_fields(node: ast.ClassDef, module: str, depth: int = 0) -> list[ParamInfo]:
    fields: dict[str, ParamInfo] = {}
    if depth < 8:
        for base in node.bases:
            if isinstance(base, ast.Name | ast.Attribute):
                found = _base_class(base, module)
                if found:
                    for info in _param_fields(found[0], found[1], depth + 1):
                        fields[info.name] = info
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        if "ClassVar" in ast.unparse(stmt.annotation):  # not a dataclass field
            continue
        default, doc = "(required)", ""
        value = stmt.value
        if isinstance(value, ast.Call) and discovery.decorator_name(value) == "field":  # dataclasses.field(...)
            kws = {kw.arg: kw.value for kw in value.keywords}
            if "default" in kws:
                default = ast.unparse(kws["default"])
            elif "default_factory" in kws:
                default = _factory_default(kws["default_factory"])
        elif isinstance(value, ast.Call) and discovery.decorator_name(value) == "param":
            args = list(value.args)
            kws = {kw.arg: kw.value for kw in value.keywords}
            if args:
                default = ast.unparse(args[0])
            if "default" in kws:
                default = ast.unparse(kws["default"])
            if "factory" in kws:
                default = _factory_default(kws["factory"])
            doc_node = args[1] if len(args) > 1 else kws.get("doc")
            if isinstance(doc_node, ast.Constant):
                doc = str(doc_node.value)
            bounds = bounds_text(*(_constant(kws[key], module) if key in kws else empty
                                   for key, empty in (("min", None), ("max", None), ("also", ()))))
            if bounds:
                doc = (doc + " " if doc else "") + f"[{bounds}]"
            if isinstance(kws.get("from_problem"), ast.Constant) and kws["from_problem"].value:
                doc = (doc + " " if doc else "") + "[from the problem unless set]"
        elif value is not None:
            default = ast.unparse(value)
        fields[stmt.target.id] = ParamInfo(stmt.target.id, ast.unparse(stmt.annotation), default, doc, bounds)
    return list(fields.values())


def _describe_imported(kind: str, name: str) -> ComponentInfo:
    import dataclasses

    from miprometheus.params import param_doc

    cls = registry.get(kind, name)
    info = ComponentInfo(kind, name, cls.__module__, cls.__name__, (cls.__doc__ or "").strip())
    for f in dataclasses.fields(cls.Params):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        metadata = f.metadata or {}
        bounds = bounds_text(metadata.get("min"), metadata.get("max"), metadata.get("also", ()))
        doc = " ".join(part for part in (param_doc(f), f"[{bounds}]" if bounds else "") if part)
        info.params.append(ParamInfo(f.name, str(f.type), default, doc, bounds))
    return info


def _constant(node: ast.expr, module: str) -> Any:
    """The value a ``param()`` keyword gives: a literal, or a module-level constant of the component's module
    (``max=MAX_SUBSEQUENCES``) or one it imports by name (``from miprometheus.params import MAX_UNITS``), whose
    value may be simple arithmetic (``2**63 - 1``); what the source says when it is none of these."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.Name):
        found = _module_constant(node.id, module, depth=2)
        if found is not None:
            return found
    return ast.unparse(node)


def _module_constant(name: str, module: str, depth: int) -> Any:
    assigned, imported = _module_names(module)
    if name in assigned:
        return _arithmetic(assigned[name])
    if depth > 0 and name in imported:
        return _module_constant(name, imported[name], depth - 1)
    return None


@functools.cache
def _module_names(module: str) -> tuple[dict[str, ast.expr], dict[str, str]]:
    """A module's top-level constants (name → value node) and names imported ``from X import name`` (→ X),
    parsed once per module and listing."""
    assigned: dict[str, ast.expr] = {}
    imported: dict[str, str] = {}
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return assigned, imported
    for stmt in _parsed(spec.origin).body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, stmt.value)
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
            for alias in stmt.names:
                if alias.asname is None:
                    imported[alias.name] = stmt.module
    return assigned, imported


def _arithmetic(node: ast.expr) -> Any:
    """A literal, or +, -, * and ** of literals (the caps' ``2**63 - 1``); None for anything else."""
    import operator

    operators = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Pow: operator.pow}
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.BinOp) and type(node.op) in operators:
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        if isinstance(left, int) and isinstance(right, int) and (not isinstance(node.op, ast.Pow) or right <= 64):
            return operators[type(node.op)](left, right)
    return None


def _factory_default(node: ast.expr) -> str:
    """How a default made by a factory reads: a lambda's body (``[128, 128]``), else the call (``dict()``)."""
    return ast.unparse(node.body) if isinstance(node, ast.Lambda) else ast.unparse(node) + "()"
