"""The ``mip train`` and ``mip test`` command lines: their flags, and the command that resumes an experiment.

The CLI builds its ``train`` and ``test`` parsers from here; the grid runner writes such command
lines for its jobs, and the SLURM executor rewrites a preempted job's into its resumed form. All of
them read the grammar from this one place, so a flag added to ``mip train`` is one that a requeued
job keeps. Nothing here imports the CLI: the CLI imports the grid, which imports this.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Sequence
from pathlib import Path

from miprometheus.layout import EXPDIR

RESUME_FLAG = "--resume"
#: ``mip train`` flags (with a value) that choose where a new experiment goes: meaningless for --resume
PLACEMENT_FLAGS = frozenset({"--expdir", "--savetag"})


def visualize_setting(text: str) -> int | str:
    """The value of ``--visualize``: a number of samples (at least 1) or ``window``."""
    if text == "window":
        return text
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of samples or 'window', not {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"the number of samples must be at least 1, not {count}")
    return count


#: the longest ``--savetag`` in bytes: it ends a folder name, whose limit is 255 bytes on most file systems
SAVETAG_MAX_BYTES = 100
#: what a ``--savetag`` may hold besides letters and digits: nothing that separates or hides a path
SAVETAG_PUNCTUATION = frozenset("_.,=+-@")


def savetag_name(text: str) -> str:
    """The value of ``--savetag``, which ends a folder name: letters, digits, ``_ . , = + - @``; 100 bytes at most."""
    bad = sorted({char for char in text if not (char.isalnum() or char in SAVETAG_PUNCTUATION)})
    if bad:
        shown = text[:60] + ("..." if len(text) > 60 else "")
        raise argparse.ArgumentTypeError(f"{shown!r} holds {', '.join(map(repr, bad))}: a savetag ends a folder name, "
                                         "so it may hold letters, digits and _ . , = + - @ only")
    if len(text.encode()) > SAVETAG_MAX_BYTES:
        raise argparse.ArgumentTypeError(f"a savetag ends a folder name: at most {SAVETAG_MAX_BYTES} bytes, "
                                         f"not {len(text.encode())}")
    return text


def hparam_keys(text: str) -> list[str]:
    """The value of ``--hparams``: comma-separated dotted config keys (``training.optimizer.lr,model.hidden_size``)."""
    keys = [key.strip() for key in text.split(",")]
    if not all(keys):
        raise argparse.ArgumentTypeError(f"expected comma-separated config keys such as training.optimizer.lr, "
                                         f"not {text!r}")
    return keys


#: the deepest level of nested modules ``--graph-depth`` draws (the model is level 0)
MAX_GRAPH_DEPTH = 32


def graph_depth(text: str) -> int:
    """The value of ``--graph-depth``: how many levels of nested modules the model's graph shows (0: the model)."""
    try:
        depth = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of levels, not {text!r}") from None
    if not 0 <= depth <= MAX_GRAPH_DEPTH:
        raise argparse.ArgumentTypeError(f"the depth must be between 0 and {MAX_GRAPH_DEPTH}, not {depth}")
    return depth


def add_graph_arguments(parser: argparse.ArgumentParser, where: str) -> None:
    """``--graph`` and ``--graph-depth``, of ``mip train`` and ``mip summary`` (``where`` the graph goes)."""
    parser.add_argument("--graph", action="store_true",
                        help=f"draw the model's graph (modules, tensors with their shapes) {where} as SVG and PNG "
                             "(and its Graphviz source)")
    parser.add_argument("--graph-depth", type=graph_depth, default=None, metavar="N",
                        help="levels of nested modules the graph shows (default: 2; implies --graph)")


