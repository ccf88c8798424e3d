"""Rows of the results table that ``dlparts fit``, ``test`` and ``demo`` print."""

from __future__ import annotations

#: The headline metrics of each task, in the order they are shown.
HEADLINE = {"image_cls": ("acc", "top5", "class_acc"), "point_cls": ("acc", "class_acc"),
            "point_partseg": ("instance_miou", "class_miou"), "point_semseg": ("miou", "oa")}
LABELS = {"acc": "top-1", "top5": "top-5", "class_acc": "mean class acc", "instance_miou": "instance mIoU",
          "class_miou": "class mIoU", "miou": "mIoU", "oa": "OA"}


def format_metrics(task: str, values: dict) -> str:
    """``"top-1 93.2%, top-5 99.0%"`` from a metrics dict (fractions in [0, 1])."""
    return ", ".join(f"{LABELS[k]} {100 * values[k]:.1f}%" for k in HEADLINE[task] if k in values)


def _epochs(r: dict) -> str:
    """``"8"``, or ``"3 of 8 (time cap 100 s)"`` when the time cap ended the fit early."""
    epochs = str(r.get("epochs", "-"))
    if r.get("time_cap") is not None:
        return f"{epochs} of {r['max_epochs']} (time cap {r['time_cap']:.0f} s)"
    return epochs


def result_rows(results: list[dict]) -> list[tuple[str, ...]]:
    """The cells of the results table (model, data, epochs, best val, test, time) of fit, test or demo results."""
    rows = []
    for r in results:
        task = r["task"]
        best = r.get("best_val") or {}
        epoch = f"{best['epoch'] + 1}" if "epoch" in best else "-"
        seconds = r.get("fit_seconds", r.get("test_seconds"))
        rows.append((r["model"], r.get("data", "-"), _epochs(r),
                     f"{format_metrics(task, best)} (epoch {epoch})" if best else "-",
                     format_metrics(task, r.get("test", {})), "-" if seconds is None else f"{seconds:.0f} s"))
    return rows


def checkpoint_line(r: dict) -> str:
    """The line under the results table naming the run folder and the checkpoint tested, as what it is."""
    ckpt = r.get("best_ckpt", r.get("ckpt"))
    kind = r.get("ckpt_kind", "best")
    what = {"best": "the best on validation", "last": "the last epoch's",
            "interrupted": "saved on Ctrl-C"}.get(kind, "given")
    return f"run folder {r['run_dir']} (tested checkpoint {ckpt}: {what})"
