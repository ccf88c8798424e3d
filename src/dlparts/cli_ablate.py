"""``dlparts ablate``: the papers' ideas measured (:mod:`dlparts.ablate`), in the ``_add_<name>`` / ``_run_<name>``
pair of :mod:`dlparts.cli` (``ABLATE_COMMANDS``).  The library is imported when the command runs, so that
``dlparts --help`` stays free of torch."""

from __future__ import annotations

import json
import sys
from typing import Callable

from dlparts import report
from dlparts.errors import ConfigError

_EXAMPLES = """\
examples:
  dlparts ablate --list
  dlparts ablate relu-vs-tanh
  dlparts ablate density --seeds 5 --out runs/ablate
  dlparts ablate lrn --quick
Each experiment trains its settings on the embedded data with everything else equal, over seeds, then prints the
paper's claim, each setting's metric (mean +- std over seeds), the measured effect and a verdict: agrees / disagrees
when the difference exceeds twice its standard error in the paper's / the other direction, else inconclusive.
The experiment's folder (OUT/NAME, or NAME-2, ... when taken) receives results.json, figure.png and the runs.
Default size: at most about 5 minutes on 2 idle CPU cores per experiment; --quick: under a minute."""


def _add_ablate(sub) -> None:
    p = sub.add_parser("ablate", help="measure one idea of the papers (ReLU, LRN, dropout, transforms, ...)",
                       description="Ablations.\n\n" + _EXAMPLES)
    p.add_argument("name", nargs="?", help="the experiment (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments with the claims they test")
    p.add_argument("--seeds", type=int, help="seeds per setting (default: 3; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smaller run (under a minute): machinery, not evidence")
    p.add_argument("--out", default="runs/ablate", help="parent folder of the experiment's folder (runs/ablate)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")


def _run_ablate(args) -> int:
    from dlparts.ablate import EXPERIMENTS, run_experiment

    out = report.console()
    if args.list:
        for name, e in EXPERIMENTS.items():
            out.print(f"{name:20} {e.claim.source}: {e.claim.text} ({e.claim.paper_effect})", soft_wrap=True)
        return 0
    if args.name is None:
        raise ConfigError("name the experiment, e.g. dlparts ablate relu-vs-tanh (dlparts ablate --list lists them)")
    if args.name not in EXPERIMENTS:
        raise ConfigError(f"experiment {args.name!r} is not one of {', '.join(EXPERIMENTS)}")
    results = run_experiment(EXPERIMENTS[args.name], seeds=args.seeds, size="quick" if args.quick else "default",
                             out=args.out, say=lambda line: print(f"dlparts: {line}", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print_table(out, results)
    return 0


def print_table(out, results: dict) -> None:
    """The table of one experiment's results, the lines under it and where its files are."""
    from rich.table import Table

    from dlparts.ablate import table

    header, rows, lines = table(results)
    t = Table(title=f"{results['experiment']}: {results['title']}")
    for i, col in enumerate(header):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    out.print(t)
    for line in lines:
        out.print(line, soft_wrap=True)
    out.print(f"results: {results['folder']}/results.json; figures: {', '.join(results['figures'])} "
              f"({results['seconds']:.0f} s)", soft_wrap=True)


ABLATE_COMMANDS: list[tuple[Callable, Callable]] = [(_add_ablate, _run_ablate)]
