"""The ``dlparts`` command: thin argument parsing over the library, printing with rich.

Each sub-command is a pair of functions, ``_add_<name>(subparsers)`` that declares its arguments (with examples in its
help) and ``_run_<name>(args)`` that does the work; ``COMMANDS`` lists them.  A user's mistake raises a
:class:`dlparts.errors.DlpartsError`, which ``main`` prints as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from dlparts.errors import DlpartsError


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors say ``dlparts <cmd>: error: ...`` in one line and exit 2 (argparse's own code)."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message}\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _console():
    from rich.console import Console

    return Console()


# --------------------------------------------------------------------------------------------------------------- models
def _add_models(sub) -> None:
    p = sub.add_parser(
        "models",
        help="list the registered models with their parameter counts",
        formatter_class=_formatter,
        description="List registered models.\n\nexamples:\n  dlparts models\n  dlparts models 'pointnet2_*'",
    )
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'alexnet*'")


def _run_models(args) -> int:
    from rich.table import Table

    from dlparts.models import get_model_info, list_models

    table = Table(title="dlparts models")
    for col in ("name", "task", "parameters", "input", "paper"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for name in list_models(args.pattern):
        info = get_model_info(name)
        table.add_row(name, info.task, f"{info.num_params:,}", "x".join(map(str, info.input_spec)), info.paper)
    _console().print(table)
    return 0


COMMANDS: list[tuple[Callable, Callable]] = [
    (_add_models, _run_models),
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dlparts",
        formatter_class=_formatter,
        description="dlparts: convolution arithmetic, AlexNet, PointNet and PointNet++, faithful and fast.",
    )
    from dlparts import __version__

    parser.add_argument("--version", action="version", version=f"dlparts {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    runners = {}
    for add, run in COMMANDS:
        before = set(sub.choices)
        add(sub)
        for name in set(sub.choices) - before:
            runners[name] = run
    parser.set_defaults(_runners=runners)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._runners[args.command](args) or 0)
    except DlpartsError as exc:
        print(f"dlparts {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dlparts {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