def bare_visualize(argv: list[str]) -> list[str]:
    """A bare ``--visualize`` means one sample: argparse would otherwise take the next word (a config) as its value."""
    out = list(argv)
    for i, item in enumerate(out):
        following = out[i + 1] if i + 1 < len(out) else None
        if item == "--visualize" and (following is None or not (following == "window"
                                                                 or following.lstrip("-").isdigit())):
            out[i] = "--visualize=1"
    return out


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that ``mip train`` and ``mip test`` share: where the experiment goes and how it runs."""
    parser.add_argument("--expdir", default=EXPDIR, type=Path,
                        help="parent folder of experiment folders (default: ./experiments)")
    parser.add_argument("--savetag", default="", type=savetag_name,
                        help="suffix of the experiment folder name (letters, digits, _ . , = + - @; 100 bytes at most)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--gpu", action="store_true", help="same as --device cuda")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-interval", type=int, default=None,
                        help="episodes between console log lines (default: training.log_interval)")
    parser.add_argument("--tensorboard", type=int, choices=[0, 1, 2], default=None,
                        help="0: scalars, 1: + weight histograms, 2: + gradient histograms")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of torch (default: torch's choice, one per core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    parser.add_argument("--visualize", type=visualize_setting, default=None, metavar="N|window",
                        help="figures of the problem and of the model's internals (PNG, GIF over time) for N "
                             "samples (bare --visualize: 1): train writes them at every validation into "
                             "visualizations/episode_<n>/, test into test_<ts>/visualizations/; 'window' opens "
                             "an interactive window instead (needs a display)")
    parser.add_argument("--mlflow", metavar="URI", default=None,
                        help="log the experiment to MLflow at URI (http://HOST:PORT or sqlite:///FILE.db): the "
                             "same as tracking.mlflow.uri=URI, which the experiment's config then records")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def mlflow_override(uri: str | None) -> list[str]:
    """``--mlflow URI`` as the override it stands for (``tracking.mlflow.uri``), quoted so that YAML reads a string."""
    return [] if uri is None else [f"tracking.mlflow.uri={json.dumps(uri)}"]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``mip train``."""
    parser.add_argument("items", nargs="*", metavar="CONFIG|key=value")
    parser.add_argument(RESUME_FLAG, type=Path, metavar="EXPERIMENT_DIR",
                        help="continue a stopped or killed run exactly where its last checkpoint left it")
    parser.add_argument("--test", action="store_true", help="test the best model on the testing section afterwards")
    parser.add_argument("--hparams", type=hparam_keys, action="extend", default=None, metavar="KEY,KEY...",
                        help="config keys (dotted, comma-separated; repeatable) that TensorBoard's HParams tab shows "
                             "with the validation statistics (with --tensorboard; without it, the keys are only "
                             "checked)")
    add_graph_arguments(parser, "into the experiment folder (model_graph.svg, .png)")
    add_run_arguments(parser)


@functools.cache
def train_valued_flags() -> frozenset[str]:
    """The ``mip train`` flags followed by a value (``--expdir DIR``), read from its parser: a copy would drift."""
    parser = argparse.ArgumentParser(add_help=False)
    add_train_arguments(parser)
    return frozenset(flag for action in parser._actions if action.nargs != 0 for flag in action.option_strings)


def resume_command(folder: str | Path, train_args: Sequence[str] = ()) -> list[str]:
    """The ``mip`` arguments that continue the experiment in ``folder`` from its last checkpoint.

    ``train_args`` is the ``mip train`` command line (without ``train``) whose flags the resumed run
    keeps; its configs, overrides and placement flags go (the experiment folder has them).
    """
    valued = train_valued_flags()
    dropped = PLACEMENT_FLAGS | {RESUME_FLAG}
    kept: list[str] = []
    rest = iter(train_args)
    for arg in rest:
        if arg in valued:
            value = next(rest, None)
            if arg not in dropped and value is not None:
                kept += [arg, value]
        elif arg.startswith("-"):
            if "=" in arg and arg.split("=", 1)[0] in dropped:
                continue
            kept.append(arg)
        # positional arguments (configs, key=value overrides) are dropped: the folder holds the config
    return ["train", RESUME_FLAG, str(folder), *kept]


def resumed_folder(args: Sequence[str]) -> str | None:
    """The experiment folder a ``mip train`` command line resumes, or None when it starts a new experiment."""
    for i, arg in enumerate(args):
        if arg == RESUME_FLAG and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(RESUME_FLAG + "="):
            return arg.split("=", 1)[1]
    return None


def shell_line(args: Sequence[str]) -> str:
    """``mip`` arguments as the command a user types: for messages that say how to continue."""
    return " ".join(["mip", *(str(arg) for arg in args)])
