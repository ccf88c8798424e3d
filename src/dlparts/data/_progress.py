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


def report_skipped(what: str, skipped: list[tuple[str, str]]) -> None:
    """Log each bad file once (path and reason), then the count."""
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if skipped:
        log.warning("%s: skipped %d bad file(s)", what, len(skipped))
