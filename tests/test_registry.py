"""Tests of the registry and the catalogue: built-ins found without torch, source-read docs, run-time
registration (one class per name), plugins."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from miprometheus import catalogue, optimizers, registry
from miprometheus.errors import ConfigError, RegistryError
from miprometheus.params import param

REPO = Path(__file__).resolve().parents[1]
MIP = REPO / ".venv" / "bin" / "mip"
BUILTINS = {"problems": {"MNIST", "SerialRecall", "ReverseRecall"}, "models": {"LSTM", "LeNet5", "SimpleConvNet"}}


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result


def test_available_and_describe_do_not_import_torch():
    result = run_python("""
        import json, sys
        from miprometheus import catalogue
        out = {}
        for kind in ("problems", "models"):
            out[kind] = {name: [p.name for p in catalogue.describe(kind, name).params]
                         for name in catalogue.available(kind)}
        catalogue.describe("models", "LSTM")
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))[:5]
        print(json.dumps(out))
    """)
    found = json.loads(result.stdout)
    for kind, names in BUILTINS.items():
        assert names <= set(found[kind])
    assert found["models"]["LSTM"] == ["input_item_size", "output_item_size", "hidden_size", "num_layers", "dropout"]
    assert found["problems"]["MNIST"][0] == "batch_size" and "data_folder" in found["problems"]["MNIST"]
    assert {"resize", "normalize", "random_crop_padding"} <= set(found["problems"]["MNIST"])  # the shared image params


def _real_default(f: dataclasses.Field) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "(required)"


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k, names in sorted(BUILTINS.items()) for n in sorted(names)])
def test_describe_matches_the_imported_params_dataclass(kind, name):
    info = catalogue.describe(kind, name)
    cls = registry.get(kind, name)
    assert info.name == name and info.class_name == cls.__name__ and info.module == cls.__module__
    assert info.doc and info.doc.splitlines()[0] == cls.__doc__.strip().splitlines()[0]
    fields = dataclasses.fields(cls.Params)
    assert [p.name for p in info.params] == [f.name for f in fields]
    for p, f in zip(info.params, fields, strict=True):
        real = _real_default(f)
        try:
            read = ast.literal_eval(p.default)
        except (ValueError, SyntaxError):  # an expression (a factory call): only literals are compared
            continue
        assert read == real, (name, p.name)
        assert p.doc.startswith(f.metadata.get("doc", "")), (name, p.name)
        if f.metadata.get("from_problem"):
            assert "from the problem" in p.doc


def test_get_returns_the_builtin_classes():
    from miprometheus.models.recurrent.lstm import LSTM
    from miprometheus.problems.seq_to_seq.algorithmic.serial_recall import SerialRecall

    assert registry.get_model("LSTM") is LSTM
    assert registry.get_problem("SerialRecall") is SerialRecall
    assert registry.get("models", "LSTM") is LSTM


@pytest.mark.parametrize(("kind", "name", "close"), [
    ("models", "LeNet", "LeNet5"), ("models", "lstm", "LSTM"), ("problems", "serialrecall", "SerialRecall"),
    ("problems", "MNSIT", "MNIST"),
])
def test_unknown_name_is_a_registry_error_with_close_names(kind, name, close):
    with pytest.raises(RegistryError) as info:
        registry.get(kind, name)
    message = str(info.value)
    assert f"'{name}'" in message and re.search(f"Did you mean [^?]*'{close}'", message), message
    for known in BUILTINS[kind]:
        assert known in message
    with pytest.raises(RegistryError):
        catalogue.describe(kind, name)


def test_unknown_name_without_close_names_lists_the_known_ones():
    with pytest.raises(RegistryError) as info:
        registry.get_model("Zzzzzzzzzz")
    assert "Did you mean" not in str(info.value) and "LeNet5" in str(info.value)


@pytest.fixture
def clean_registry():
    before = {kind: dict(names) for kind, names in registry._registered.items()}
    yield
    for kind, names in before.items():
        registry._registered[kind].clear()
        registry._registered[kind].update(names)


@pytest.mark.usefixtures("clean_registry")
def test_register_a_model_at_run_time():
    from miprometheus.models.model import Model

    @registry.register_model
    class TinyRuntimeModel(Model):
        """A model registered by a test."""

        @dataclasses.dataclass
        class Params:
            width: int = param(3, "how wide")
            tags: list = param(factory=lambda: ["a"], doc="some tags")

    assert registry.get_model("TinyRuntimeModel") is TinyRuntimeModel
    assert "TinyRuntimeModel" in catalogue.available("models")
    assert BUILTINS["models"] <= set(catalogue.available("models"))
    info = catalogue.describe("models", "TinyRuntimeModel")
    assert [(p.name, p.default, p.doc) for p in info.params] == [("width", "3", "how wide"),
                                                                 ("tags", "['a']", "some tags")]
    assert info.doc == "A model registered by a test."

    @registry.register_model(name="OtherName")
    class Aliased(Model):
        """Registered under another name."""

    assert registry.get_model("OtherName") is Aliased
    assert "OtherName" in catalogue.available("models") and "Aliased" not in catalogue.available("models")

    class Impostor(Model):
        pass

    with pytest.raises(RegistryError, match="OtherName"):
        registry.register_model(name="OtherName")(Impostor)
    assert registry.get_model("OtherName") is Aliased


@pytest.mark.usefixtures("clean_registry")
def test_register_a_problem_at_run_time_validates_in_a_config(tmp_path):
    from miprometheus.config import load_config
    from miprometheus.config.experiment_spec import validate
    from miprometheus.problems.problem import Problem, ProblemParams

    @registry.register_problem
    class TinyRuntimeProblem(Problem):
        """A problem registered by a test."""

        @dataclasses.dataclass
        class Params(ProblemParams):
            level: int = param(2, "difficulty")

    assert registry.get_problem("TinyRuntimeProblem") is TinyRuntimeProblem
    path = tmp_path / "exp.yaml"
    config = ("training:\n  problem:\n    name: TinyRuntimeProblem\n    level: 5\n"
              "  terminal_conditions: {episode_limit: 1}\nmodel:\n  name: LeNet5\n")
    path.write_text(config)
    spec = validate(load_config([path]))
    assert spec.splits["training"].problem_params.level == 5
    path.write_text(config.replace("level", "levle"))
    with pytest.raises(ConfigError, match="(?i)did you mean 'training.problem.level'"):
        validate(load_config([path]))


# --- one class per name ----------------------------------------------------------------------------
TWIN_MODEL = '''
from miprometheus.models.model import Model
from miprometheus.registry import register_model


@register_model
class {name}(Model):
    """A model defined in {module}."""
'''


@pytest.fixture
def module_folder(tmp_path, monkeypatch, clean_registry):  # clean_registry: forgets what the modules register
    """A folder on sys.path for throw-away modules; they are forgotten afterwards."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_second_class_of_the_same_qualname_from_another_module_is_refused(module_folder):
    import importlib

    for module in ("mip_twin_a", "mip_twin_b"):
        (module_folder / f"{module}.py").write_text(TWIN_MODEL.format(name="TwinLSTM", module=module))
    first = importlib.import_module("mip_twin_a").TwinLSTM
    with pytest.raises(RegistryError) as info:
        importlib.import_module("mip_twin_b")
    message = str(info.value)
    assert "'TwinLSTM'" in message and "mip_twin_a.TwinLSTM" in message and "mip_twin_b.TwinLSTM" in message
    assert "name=" in message  # says how to fix it
    assert registry.get_model("TwinLSTM") is first


