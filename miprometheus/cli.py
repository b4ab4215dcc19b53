"""The ``mip`` command. Thin: it parses arguments, calls the workers, and turns errors into exit codes.

Nothing heavy is imported at module level, so ``mip --help`` and ``mip list`` answer at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from miprometheus import __version__
from miprometheus.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BadInputError
from miprometheus.layout import EXPDIR, MODELS_DIR
from miprometheus.workers.commands import (
    add_graph_arguments,
    add_run_arguments,
    add_train_arguments,
    bare_visualize,
    graph_depth,
    mlflow_override,
    savetag_name,
)

#: the exit code of a command whose reader closed its output (``mip list problems | head -1``): the shell's
#: code for a process ended by SIGPIPE, as ``yes | head -1`` gives
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mip", description="MI-Prometheus: train, test and compare models on problems from YAML configs.",
        epilog=f"Exit codes: {EXIT_OK} success, {EXIT_FAILED} the run failed, {EXIT_BAD_INPUT} bad input "
               f"(config, arguments, data), {EXIT_INTERRUPTED} interrupted (resumable). CONFIG files and "
               "key=value overrides may stand before, between or after the flags.")
    parser.add_argument("--version", action="version", version=f"MI-Prometheus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model on a problem", description=(
        "Train a model as CONFIG files describe (later files win), changed by key=value overrides "
        "(applied last); both may stand before, between or after the flags."))
    add_train_arguments(p)

    p = sub.add_parser("test", help="test a trained model", description=(
        "Test EXPERIMENT_DIR (its saved config and best model) or CONFIG with --model CHECKPOINT; "
        "key=value overrides change the testing section (e.g. testing.problem.max_sequence_length=20)."))
    p.add_argument("target", metavar="EXPERIMENT_DIR|CONFIG")
    p.add_argument("items", nargs="*", metavar="CONFIG|key=value")
    p.add_argument("--model", type=Path, metavar="CHECKPOINT", help="weights to test")
    p.add_argument("--setting", action="append", metavar="NAME", dest="settings",
                   help="test only this named test setting of testing.settings (repeatable; default: all)")
    add_run_arguments(p)

    p = sub.add_parser("check", help="validate a config and the model/problem handshake; train nothing")
    p.add_argument("items", nargs="+", metavar="CONFIG|key=value")
    p.add_argument("--quiet", action="store_true", help="do not print the resolved config")
    p.add_argument("--debug", action="store_true", help="show tracebacks")

    p = sub.add_parser("summary", help="the model's modules, output shapes, parameters and multiply-accumulates",
                       description=(
        "One row per module of the model CONFIG trains (nested), measured on the first batch of its training split: "
        "output shapes, calls, parameters, trainable parameters and multiply-accumulates; then the totals and the "
        "model's size. Bad input is met as by mip check."))
    p.add_argument("items", nargs="+", metavar="CONFIG|key=value")
    p.add_argument("--depth", type=graph_depth, default=None, metavar="N",
                   help="rows down to N levels below the model (default: every module)")
    add_graph_arguments(p, "into the working folder (<Model>_graph.svg, .png)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")

    p = sub.add_parser("list", help="list problems or models with their parameters")
    p.add_argument("kind", choices=["problems", "models"])
    p.add_argument("name", nargs="?", help="show one component in detail")
    p.add_argument("--debug", action="store_true", help="show tracebacks")

    grid = sub.add_parser("grid", help="run, test and analyse grids of experiments", description=(
        "Grids: many experiments (models x problems x settings x seeds) in parallel, compared side by side."))
    grid_sub = grid.add_subparsers(dest="grid_command", metavar="GRID_COMMAND")
    grid.set_defaults(command_parser=grid)
    for name, text in (("train", "train every experiment of a grid file (or the rest of a grid folder)"),
                       ("run", "train, test and analyse a grid in one go")):
        p = grid_sub.add_parser(name, help=text, description=text + "; key=value overrides change the grid file")
        p.add_argument("items", nargs="*", metavar="GRID.yaml|GRID_DIR|key=value")
        p.add_argument("--resume", type=Path, metavar="GRID_DIR", help="run only what is not finished")
        p.add_argument("--mlflow", metavar="URI", default=None,
                       help="log the grid to MLflow at URI: a parent run with each experiment's run nested (the same "
                            "as tracking.mlflow.uri=URI, a grid_overwrite the grid folder records)")
        _grid_common(p)
    p = grid_sub.add_parser("test", help="test every trained experiment's best model")
    p.add_argument("folder", type=Path, metavar="GRID_DIR")
    _grid_common(p)
    p = grid_sub.add_parser("analyze", help="grid_analysis.csv, grid_summary.csv, plots and report.html")
    p.add_argument("folder", type=Path, metavar="GRID_DIR")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p = grid_sub.add_parser("log-to-mlflow", help="upload a grid (or experiment folders) to MLflow after the fact",
                            description="Send a grid folder to MLflow as a parent run with its experiments' runs "
                                        "nested (or each experiment of a folder as a run): parameters, statistics, "
                                        "tags, files. Only what the runs lack is sent, so it may run again (for "
                                        "clusters whose workers cannot reach the tracker, or a tracker that was down).")
    p.add_argument("folder", type=Path, metavar="GRID_DIR|EXPERIMENT_DIR")
    p.add_argument("--mlflow", metavar="URI", default=None,
                   help="where to (default: each experiment config's tracking.mlflow.uri)")
    p.add_argument("--experiment", metavar="NAME", default=None,
                   help="the MLflow experiment (default: the config's, else miprometheus)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p = grid_sub.add_parser("status", help="the grid's experiments, progress and time left, while it runs or after",
                            description="One table of a grid's experiments (queued, running with its episode and "
                                        "latest validation, done, pruned, failed with its last error line), the "
                                        "grid's progress and the time left; reads the grid folder, writes nothing.")
    p.add_argument("folder", type=Path, metavar="GRID_DIR")
    p.add_argument("--watch", nargs="?", const=WATCH_SECONDS, type=_watch_seconds, metavar="SECONDS",
                   help=f"refresh every SECONDS (default {WATCH_SECONDS:g}) until the grid ends or Ctrl-C")
    p.add_argument("--json", action="store_true", help="one line of JSON per reading, for scripts")
    p.add_argument("--debug", action="store_true", help="show tracebacks")

    p = sub.add_parser("book", help="render the results book from the committed results; re-run or check it",
                       description=(
        "Render docs/results/*.md from the templates in docs/book/ and the result files in docs/results/data/ "
        "(seconds, byte for byte). --rerun CHAPTER measures a chapter again (hours); --import GRID_DIR --entry ID "
        "takes a grid folder's results; --check re-runs the drift check's slice and exits 1 naming every figure "
        "that moved beyond its tolerance (and when a page is not what its results render)."))
    p.add_argument("--book", type=Path, metavar="FILE", help="the book file (default: docs/book/book.yaml)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="run the drift check's slice and compare")
    action.add_argument("--rerun", metavar="CHAPTER|ENTRY",
                        help="run the chapter's grids (or one entry's) again and replace their results")
    action.add_argument("--import", dest="import_dir", type=Path, metavar="GRID_DIR",
                        help="take a finished grid folder's results as those of --entry")
    p.add_argument("--entry", metavar="ID", help="the entry --import fills")
    p.add_argument("--update", action="store_true", help="with --check: store the new figures instead of comparing")
    p.add_argument("--only", action="append", metavar="RUN", help="with --check: only this run (repeatable)")
    p.add_argument("--runs-dir", type=Path, default=Path(EXPDIR) / "book", metavar="DIR",
                   help="with --rerun: parent folder of the grid folders (default: experiments/book)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")

    p = sub.add_parser("split", help="write reproducible index files for samplers")
    p.add_argument("items", nargs="+", metavar="CONFIG|key=value")
    p.add_argument("--section", default="training", choices=["training", "validation", "testing"])
    p.add_argument("--fractions", type=float, nargs="+", required=True, help="e.g. 0.9 0.1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=Path("."), help="folder for the index files")
    p.add_argument("--force", action="store_true", help="replace index files that --output already holds")
    p.add_argument("--debug", action="store_true", help="show tracebacks")

    p = sub.add_parser("migrate", help="convert the original MI-Prometheus's configs and grid files", description=(
        "Convert configs and grid files of the original MI-Prometheus (a folder: its YAML files) into this project's "
        "format, one self-contained file per input under --out, read as the original read them (default_configs "
        "relative to --root, the first listed file winning), with the original trainer's defaults written where a "
        "file relied on them; prints a report per file (renamed, converted, dropped, no equivalent), runs mip check "
        "on each output and counts converted / need data / cannot convert."))
    p.add_argument("items", nargs="+", metavar="PATH")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder of the converted files")
    p.add_argument("--trainer", choices=["online", "offline"],
                   help="whose defaults apply (default: a grid's grid_settings.trainer; else online for a generated "
                        "problem, offline for a dataset)")
    p.add_argument("--root", type=Path, default=None, metavar="DIR",
                   help="the directory the original ran in (its default_configs are relative to it; default: here)")
    p.add_argument("--force", action="store_true", help="replace converted files that --out already holds")
    p.add_argument("--debug", action="store_true", help="show tracebacks")

    p = sub.add_parser("extract-features", help="pre-extract image features (ResNet-101) of a dataset's splits",
                       description="Write one feature file per split of the dataset CONFIG names (e.g. "
                                   "configs/vqa/extract_features_clevr.yaml), changed by key=value overrides; "
                                   "running it again resumes an unfinished split and skips finished ones.")
    p.add_argument("items", nargs="+", metavar="CONFIG|key=value")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of torch (default: torch's choice)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    for command in (*sub.choices.values(), *grid_sub.choices.values()):
        if command is not grid:
            command.set_defaults(command_parser=command)
    return parser


#: flags that take several values; a key=value after their values is an override, not one more value
_LIST_FLAGS = ("--fractions",)


def _end_lists_at_overrides(argv: list[str]) -> list[str]:
    """Move a key=value that follows the values of a list flag to just before that flag.

    argparse gives a flag with ``nargs="+"`` every word up to the next flag, so in
    ``mip split CONFIG --fractions 0.9 0.1 key=value`` it would read ``key=value`` as a fraction.
    """
    out: list[str] = []
    flag_at: int | None = None  # where the list flag whose values are being read stands in ``out``
    for word in argv:
        if word.startswith("-") and not word[1:2].isdigit() and word[1:2] != ".":  # a flag, not a number
            flag_at = len(out) if len(word) > 2 and any(f.startswith(word) for f in _LIST_FLAGS) else None
        elif flag_at is not None and "=" in word:
            out.insert(flag_at, word)  # keeps the order of the overrides among themselves
            flag_at += 1
            continue
        out.append(word)
    return out


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse a ``mip`` command line: CONFIG files and key=value overrides may stand anywhere after the command.

    argparse gives a subcommand's positional arguments only the words before its first flag; it
    leaves the later ones over, in order, and those are appended to ``items``. A flag it leaves
    over is a mistyped one: an error (exit code 2), as is a word left over by a command that
    takes no CONFIG or override.
    """
    args, rest = parser.parse_known_args(_end_lists_at_overrides(argv))
    command_parser = getattr(args, "command_parser", parser)
    flags = [word for word in rest if word.startswith("-")]
    if flags or (rest and not hasattr(args, "items")):
        command_parser.error(f"unrecognized arguments: {' '.join(flags or rest)}")
    if rest:
        args.items = [*(args.items or []), *rest]
    return args


