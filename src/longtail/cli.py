"""The ``longtail`` command: ``analyze``, ``train`` and ``compare``."""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from longtail._checks import check_int
from longtail._text import console_text
from longtail.data import IMAGE_SIZE
from longtail.errors import LongtailError, OutputError

if TYPE_CHECKING:
    from longtail.data.bundle import DataBundle

console = Console(soft_wrap=True)  # a line longer than the terminal is not broken in a log
err_console = Console(stderr=True, soft_wrap=True)


def _indexing(path: Path):
    """A rich progress bar over the top-level folders being scanned; returns (progress, callback)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn(f"Indexing {console_text(str(path))}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("folders, {task.fields[files]:,} images"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("index", total=None, files=0)

    def update(done: int, total: int, files: int) -> None:
        bar.update(task, completed=done, total=total, files=files)

    return bar, update


def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


@contextmanager
def _output_folder(path: Path) -> Iterator[Path]:
    """Check ``--out`` before any data is loaded (a folder, or creatable, and writable), hold its
    lock for the command, and remove it again if this command created it and fails before
    writing anything into it."""
    from longtail._io import OUTPUT_MARKER, open_output
    from longtail._lock import LOCK_NAME, folder_lock

    if path.exists() and not path.is_dir():
        raise LongtailError(f"--out {path} is a file, not a folder; pass a folder path")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        os.close(open_output(path / OUTPUT_MARKER))  # an index of a folder above skips it
    except OutputError:
        raise
    except OSError as err:
        raise LongtailError(
            f"cannot write into --out {path}: {err.strerror or err}; pass a folder you can write to"
        ) from None
    try:
        with folder_lock(path):
            yield path
    except BaseException:
        if created and {p.name for p in path.iterdir()} <= {LOCK_NAME, OUTPUT_MARKER}:
            shutil.rmtree(path, ignore_errors=True)
        raise


_DATA_OPTIONS = ("level", "image_size", "split_seed", "rescan", "allow_outside")


def _check_data_options(args: argparse.Namespace) -> None:
    """Folder-data options are refused with the embedded data, which they would not change."""
    if args.data is None:
        given = [
            f"--{o.replace('_', '-')}"
            for o in _DATA_OPTIONS
            if getattr(args, o) not in (None, False)
        ]
        if given:
            raise LongtailError(
                f"{', '.join(given)} only apply to folder data (--data DIR); the embedded "
                "Fashion-MNIST-LT has fixed 28 x 28 images and splits"
            )
    else:
        from longtail.training.config import MAX_SEED

        if args.image_size is not None:
            check_int(args.image_size, "--image-size", 1, MAX_IMAGE_SIZE)
        if args.split_seed is not None:
            check_int(args.split_seed, "--split-seed", 0, MAX_SEED)
        if args.level is not None:
            check_int(args.level, "--level", 1, MAX_LEVEL)


def _analyze(args: argparse.Namespace) -> int:
    from longtail.distribution import ClassDistribution
    from longtail.report.analysis import write_analysis

    with _output_folder(args.out or Path("runs") / f"analyze-{_timestamp()}") as out:
        if args.path is None:
            from longtail.data.fashion_mnist_lt import load_fashion_mnist_lt

            split = load_fashion_mnist_lt("train")
            dist = ClassDistribution.from_labels(
                split.labels, class_names=split.class_names, hierarchy=split.hierarchy
            )
            source = "the embedded Fashion-MNIST-LT (train split)"
        else:
            from longtail.data.bundle import split_folders
            from longtail.data.index import build_index

            path = Path(args.path)
            source = str(path)
            if "train" in split_folders(path, args.allow_outside):
                path = path / "train"
                source = f"{path} (the training split; val/ and test/ are not counted)"
                console.print(
                    f"Analysing the training split {console_text(str(path))} (val/ and test/ are not counted)"
                )
            bar, update = _indexing(path)
            with bar:
                index = build_index(
                    path, rescan=args.rescan, progress=update, allow_outside=args.allow_outside
                )
            dist = index.distribution()
        if args.shots:
            dist = dist.with_grouping(rule="shots", many=args.many, few=args.few)
        write_analysis(dist, out, source, console)
    return 0


def _bundle(args: argparse.Namespace, out: Path):
    from longtail.data.bundle import embedded_bundle, folder_bundle

    if args.data is None:
        return embedded_bundle()
    bar, update = _indexing(args.data)
    with bar:
        return folder_bundle(
            args.data,
            image_size=args.image_size or IMAGE_SIZE,
            level=args.level,
            seed=args.split_seed or 0,
            rescan=args.rescan,
            bad_image_log=out / "bad_images.log",
            progress=update,
            allow_outside=args.allow_outside,
        )


def _config(args: argparse.Namespace, strategy: str, seed: int):
    from longtail.training.config import from_arguments

    return from_arguments(args, args.config_class, strategy=strategy, seed=seed)


def _report_bad_images(data: DataBundle, out: Path) -> None:
    bad = data.unreadable_images()
    if bad:
        err_console.print(
            f"[yellow]{len(bad)} unreadable image(s) were replaced by others of the same class; "
            f"see {console_text(str(out / 'bad_images.log'))}[/yellow]"
        )


def _train(args: argparse.Namespace) -> int:
    import torch

    from longtail.report.tables import print_run
    from longtail.strategies import parse_strategy
    from longtail.training.loop import train
    from longtail.training.runtime import training_threads

    _check_data_options(args)
    parse_strategy(args.strategy)
    config = _config(args, args.strategy, args.seed)
    with _output_folder(args.out) as out:
        data = _bundle(args, out)
        torch.set_num_threads(training_threads())  # as compare's trainings: the same numbers
        result = train(config, data, out, resume=args.resume, first_stage=args.first_stage)
    if result.test is not None:
        caption = "test %; mistake severity in tree levels; all of it in metrics.json"
        print_run(console, result.test, f"{args.strategy} on {data.name} (test)", caption)
    _report_bad_images(data, out)
    console.print(
        f"Run written to [bold]{console_text(str(out))}[/bold] (log.csv, checkpoint.pt, metrics.json)"
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from longtail.experiments.compare import list_runs, run_compare
    from longtail.experiments.plan import DEFAULT_STRATEGIES, parse_row
    from longtail.strategies import split_outside_brackets

    _check_data_options(args)
    strategies = (
        split_outside_brackets(args.strategies, ",")
        if args.strategies is not None
        else list(DEFAULT_STRATEGIES)
    )
    if not strategies:
        raise LongtailError(
            f"--strategies {args.strategies!r} names no strategy; pass e.g. instance+ce,class_balanced+focal"
        )
    for spec in strategies:
        parse_row(spec)
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise LongtailError(f"--seeds must be at least 1 (at most {MAX_SEEDS}), got {args.seeds}")
    base = _config(args, strategies[0], 0)
    jobs = _jobs(args.jobs)
    seeds = list(range(args.seeds))
    with _output_folder(args.out) as out:
        data = _bundle(args, out)
        if args.list_runs:
            options = {o: getattr(args, o) for o in ("data", *_DATA_OPTIONS)}
            options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
            for line in list_runs(data, strategies, seeds, base, out, options):
                print(line)
            return 0
        run_compare(
            data, strategies, seeds, base, out, console, jobs, args.launcher, args.ray_address
        )
    _report_bad_images(data, out)
    return 0


def _jobs(text: str) -> int:
    """``--jobs``: a number of local jobs, or ``auto`` (one per GPU, else a split of the cores)."""
    if text == "auto":
        from longtail.experiments.execute import auto_jobs

        return auto_jobs()
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise LongtailError(f"--jobs takes a number of jobs from 1 to 256 or 'auto', got {text!r}")
    return int(text)


MAX_SEEDS = 1000
MAX_IMAGE_SIZE = 4096
"""The largest --image-size: a batch of 4096 px images is already gigabytes."""
MAX_LEVEL = 1000
ALLOW_OUTSIDE_HELP = (
    "read files that links (or a manifest's rows) place outside the data folder; refused otherwise"
)


def _add_training_options(p: argparse.ArgumentParser, config_class: type) -> None:
    from longtail.training.config import add_options

    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        type=Path,
        help="folder of class sub-folders (optionally train/ and test/) or CSV manifest; default: embedded Fashion-MNIST-LT",
    )
    g.add_argument(
        "--level",
        type=int,
        help="hierarchy level used as the label (1 = top folders); default: leaf classes",
    )
    g.add_argument(
        "--image-size",
        type=int,
        help=f"side of the square input images for folder data (default {IMAGE_SIZE})",
    )
    g.add_argument(
        "--split-seed", type=int, help="seed of the stratified train/val/test split (default 0)"
    )
    g.add_argument("--rescan", action="store_true", help="ignore the cached index")
    g.add_argument("--allow-outside", action="store_true", help=ALLOW_OUTSIDE_HELP)
    add_options(p.add_argument_group("training"), config_class)
    p.add_argument("--out", type=Path, help="output folder (default runs/COMMAND-<timestamp>)")
    p.add_argument(
        "--config",
        type=Path,
        help="TOML or JSON file of these options (long names; a run's config.json makes that run "
        "again); options given here win over the file",
    )


def _add_compare_parser(sub: Any, config_class: type) -> argparse.ArgumentParser:
    """The ``compare`` command and its options."""
    p = sub.add_parser(
        "compare", help="train several strategies under identical conditions and compare them"
    )
    p.add_argument(
        "--strategies",
        help="comma-separated strategies (default: a set covering the standard methods); a "
        "strategy may carry training settings of its own after @, e.g. "
        "weighted+ce@mix=remix[alpha=0.2]@lr=0.002 (not the model, epochs or target prior)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per strategy (default 3)")
    p.add_argument(
        "--jobs",
        default="auto",
        help="trainings run at once in local processes, each pinned to a device: a number (1: in "
        "this process), or auto (the default: one per visible GPU; on a CPU up to 4 sharing the "
        "cores); the numbers do not depend on it",
    )
    p.add_argument(
        "--launcher",
        choices=("local", "ray"),
        default="local",
        help="where trainings run: local (this process, or --jobs processes) or ray (one Ray "
        "task each, a GPU or one training's CPUs; needs longtail[ray])",
    )
    p.add_argument(
        "--ray-address",
        help="the Ray cluster to use with --launcher ray (default: start a local one)",
    )
    p.add_argument(
        "--list-runs",
        action="store_true",
        help="print one 'longtail train --config FILE --out DIR' command per training, in "
        "dependency order, for another scheduler (Slurm, Kubernetes); train nothing. The same "
        "compare run afterwards collects the finished runs",
    )
    _add_training_options(p, config_class)
    p.set_defaults(func=_compare, config_class=config_class)
    return p


def build_parser(config_class: type | None = None) -> argparse.ArgumentParser:
    """The ``longtail`` command line; the training options are those of ``config_class``
    (:class:`~longtail.training.config.TrainConfig` or a subclass that adds settings)."""
    if config_class is None:
        from longtail.training.config import TrainConfig

        config_class = TrainConfig
    parser = argparse.ArgumentParser(
        prog="longtail", description="Long-tailed image classification toolkit."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "analyze", help="statistics, groups and plots of a data set's class distribution"
    )
    p.add_argument(
        "path",
        nargs="?",
        help="folder of class sub-folders, or CSV manifest (path,label); default: embedded data",
    )
    p.add_argument("--out", type=Path, help="output folder (default runs/analyze-<timestamp>)")
    p.add_argument(
        "--shots", action="store_true", help="group by shot thresholds instead of count thirds"
    )
    p.add_argument(
        "--many", type=int, default=100, help="head = more than this many images (with --shots)"
    )
    p.add_argument(
        "--few", type=int, default=20, help="tail = fewer than this many images (with --shots)"
    )
    p.add_argument(
        "--rescan", action="store_true", help="ignore the cached index and scan the folder again"
    )
    p.add_argument("--allow-outside", action="store_true", help=ALLOW_OUTSIDE_HELP)
    p.set_defaults(func=_analyze)

    p = train_parser = sub.add_parser("train", help="train one strategy (sampler+loss)")
    p.add_argument(
        "--strategy",
        default="instance+ce",
        help="SAMPLER+LOSS, optionally :STAGE (a second stage on the classifier: crt, lws, "
        "tau_norm, logit_adjust, weight_balancing), e.g. class_balanced+focal, "
        "weighted[scheme=sqrt_inverse]+ce or instance+ce:crt[epochs=2]",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    p.add_argument(
        "--first-stage",
        type=Path,
        help="the folder of the finished first stage (SAMPLER+LOSS alone) that a two-stage "
        "strategy starts from; only its second stage is trained",
    )
    _add_training_options(p, config_class)
    p.set_defaults(func=_train, config_class=config_class)

    p = _add_compare_parser(sub, config_class)
    parser.commands = {"train": train_parser, "compare": p}  # type: ignore[attr-defined]
    return parser


def _long_name(action: argparse.Action) -> str:
    """The name an option file gives ``action``: its long flag with underscores."""
    return max(action.option_strings, key=len).lstrip("-").replace("-", "_")


def _apply_config_file(parser: argparse.ArgumentParser, command: str, path: Path) -> None:
    """Make the options in the file at ``path`` the defaults of ``command``, checked as the
    command line would check them."""
    from longtail.config_file import read_options

    sub = parser.commands[command]  # type: ignore[attr-defined]
    actions = {_long_name(a): a for a in sub._actions if a.option_strings and a.dest != "help"}
    actions.pop("config", None)
    defaults: dict[str, Any] = {}
    for key, value in read_options(path, _config_class(parser, command)).items():
        action = actions.get(key)
        if action is None:
            names = ", ".join(sorted(d.replace("_", "-") for d in actions))
            raise LongtailError(
                f"--config {path}: {command} has no option {key!r}; options: {names}"
            )
        if value is not None:
            defaults[action.dest] = _option_value(action, key, value, path)
    sub.set_defaults(**defaults)


def _config_class(parser: argparse.ArgumentParser, command: str) -> type:
    """The config class whose settings ``command``'s training options are."""
    return parser.commands[command].get_default("config_class")  # type: ignore[attr-defined]


