"""What the user sees while a dataset is prepared: a progress bar on a terminal, and bad files reported once."""

from __future__ import annotations

import logging
import sys
from typing import Iterator, Sequence

log = logging.getLogger("dlparts.data")


def progress(items: Sequence, description: str, *, enabled: bool = True) -> Iterator:
    """Iterate ``items`` with a transient rich progress bar when ``enabled`` and stderr is a terminal, plainly
    otherwise (logs and pipes get no bar)."""
    if not enabled or not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import Progress  # only for a bar: a plain pass (one file predicted) need not import it

    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=len(items))
        for item in items:
            yield item
            bar.advance(task)


#: ``(path, reason)`` already logged by this process: a dataset built again (its validation copy, the other split
#: of a folder read whole) repeats no warning.
_reported: set[tuple[str, str]] = set()


def report_skipped(what: str, skipped: list[tuple[str, str]]) -> None:
    """Log each bad file once per process (path and reason), then the count."""
    new = [entry for entry in skipped if entry not in _reported]
    _reported.update(new)
    for path, reason in new:
        log.warning("skipped %s: %s", path, reason)
    if new:
        log.warning("%s: skipped %d bad file(s)", what, len(skipped))


def skipped_summary(datasets, paths: bool = True) -> dict:
    """What the user's folders lost, for a run's results: ``skipped_files`` (count), ``skipped`` ("path: reason" of
    each unreadable file, once; the reason alone when it names its file, ``paths`` False) and
    ``dropped_nonfinite_points``, of ``datasets`` (each with ``skipped`` ``[(path, reason)]`` and ``dropped``)."""
    skipped = list(dict.fromkeys(f"{p}: {why}" if paths else why for d in datasets for p, why in d.skipped))
    return {"skipped_files": len(skipped), "skipped": skipped,
            "dropped_nonfinite_points": sum(d.dropped for d in datasets)}