#: ``mip grid status --watch``'s default refresh and bounds, in seconds (watch.WATCH_SECONDS, kept here so that
#: building the parser imports no grid module)
WATCH_SECONDS, WATCH_BOUNDS = 2.0, (0.1, 3600.0)


def _watch_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not WATCH_BOUNDS[0] <= seconds <= WATCH_BOUNDS[1]:  # NaN fails both
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a refresh time: give SECONDS from {WATCH_BOUNDS[0]:g} to {WATCH_BOUNDS[1]:g}, and "
            "GRID_DIR before --watch (mip grid status GRID_DIR --watch [SECONDS])")
    return seconds


def _grid_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--expdir", default=EXPDIR, type=Path, help="parent folder of the grid folder")
    parser.add_argument("--savetag", default="", type=savetag_name,
                        help="suffix of the grid folder name (letters, digits, _ . , = + - @; 100 bytes at most)")
    parser.add_argument("--no-progress", action="store_true", help="no live table, even on a terminal")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def is_override(item: str) -> bool:
    """Whether a command-line item is a ``key=value`` override rather than a CONFIG file (or GRID_DIR).

    An item that names an existing file or folder is that file (``lr=0.1.yaml``); otherwise an item
    with ``=`` is an override, unless the text before its first ``=`` holds a ``/`` (a path:
    ``configs/lr=0.1.yaml``, reported as a missing file rather than as a malformed override).
    """
    key, sep, _ = item.partition("=")
    if not sep or "/" in key:
        return False
    try:
        return not Path(item).expanduser().exists()
    except (OSError, ValueError):  # too long to name a file, or a NUL in it: not a file
        return True