def _option_value(action: argparse.Action, key: str, value: Any, path: Path) -> Any:
    """``value`` from an option file, checked and converted as the command line would."""
    flag = action.option_strings[0]
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise LongtailError(f"--config {path}: {key} must be true or false, got {value!r}")
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    if key == "strategies" and isinstance(value, list):
        value = ",".join(str(v) for v in value)
    elif action.type in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LongtailError(f"--config {path}: {flag} takes a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise LongtailError(f"--config {path}: {flag} takes a finite number, got {value!r}")
        if action.type is int and isinstance(value, float) and not value.is_integer():
            raise LongtailError(f"--config {path}: {flag} takes an integer, got {value!r}")
        value = action.type(value)
    elif not isinstance(value, str):
        raise LongtailError(f"--config {path}: {flag} takes text, got {value!r}")
    elif action.type is Path:
        value = Path(value)
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise LongtailError(f"--config {path}: {flag} must be one of {choices}, got {value!r}")
    return value


def one_line(err: BaseException) -> str:
    """An error's own message on one line: a DataLoader worker's traceback is cut to its last line."""
    text = str(err).strip() or type(err).__name__
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]+: ", "", last.strip())
    return " ".join(text.split())


def _interrupted(args: argparse.Namespace) -> str:
    out = console_text(str(args.out)) if getattr(args, "out", None) else "the output folder"
    if args.command == "train":
        return (
            f"interrupted. Each finished epoch is saved in {out}/checkpoint.pt: run the same "
            "command with --resume to continue"
        )
    if args.command == "compare":
        return (
            f"interrupted. Finished runs are kept in {out}/runs and reused: run the same command "
            "again to continue (the interrupted run resumes from its last finished epoch)"
        )
    return "interrupted"