def test_a_class_cannot_take_the_name_of_a_builtin(module_folder):
    import importlib

    (module_folder / "mip_my_lstm.py").write_text(TWIN_MODEL.format(name="LSTM", module="mip_my_lstm"))
    with pytest.raises(RegistryError, match=r"miprometheus\.models\.recurrent\.lstm\.LSTM and mip_my_lstm\.LSTM"):
        importlib.import_module("mip_my_lstm")
    assert registry.get_model("LSTM").__module__ == "miprometheus.models.recurrent.lstm"


def test_a_builtin_name_is_taken_even_before_the_builtin_is_imported(module_folder):
    (module_folder / "mip_my_lstm.py").write_text(TWIN_MODEL.format(name="LSTM", module="mip_my_lstm"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(module_folder), str(REPO)]))
    result = run_python("""
        import sys
        from miprometheus.errors import RegistryError
        try:
            import mip_my_lstm
        except RegistryError as exc:
            print(exc)
        else:
            raise AssertionError("a second LSTM was registered")
        assert "miprometheus.models.recurrent.lstm" not in sys.modules
        from miprometheus import registry
        assert registry.get_model("LSTM").__module__ == "miprometheus.models.recurrent.lstm"
    """, env=env)
    assert "miprometheus.models.recurrent.lstm.LSTM and mip_my_lstm.LSTM" in result.stdout


def test_reloading_a_module_or_importing_it_under_two_names_keeps_working(module_folder):
    import importlib

    package = module_folder / "mip_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "reloaded.py").write_text(TWIN_MODEL.format(name="ReloadedModel", module="reloaded"))
    module = importlib.import_module("mip_pkg.reloaded")
    first = module.ReloadedModel
    second = importlib.reload(module).ReloadedModel
    assert second is not first and registry.get_model("ReloadedModel") is second
    sys.path.insert(0, str(package))  # the same file as a top-level module, as test runners sometimes do
    try:
        third = importlib.import_module("reloaded").ReloadedModel
    finally:
        sys.path.remove(str(package))
    assert third.__module__ == "reloaded" and registry.get_model("ReloadedModel") is third