def _split_items(items: list[str]) -> tuple[list[str], list[str]]:
    configs = [i for i in items if not is_override(i)]
    overrides = [i for i in items if is_override(i)]
    return configs, overrides


def _check_writable_folder(folder: Path, flag: str) -> None:
    """Refuse a folder a command would write in when it cannot: a file, a path below a file, one not writable.

    Checked before anything is read or created, so such input costs no time and leaves nothing behind.
    The nearest existing folder on the way decides: the command creates the rest of the path.
    """
    place = f"{flag} {folder}" if flag else str(folder)
    probe = folder
    try:
        while not probe.exists():
            if probe.is_symlink():
                raise BadInputError(f"{place}: {probe} is a link to nothing; name a folder")
            probe = probe.parent  # ends: '.' and '/' exist
        if not probe.is_dir():
            where = "is a file" if probe == folder else f"lies below the file {probe}"
            raise BadInputError(f"{place} {where}; name a folder (it is created if missing)")
    except OSError as exc:  # a folder on the way that this user may not enter
        raise BadInputError(f"{place}: cannot look at {exc.filename or probe}: {exc.strerror or exc}") from None
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "is not writable" if probe == folder else f"would be created in {probe}, which is not writable"
        raise BadInputError(f"{place} {where} by this user; name another folder")


