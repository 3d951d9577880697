"""The ``longtail`` command: ``analyze``, ``train`` and ``compare``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _analyze(args: argparse.Namespace) -> int:
    from longtail.distribution import ClassDistribution
    from longtail.report.analysis import write_analysis

    if args.path is None:
        from longtail.data.fashion_mnist_lt import load_fashion_mnist_lt

        split = load_fashion_mnist_lt("train")
        dist = ClassDistribution.from_labels(split.labels, class_names=split.class_names)
        source = "the embedded Fashion-MNIST-LT (train split)"
    else:
        from longtail.data.index import build_index

        with console.status(f"Indexing {args.path} ..."):
            index = build_index(args.path, rescan=args.rescan)
        dist = index.distribution()
        source = str(args.path)
    if args.shots:
        dist = dist.with_grouping(rule="shots", many=args.many, few=args.few)
    write_analysis(dist, args.out or Path("runs") / f"analyze-{_timestamp()}", source, console)
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    p.set_defaults(func=_analyze)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        err_console.print(f"[bold red]error:[/bold red] {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
