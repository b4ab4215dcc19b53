"""Find components by name: problems, models (decorators + entry points), optimizers, schedulers.

``@register_problem`` / ``@register_model`` sit beside the class. Built-in components are
found by reading the package's source files (no import), so ``mip list`` answers without
importing torch; a component's module is imported only when it is used. Third-party packages
add components through the entry-point groups ``miprometheus.problems`` and
``miprometheus.models`` (``name = "package.module:Class"``).
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from miprometheus.errors import RegistryError

T = TypeVar("T", bound=type)

KINDS = {"problems": "register_problem", "models": "register_model"}
ENTRY_POINT_GROUPS = {"problems": "miprometheus.problems", "models": "miprometheus.models"}
_PACKAGE_ROOT = Path(__file__).resolve().parent

_registered: dict[str, dict[str, type]] = {"problems": {}, "models": {}}


def _register(kind: str, cls: T, name: str | None) -> T:
    key = name or cls.__name__
    existing = _registered[kind].get(key)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise RegistryError(f"two {kind} are registered as '{key}': {existing.__module__} and {cls.__module__}")
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


# --- the source index: names -> modules, without importing them ----------------------------------
@dataclass
class ParamInfo:
    name: str
    type: str
    default: str
    doc: str


@dataclass
class ComponentInfo:
    kind: str
    name: str
    module: str
    class_name: str
    doc: str = ""
    params: list[ParamInfo] = field(default_factory=list)


def _module_name(path: Path) -> str:
    rel = path.relative_to(_PACKAGE_ROOT.parent).with_suffix("")
    return ".".join(rel.parts)


def _decorator_name(node: ast.expr) -> str | None:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


def _registered_name(node: ast.ClassDef, decorator: str) -> str | None:
    for dec in node.decorator_list:
        if _decorator_name(dec) == decorator:
            if isinstance(dec, ast.Call):
                for kw in dec.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                        return str(kw.value.value)
            return node.name
    return None


_index_cache: dict[str, dict[str, ComponentInfo]] = {}


def builtin_index(kind: str) -> dict[str, ComponentInfo]:
    """Built-in components of a kind, found by reading the sources of ``miprometheus/<kind>/``."""
    if kind in _index_cache:
        return _index_cache[kind]
    decorator = KINDS[kind]
    found: dict[str, ComponentInfo] = {}
    for path in sorted((_PACKAGE_ROOT / kind).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if decorator not in text:
            continue
        tree = ast.parse(text, filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                name = _registered_name(node, decorator)
                if name:
                    found[name] = ComponentInfo(kind, name, _module_name(path), node.name,
                                                (ast.get_docstring(node) or "").strip())
    _index_cache[kind] = found
    return found


def _entry_points(kind: str) -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUPS[kind])}


def available(kind: str) -> dict[str, ComponentInfo]:
    """Every component of a kind: built-in, registered at run time, and from entry points."""
    result = dict(builtin_index(kind))
    for name, ep in _entry_points(kind).items():
        module, _, attr = ep.value.partition(":")
        result.setdefault(name, ComponentInfo(kind, name, module, attr or name))
    for name, cls in _registered[kind].items():
        result.setdefault(name, ComponentInfo(kind, name, cls.__module__, cls.__name__,
                                              (cls.__doc__ or "").strip()))
    return result


def _unknown(kind: str, name: str, names: list[str]) -> RegistryError:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    close += [n for n in names if n.lower() == str(name).lower() and n not in close]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return RegistryError(f"unknown {kind[:-1]} '{name}'.{hint} Known {kind}: {', '.join(sorted(names))}.")


def get(kind: str, name: str) -> type:
    """The class of a component, importing only its module."""
    if name in _registered[kind]:
        return _registered[kind][name]
    index = builtin_index(kind)
    if name in index:
        importlib.import_module(index[name].module)
        if name in _registered[kind]:
            return _registered[kind][name]
    eps = _entry_points(kind)
    if name in eps:
        try:
            cls = eps[name].load()
        except Exception as exc:  # a broken plugin is the user's input
            raise RegistryError(f"{kind[:-1]} '{name}' from entry point '{eps[name].value}' "
                                f"failed to import: {exc}") from exc
        return _register(kind, cls, name)
    raise _unknown(kind, name, list(available(kind)))


def get_problem(name: str) -> type:
    return get("problems", name)


def get_model(name: str) -> type:
    return get("models", name)


# --- parameter docs from the source, for `mip list` ---------------------------------------------
def _source_classes(module: str) -> tuple[dict[str, ast.ClassDef], dict[str, str], str]:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise LookupError(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
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
    return classes, imports, module


def _find_class(module: str, name: str) -> tuple[ast.ClassDef, str] | None:
    """A class's AST node and the module that defines it, following ``from x import Y``."""
    try:
        classes, imports, _ = _source_classes(module)
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