@pytest.mark.usefixtures("clean_registry")
def test_a_class_defined_again_in_the_same_module_replaces_the_first():
    """A notebook cell run twice: same module, same qualname."""
    from miprometheus.models.model import Model

    classes = []
    for _ in range(2):
        @registry.register_model
        class CellModel(Model):
            """Defined twice."""

        classes.append(CellModel)
    assert classes[0] is not classes[1] and registry.get_model("CellModel") is classes[1]


# --- plugins through entry points ------------------------------------------------------------------
PLUGIN_MODEL = '''
"""A third-party model."""
from dataclasses import dataclass

from miprometheus.models.model import Model
from miprometheus.params import param


class DemoModel(Model):
    """A demo model from a plugin package."""

    @dataclass
    class Params:
        """Parameters of the demo model."""

        classes: int = param(doc="number of classes", from_problem=True)
        width: int = param(7, "width of the demo layer")
        scale: float = param(0.5, "scale of the demo output")

    def __init__(self, params):
        super().__init__(params)
'''

PLUGIN_PROBLEM = '''
"""A third-party problem that keeps the base class's parameters."""
from miprometheus.problems.problem import Problem


class DemoProblem(Problem):
    """A demo problem from a plugin package."""
'''


@pytest.fixture
def plugin(tmp_path):
    package = tmp_path / "mip_plugin_demo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(PLUGIN_MODEL)
    (package / "problem.py").write_text(PLUGIN_PROBLEM)
    info = tmp_path / "mip_plugin_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mip-plugin-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[miprometheus.models]\nDemoModel = mip_plugin_demo.model:DemoModel\n"
        "BrokenModel = mip_plugin_demo.nothere:Nope\n\n"
        "[miprometheus.problems]\nDemoProblem = mip_plugin_demo.problem:DemoProblem\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _mip(env: dict[str, str], *args: str) -> str:
    mip = str(MIP) if MIP.exists() else shutil.which("mip")
    assert mip, "the mip command is not installed"
    result = subprocess.run([mip, *args], capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_plugin_is_listed_by_mip_list(plugin):
    listing = _mip(plugin, "list", "models")
    for name in ["DemoModel", *BUILTINS["models"]]:
        assert name in listing
    assert "A demo model from a plugin package." in listing
    assert "classes, width, scale" in listing
    detail = _mip(plugin, "list", "models", "DemoModel")
    assert "mip_plugin_demo.model.DemoModel" in detail
    for text in ["width", "7", "width of the demo layer", "scale", "0.5", "classes", "(required)",
                 "from the problem"]:
        assert text in detail
    assert "DemoProblem" in _mip(plugin, "list", "problems")
    assert "batch_size" in _mip(plugin, "list", "problems", "DemoProblem")


def test_plugin_describe_does_not_import_torch(plugin):
    result = run_python("""
        import sys
        from miprometheus import catalogue
        assert "DemoModel" in catalogue.available("models") and "DemoProblem" in catalogue.available("problems")
        print([p.name for p in catalogue.describe("models", "DemoModel").params])
        print([p.name for p in catalogue.describe("problems", "DemoProblem").params])
        assert "torch" not in sys.modules, "describe imported torch"
    """, env=plugin)
    assert result.stdout.split("\n")[:2] == ["['classes', 'width', 'scale']", "['batch_size']"]


def test_plugin_get_returns_the_class(plugin):
    run_python("""
        from miprometheus import registry
        from miprometheus.errors import RegistryError
        cls = registry.get_model("DemoModel")
        assert cls.__name__ == "DemoModel" and cls.__module__ == "mip_plugin_demo.model"
        assert registry.get("models", "DemoModel") is cls
        assert registry.get_problem("DemoProblem").__name__ == "DemoProblem"
        try:
            registry.get_model("BrokenModel")
        except RegistryError as exc:
            assert "BrokenModel" in str(exc) and "failed to import" in str(exc), exc
        else:
            raise AssertionError("a broken entry point loaded")
        try:
            registry.get_model("DemoModle")
        except RegistryError as exc:
            assert "'DemoModel'" in str(exc), exc
        else:
            raise AssertionError("an unknown model loaded")
    """, env=plugin)


# --- optimizers and schedulers ----------------------------------------------------------------------
def test_optimizers_and_schedulers_by_name():
    import torch

    assert optimizers.get_optimizer("Adam") is torch.optim.Adam
    assert optimizers.get_optimizer("SGD") is torch.optim.SGD
    assert optimizers.get_scheduler("StepLR") is torch.optim.lr_scheduler.StepLR
    assert optimizers.get_scheduler("ReduceLROnPlateau") is torch.optim.lr_scheduler.ReduceLROnPlateau
    with pytest.raises(RegistryError, match="'Adam'"):
        optimizers.get_optimizer("Adamm")
    with pytest.raises(RegistryError, match="'StepLR'"):
        optimizers.get_scheduler("StepLr")
    with pytest.raises(RegistryError):
        optimizers.get_optimizer("Optimizer")  # the base class is not an optimizer to choose
    with pytest.raises(RegistryError):
        optimizers.get_scheduler("LRScheduler")