def _output_places(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """The folders the command writes in, each with the flag that named it (empty for a positional argument)."""
    command = args.command if args.command != "grid" else f"grid {args.grid_command}"
    if command == "train":
        return [(args.expdir, "--expdir")] if args.resume is None else [(args.resume, "--resume")]
    if command == "test":  # where runs.test puts the test folder
        target = Path(args.target)
        if target.is_dir():
            return [(target, "")]
        if args.model is not None and args.model.parent.name == MODELS_DIR:
            return [(args.model.parent.parent, "")]  # the checkpoint's experiment folder
        return [(args.expdir, "--expdir")]
    if command in ("grid train", "grid run"):
        folders = [Path(item) for item in args.items if not is_override(item) and Path(item).is_dir()]
        resumed = args.resume or (folders[0] if folders else None)  # as cmd_grid reads them
        return [(args.expdir, "--expdir")] if resumed is None else [(resumed, "--resume" if args.resume else "")]
    if command in ("grid test", "grid log-to-mlflow"):
        return [(args.folder, "")]
    if command == "split":
        return [(args.output, "--output")]
    if command == "migrate":
        return [(args.out, "--out")]
    if command == "summary" and (args.graph or args.graph_depth is not None):
        return [(Path.cwd(), "--graph")]  # the graph goes into the working folder
    return []


def _check_output_places(args: argparse.Namespace) -> None:
    """Refuse, before any work, output folders the command cannot write in, and index files it would replace."""
    for folder, flag in _output_places(args):
        _check_writable_folder(folder, flag)
    if args.command == "split" and not args.force:
        present = [args.output / f"{args.section}_split_{i}.txt" for i in range(len(args.fractions))]
        present = [str(path) for path in present if path.exists() or path.is_symlink()]
        if present:
            raise BadInputError(f"--output {args.output} already holds {', '.join(present)}: a sampler may read "
                                "them; name another folder, or add --force to replace them")


def _unwritable_output(args: argparse.Namespace, exc: BaseException) -> str | None:
    """The message for an OSError met while creating or writing an output folder (a folder made read-only, or a
    file put in the way, after the check), or None when the error is about something else."""
    if not isinstance(exc, (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError)):
        return None
    if exc.filename is None:
        return None
    failed = Path(os.path.abspath(exc.filename))
    for folder, flag in _output_places(args):
        if failed.is_relative_to(os.path.abspath(folder)):
            return f"cannot write in {flag + ' ' if flag else ''}{folder}: {exc.strerror or exc}: {exc.filename}"
    return None


def _options(args: argparse.Namespace) -> Any:
    from miprometheus.workers.run_folder import RunOptions

    return RunOptions(expdir=args.expdir, savetag=args.savetag, device="cuda" if args.gpu else args.device,
                      tensorboard=args.tensorboard, log_level=args.log_level, log_interval=args.log_interval,
                      progress=False if args.no_progress else None, threads=args.threads,
                      visualize=args.visualize,
                      hparams=list(dict.fromkeys(getattr(args, "hparams", None) or [])),  # mip train's only
                      graph=getattr(args, "graph", False) or getattr(args, "graph_depth", None) is not None,
                      graph_depth=getattr(args, "graph_depth", None),
                      command_line=list(sys.argv))


def _print_stats(title: str, stats: dict[str, float] | None) -> None:
    if not stats:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in stats.items():
        if key.endswith(("_min", "_max", "_std")):
            continue
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    Console().print(table)


def _print_tests(stats: dict[str, float]) -> None:
    """The test statistics: one table, or one per named test setting (keys ``<setting>/<statistic>``)."""
    settings: dict[str, dict[str, float]] = {}
    for key, value in stats.items():
        setting, _, name = key.rpartition("/")
        settings.setdefault(setting, {})[name] = value
    for setting, values in settings.items():
        _print_stats(f"test {setting}" if setting else "test", values)


def cmd_train(args: argparse.Namespace) -> int:
    from miprometheus.workers import runs

    configs, overrides = _split_items(args.items)
    if args.resume is None and not configs:
        raise _usage("mip train needs at least one CONFIG file (or --resume EXPERIMENT_DIR)")
    if args.resume is not None and configs:
        raise _usage("with --resume, the config is the experiment's own; give only key=value overrides")
    overrides += mlflow_override(args.mlflow)
    result = runs.train(configs, overrides, _options(args), resume=args.resume, test_after=args.test)
    print(f"experiment folder: {result.folder}")
    print(f"termination: {result.cause} after {result.episodes} episodes")
    if result.validation:
        _print_stats(f"best validation (episode {int(result.validation['episode'])}, the model tested)",
                     result.validation)
    if result.test is not None:
        print(f"test folder: {result.test_folder}")
        _print_tests(result.test)
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    from miprometheus.workers import runs

    configs, overrides = _split_items(args.items)
    overrides += mlflow_override(args.mlflow)
    folder, agg = runs.test(Path(args.target), overrides, _options(args), checkpoint=args.model,
                            extra_configs=configs, settings=args.settings)
    print(f"test folder: {folder}")
    _print_tests(agg)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from miprometheus.config.yaml_loader import dump_yaml
    from miprometheus.workers import runs

    configs, overrides = _split_items(args.items)
    spec, report, model_params = runs.check(configs, overrides)
    if not args.quiet:
        print(dump_yaml(spec.effective_tree(model_params)))
    for line in report:
        print(f"OK  {line}")
    return EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    from miprometheus.workers.summary import summarize

    configs, overrides = _split_items(args.items)
    graph = args.graph or args.graph_depth is not None
    report = summarize(configs, overrides, graph_folder=Path.cwd() if graph else None, graph_depth=args.graph_depth)
    print(report.summary.text(args.depth))
    if report.graph is not None:
        print(report.graph.message)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from miprometheus import catalogue

    if args.name:
        info = catalogue.describe(args.kind, args.name)
        print(f"{info.name}  ({info.module}.{info.class_name})")
        if info.doc:
            print("\n  " + info.doc.replace("\n", "\n  ") + "\n")
        if not info.params:
            print("  no parameters")
        width = max((len(p.name) for p in info.params), default=0)
        for p in info.params:
            print(f"  {p.name:<{width}}  {p.type:<18} = {p.default:<12} {p.doc}")
        return EXIT_OK
    for name in sorted(catalogue.available(args.kind)):
        info = catalogue.describe(args.kind, name)
        first = info.doc.splitlines()[0] if info.doc else ""
        params = ", ".join(p.name for p in info.params if p.name != "batch_size")
        print(f"{name:<18} {first}")
        if params:
            print(f"{'':<18}   parameters: {params}")
    return EXIT_OK


def cmd_split(args: argparse.Namespace) -> int:
    import torch

    from miprometheus.config import load_config
    from miprometheus.config.experiment_spec import validate
    from miprometheus.errors import ConfigError
    from miprometheus.files import atomic_write_text
    from miprometheus.workers.components import build_problem
    from miprometheus.workers.loaders import parse_indices

    if any(f <= 0 for f in args.fractions) or abs(sum(args.fractions) - 1.0) > 1e-6:
        raise ConfigError("--fractions must be positive and sum to 1")
    configs, overrides = _split_items(args.items)
    spec = validate(load_config(configs, overrides), required=(args.section,))
    if args.section not in spec.splits:
        raise ConfigError(f"the config has no '{args.section}' section")
    split = spec.splits[args.section]
    problem = build_problem(split)
    indices = (parse_indices(split.section.sampler.indices, len(problem)) if split.section.sampler
               else list(range(len(problem))))
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(args.seed)).tolist()
    shuffled = [indices[i] for i in order]
    args.output.mkdir(parents=True, exist_ok=True)
    start = 0
    for i, fraction in enumerate(args.fractions):
        end = len(shuffled) if i == len(args.fractions) - 1 else start + round(fraction * len(shuffled))
        path = args.output / f"{args.section}_split_{i}.txt"
        atomic_write_text(path, ",".join(str(x) for x in sorted(shuffled[start:end])) + "\n")
        print(f"{path}: {end - start} indices  (use: sampler: {{name: SubsetRandomSampler, indices: {path}}})")
        start = end
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from miprometheus.migrate.command import migrate

    return migrate(args.items, args.out, args.trainer, args.root, args.force)