def _param_fields(node: ast.ClassDef, module: str, depth: int = 0) -> list[ParamInfo]:
    fields: dict[str, ParamInfo] = {}
    if depth < 8:
        for base in node.bases:
            if isinstance(base, ast.Name):
                found = _find_class(module, base.id)
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
        if isinstance(value, ast.Call) and _decorator_name(value) == "field":  # dataclasses.field(...)
            kws = {kw.arg: kw.value for kw in value.keywords}
            if "default" in kws:
                default = ast.unparse(kws["default"])
            elif "default_factory" in kws:
                default = ast.unparse(kws["default_factory"]) + "()"
        elif isinstance(value, ast.Call) and _decorator_name(value) == "param":
            args = list(value.args)
            kws = {kw.arg: kw.value for kw in value.keywords}
            if args:
                default = ast.unparse(args[0])
            if "default" in kws:
                default = ast.unparse(kws["default"])
            if "factory" in kws:
                default = ast.unparse(kws["factory"]) + "()"
            doc_node = args[1] if len(args) > 1 else kws.get("doc")
            if isinstance(doc_node, ast.Constant):
                doc = str(doc_node.value)
            if isinstance(kws.get("from_problem"), ast.Constant) and kws["from_problem"].value:
                doc = (doc + " " if doc else "") + "[from the problem unless set]"
        elif value is not None:
            default = ast.unparse(value)
        fields[stmt.target.id] = ParamInfo(stmt.target.id, ast.unparse(stmt.annotation), default, doc)
    return list(fields.values())


def describe(kind: str, name: str) -> ComponentInfo:
    """A component's doc and parameters, read from its source (imports nothing)."""
    comps = available(kind)
    if name not in comps:
        raise _unknown(kind, name, list(comps))
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


def _describe_imported(kind: str, name: str) -> ComponentInfo:
    import dataclasses

    from miprometheus.params import param_doc

    cls = get(kind, name)
    info = ComponentInfo(kind, name, cls.__module__, cls.__name__, (cls.__doc__ or "").strip())
    for f in dataclasses.fields(cls.Params):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        info.params.append(ParamInfo(f.name, str(f.type), default, param_doc(f)))
    return info


# --- optimizers and schedulers from torch, by name --------------------------------------------------
def _torch_classes(module: Any, base: type) -> dict[str, type]:
    return {n: c for n, c in vars(module).items()
            if isinstance(c, type) and issubclass(c, base) and c is not base and not n.startswith("_")}


def get_optimizer(name: str) -> type:
    import torch.optim

    classes = _torch_classes(torch.optim, torch.optim.Optimizer)
    if name not in classes:
        raise _unknown("optimizers", name, list(classes))
    return classes[name]


def get_scheduler(name: str) -> type:
    import torch.optim.lr_scheduler as sched

    classes = _torch_classes(sched, sched.LRScheduler)
    classes["ReduceLROnPlateau"] = sched.ReduceLROnPlateau
    if name not in classes:
        raise _unknown("schedulers", name, list(classes))
    return classes[name]