def main(argv: Sequence[str] | None = None, config_class: type | None = None) -> int:
    parser = build_parser(config_class)
    args = parser.parse_args(argv)  # --help and argument errors end here, before torch loads
    from longtail.experiments.compare import RunsFailed
    from longtail.training.loop import TrainingDiverged

    try:
        if getattr(args, "config", None) is not None:
            _apply_config_file(parser, args.command, args.config)
            args = parser.parse_args(argv)  # the command line over the file
        if getattr(args, "out", None) is None and args.command in ("train", "compare"):
            args.out = Path("runs") / f"{args.command}-{_timestamp()}"
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        err_console.print(f"[bold red]{_interrupted(args)}[/bold red]")
        return 130
    except (TrainingDiverged, RunsFailed) as err:
        _print_error(err)
        return 1
    except Exception as err:  # noqa: BLE001 - a user error in a line, anything else a bug report
        if not is_user_error(err):
            traceback.print_exc()
            err_console.print(
                f"[bold red]internal error:[/bold red] {console_text(one_line(err))}\n"
                "This is a bug in longtail (or a library under it), not a mistake of yours: please "
                "report it with the traceback above and the command you ran."
            )
            return 3
        _print_error(err)
        return 2


ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOENT", "EACCES", "EPERM", "ENOSPC", "EDQUOT", "EROFS", "EMFILE", "ENFILE")
    if hasattr(errno, name)
)
"""``OSError`` numbers that describe the machine (a missing or unwritable path, a full disk),
which the command line prints as one line like a :class:`~longtail.errors.LongtailError`."""


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is about the input or the machine (one line) rather than a bug."""
    return isinstance(err, LongtailError) or (
        isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS
    )


def _print_error(err: BaseException) -> None:
    if os.environ.get("LONGTAIL_DEBUG") == "1":
        traceback.print_exception(err)
    err_console.print(f"[bold red]error:[/bold red] {console_text(one_line(err))}")


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "build_parser",
    "main",
    "one_line",
]
