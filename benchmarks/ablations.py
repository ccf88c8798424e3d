"""Every ``dlparts ablate`` experiment at its default size (``--quick``: the quick size), one after the other; prints
each experiment's table and, at the end, one line per experiment (the paper's claim, each setting's metric over
seeds, the effect with its standard error, the verdict, the seconds) as a Markdown table for the notes and README.

    .venv/bin/python benchmarks/ablations.py                       # all ten, default size (~5 min each, 2 cores)
    .venv/bin/python benchmarks/ablations.py --quick               # all ten, under a minute each
    .venv/bin/python benchmarks/ablations.py --only lrn dropout --seeds 5 --out runs/ablate-bench
    .venv/bin/python benchmarks/ablations.py --only lrn --set trainer.threads=1   # e.g. on a shared machine

``--set`` adds config overrides to every run of every experiment (after the size's, before the setting's).

The Markdown table is also written to ``OUT/summary-<size>.md`` and the numbers of all to ``OUT/summary-<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import dataclasses
import sys
import time
from pathlib import Path

from dlparts import report
from dlparts.ablate import EXPERIMENTS, Stat, run_experiment
from dlparts.cli_ablate import print_table


def summary_row(r: dict) -> str:
    settings = "; ".join(f"{s['label']} {Stat(**s['stat']).text()}" for s in r["settings"])
    se = "n/a" if r["effect"]["se"] is None else f"{r['effect']['se']:.2f}"
    return (f"| {r['experiment']} | {r['claim']['source']}: {r['claim']['paper_effect']} | {r['metric']} | {settings} "
            f"| {r['effect']['diff']:+.2f} +- {se} | {r['verdict']} | {r['seconds']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS))
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--out", default="runs/ablate-bench")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run")
    args = parser.parse_args()
    size = "quick" if args.quick else "default"
    out = report.console()
    results, started = [], time.time()
    for name in args.only:
        experiment = EXPERIMENTS[name]
        if args.set:
            overrides, count = experiment.sizes[size]
            experiment = dataclasses.replace(experiment, sizes={**experiment.sizes,
                                                                 size: ((*overrides, *args.set), count)})
        r = run_experiment(experiment, seeds=args.seeds, size=size, out=args.out,
                           say=lambda line: print(f"[{time.time() - started:.0f} s] {line}", file=sys.stderr,
                                                  flush=True))
        print_table(out, r)
        results.append(r)
    lines = ["| experiment | paper | metric | settings (mean +- std over seeds) | effect +- se | verdict | s |",
             "| --- | --- | --- | --- | --- | --- | --- |", *map(summary_row, results)]
    print("\n".join(lines))
    folder = Path(args.out)
    (folder / f"summary-{size}.md").write_text("\n".join(lines) + "\n")
    (folder / f"summary-{size}.json").write_text(json.dumps(results, indent=2))
    print(f"all: {time.time() - started:.0f} s; {folder}/summary-{size}.md", file=sys.stderr)


if __name__ == "__main__":
    main()