def cmd_extract_features(args: argparse.Namespace) -> int:
    from miprometheus.workers.feature_extraction import extract_features

    configs, overrides = _split_items(args.items)
    if not configs:
        raise _usage("mip extract-features needs a CONFIG file")
    extract_features(configs, overrides, threads=args.threads, report=print)
    return EXIT_OK


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def _grid_logger() -> Any:
    import logging

    logger = logging.getLogger("miprometheus.grid")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
        logger.addHandler(console)
    return logger


def _grid_summary(manifest: Any, phase: str) -> int:
    from miprometheus.workers.grid.search import search_lines

    prefix = "" if phase == "train" else "test_"
    # a search's trials are chosen on validation and never tested: the test summary leaves them out
    records = [r for r in manifest.records if phase == "train" or r.phase != "search"]
    failed = [r for r in records if getattr(r, prefix + "status") == "failed"]
    counts: dict[str, int] = {}
    for record in records:
        counts[getattr(record, prefix + "status")] = counts.get(getattr(record, prefix + "status"), 0) + 1
    print(f"grid folder: {manifest.folder}")
    print(f"grid {phase}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines, gave_up = search_lines(manifest) if phase == "train" else ([], False)
    for line in lines:
        print(line)
    for record in failed:
        log = getattr(record, prefix + "log")
        print(f"  FAILED {record.id} (exit code {getattr(record, prefix + 'exit_code')}): "
              f"{getattr(record, prefix + 'last_error')}\n         log: {manifest.folder / log if log else '-'}")
    return EXIT_FAILED if failed or gave_up else EXIT_OK


def cmd_grid(args: argparse.Namespace) -> int:
    if args.grid_command is None:
        raise _usage("mip grid needs a command: train, test, analyze, run, status or log-to-mlflow")
    if args.grid_command == "status":  # before the runner's import (torch): a status answers at once
        from miprometheus.workers.grid.watch import show

        show(args.folder, args.watch, args.json)
        return EXIT_OK
    from miprometheus.workers.grid import runner

    if args.grid_command == "analyze":
        from miprometheus.workers.grid.analysis import analyze

        analyze(args.folder)
        return EXIT_OK
    if args.grid_command == "log-to-mlflow":
        from miprometheus.workers.grid.mlflow_grid import log_to_mlflow

        uploaded = log_to_mlflow(args.folder, args.mlflow, args.experiment)
        print(f"{uploaded.runs} run(s) level with their folders; {uploaded.values} metric values sent")
        return EXIT_OK
    logger = _grid_logger()
    progress = False if args.no_progress else None
    if args.grid_command == "test":
        return _grid_summary(runner.test_grid(args.folder, progress=progress, logger=logger), "test")
    files, overrides = _split_items(args.items)
    resume = args.resume
    if resume is None and len(files) == 1 and Path(files[0]).is_dir():
        resume = Path(files[0])
    elif resume is None and len(files) != 1:
        raise _usage(f"mip grid {args.grid_command} needs one GRID.yaml (or GRID_DIR / --resume GRID_DIR)")
    if len(files) > 1:
        raise _usage(f"mip grid {args.grid_command} takes one GRID.yaml or GRID_DIR, not {len(files)}")
    if args.mlflow is not None and resume is not None:
        raise _usage("a resumed grid keeps its own configuration: --mlflow goes with a grid file (a grid already "
                     "run is sent with mip grid log-to-mlflow GRID_DIR --mlflow URI)")
    overrides += mlflow_override(args.mlflow)
    # a grid file beside --resume GRID_DIR reaches train_grid, which refuses it (the grid's own configuration runs)
    # `mip grid run` analyses at its end: until then report.html keeps reloading (the live report)
    manifest = runner.train_grid(Path(files[0]) if files else None, overrides, args.expdir, args.savetag,
                                 resume=resume, progress=progress, logger=logger,
                                 final_report=args.grid_command != "run")
    code = _grid_summary(manifest, "train")
    if args.grid_command == "run":
        settings = runner.load_settings(manifest.folder)
        if settings.test:
            code = max(code, _grid_summary(runner.test_grid(manifest.folder, progress=progress, logger=logger,
                                                            final_report=False), "test"))
        from miprometheus.workers.grid.analysis import analyze
        from miprometheus.workers.grid.mlflow_grid import log_analysis

        analyze(manifest.folder)
        log_analysis(manifest.folder, logger)  # into the grid's MLflow run, when it has one
    return code


def cmd_book(args: argparse.Namespace) -> int:
    import time

    from miprometheus.book import import_results, load_book, render, rerun

    start = time.monotonic()
    book = load_book(args.book)
    if (args.update or args.only) and not args.check:
        raise _usage("--update and --only go with --check")
    if args.entry and args.import_dir is None:
        raise _usage("--entry goes with --import GRID_DIR")
    if args.check:
        return _book_check(book, args.only, args.update, start)
    if args.import_dir is not None:
        if not args.entry:
            raise _usage("--import GRID_DIR needs --entry ID (the book's entry it fills)")
        print(f"imported {args.import_dir} as {args.entry}: {import_results(book, args.entry, args.import_dir)}")
        written = render.write(book)
    elif args.rerun:
        written = rerun(book, args.rerun, args.runs_dir)
    else:
        written = render.write(book)
    pages = len(book.chapters) + 1
    relative = [str(p.relative_to(book.root)) if p.is_relative_to(book.root) else str(p) for p in written]
    print(f"the book: {pages} pages in {book.output}, {len(written)} changed"
          f"{': ' + ', '.join(relative) if written else ''} ({time.monotonic() - start:.1f} s)")
    return EXIT_OK


def _book_check(book: Any, only: list[str] | None, update: bool, start: float) -> int:
    import time

    from miprometheus.book import check, render

    outcomes = check.run_slice(book, only)
    for outcome in outcomes:
        if outcome.skipped:
            print(f"skipped {outcome.run.name}: {outcome.skipped}")
    errors = [o for o in outcomes if o.error]
    if update:
        path = check.store(book, outcomes)
        render.write(book)
        print(f"stored the new figures in {path}: commit them with the reason they moved "
              f"({time.monotonic() - start:.0f} s)")
        return EXIT_FAILED if errors else EXIT_OK
    drifts = check.compare(book, outcomes)
    stale = render.stale(book)
    for outcome in errors:
        print(f"FAILED {outcome.run.name}: {outcome.error}")
    for drift in drifts:
        print(f"DRIFT {drift.message()}")
    for path in stale:
        print(f"STALE {path}: not what the committed results render (run `mip book` and commit the pages)")
    measured = sum(len(o.figures) for o in outcomes if not o.skipped and not o.error)
    if errors or drifts or stale:
        print(f"mip book --check: {len(drifts)} figure(s) moved, {len(errors)} run(s) failed, {len(stale)} stale "
              f"page(s) ({time.monotonic() - start:.0f} s). A change that moves a figure on purpose stores it "
              "(`mip book --check --update`) in the same commit, with the reason in its message.")
        return EXIT_FAILED
    print(f"mip book --check: {measured} figures within their tolerances, the book is current "
          f"({time.monotonic() - start:.0f} s)")
    return EXIT_OK


COMMANDS = {"train": cmd_train, "book": cmd_book, "test": cmd_test, "check": cmd_check, "summary": cmd_summary,
            "list": cmd_list,
            "split": cmd_split, "grid": cmd_grid, "extract-features": cmd_extract_features, "migrate": cmd_migrate}


def _stdout_closed() -> bool:
    """Whether the reader of standard output has gone (a pipe whose other end is closed)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is not a file
        return False


def main(argv: list[str] | None = None) -> int:
    """Run a ``mip`` command line; returns the exit code."""
    try:
        code = _run(argv)
        sys.stdout.flush()  # here, not at exit, so that a reader that went away is seen below
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        # The reader closed the pipe (``mip list problems | head -1``): it has what it wanted. Stop quietly, as
        # a tool ended by SIGPIPE does; stdout goes to devnull so that Python's flush at exit fails no more.
        # (Python docs, signal module, "Note on SIGPIPE".)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


#: the longest message ``mip`` prints for an error: a value quoted whole (a 500 KB string) never floods the terminal
MAX_MESSAGE = 4000


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:MAX_MESSAGE]}... (the message goes on for {len(message) - MAX_MESSAGE:,} more characters)"


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parse_args(parser, bare_visualize(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        _check_output_places(args)
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        raise
    except _UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"mip {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        from miprometheus.errors import MipError

        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        if isinstance(exc, MipError):
            print(f"mip {args.command}: error: {_bounded(str(exc))}", file=sys.stderr)
            return exc.exit_code
        if message := _unwritable_output(args, exc):
            print(f"mip {args.command}: error: {message}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if not getattr(args, "debug", False):
            print(f"mip {args.command}: internal error: {type(exc).__name__}: {_bounded(str(exc))}\n"
                  "(run again with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED


def _translate_legacy(argv: list[str]) -> tuple[list[str], list[str]]:
    """The original workers' command line: the files of ``--c a.yaml,b.yaml`` (comma-separated, spaces ignored, in
    their order), and the other arguments as ``mip`` takes them (``--m`` is ``--model``, ``--outdir`` ``--expdir``)."""
    configs: list[str] = []
    rest: list[str] = []
    it = iter(argv)
    for item in it:
        flag, equals, value = item.partition("=")
        if flag in ("--c", "--config"):
            configs += [name for name in (value if equals else next(it, "")).replace(" ", "").split(",") if name]
        elif item in ("--m",):
            rest += ["--model", next(it, "")]
        elif item in ("--e", "--expdir-grid"):
            rest.append(next(it, ""))
        elif item == "--outdir":
            rest += ["--expdir", next(it, "")]
        else:
            rest.append(item)
    return configs, rest


def _original(command: list[str], trainer: str | None = None, extra: tuple[str, ...] = ()) -> int:
    """An original entry point: its ``--c`` files read as the original read them, the first listed winning (an
    original config converted as ``mip migrate`` converts it), then ``mip COMMAND``."""
    from miprometheus.migrate.command import run_original

    configs, rest = _translate_legacy(sys.argv[1:])
    return run_original(command, configs, [*rest, *extra], trainer, main)


def offline_trainer() -> int:
    """``mip-offline-trainer``: the original epoch-based trainer, now ``mip train`` (its defaults when converting)."""
    return _original(["train"], "offline")


def online_trainer() -> int:
    """``mip-online-trainer``: the original episode-based trainer, now ``mip train`` (its defaults when converting)."""
    return _original(["train"], "online")


def tester() -> int:
    """``mip-tester``: now ``mip test``; without ``--c``, the experiment folder of the ``--m`` weights."""
    configs, rest = _translate_legacy(sys.argv[1:])
    if not configs and "--model" in rest[:-1]:  # the original read training_configuration.yaml beside the weights
        weights = Path(rest[rest.index("--model") + 1])
        if weights.parent.name == MODELS_DIR:
            rest.insert(0, str(weights.parent.parent))
    from miprometheus.migrate.command import run_original

    return run_original(["test"], configs, rest, None, main)


def _grid_alias(command: str, gpu: bool) -> int:
    extra = ("grid_settings.gpus_per_experiment=1",) if gpu and command == "train" else ()  # one GPU per experiment
    if command == "train":
        return _original(["grid", "train"], None, extra)
    configs, rest = _translate_legacy(sys.argv[1:])
    return main(["grid", command, *configs, *rest, *extra])


def grid_trainer_cpu() -> int:
    """``mip-grid-trainer-cpu``: now ``mip grid train``."""
    return _grid_alias("train", gpu=False)


def grid_trainer_gpu() -> int:
    """``mip-grid-trainer-gpu``: ``mip grid train`` with one GPU per experiment."""
    return _grid_alias("train", gpu=True)


def grid_tester_cpu() -> int:
    """``mip-grid-tester-cpu``: now ``mip grid test``."""
    return _grid_alias("test", gpu=False)


def grid_tester_gpu() -> int:
    """``mip-grid-tester-gpu``: ``mip grid test`` (the grid's own GPU settings apply)."""
    return _grid_alias("test", gpu=True)


def grid_analyzer() -> int:
    """``mip-grid-analyzer``: now ``mip grid analyze``."""
    configs, rest = _translate_legacy(sys.argv[1:])
    return main(["grid", "analyze", *configs, *rest])
