"""Rendering for the command line: arithmetic, stacks, model summaries, the model list and training results as rich
tables (and stacks as JSON; summaries render their own JSON and CSV).

Kept apart from ``cli.py`` so the CLI stays a thin parser; no torch import here.
"""

from __future__ import annotations

import json
import math
import shutil
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

from dlparts.arith import Conv, LayerCost, Pool, Volume, dtype_bytes
from dlparts.stacks import StackReport


def console() -> Console:
    """A rich console; when the output is not a terminal, wide enough that tables are not folded."""
    return Console(width=shutil.get_terminal_size((160, 40)).columns, highlight=False)


def one_line(message: object) -> str:
    """An error message on one line, whatever its own layout (the CLI's errors are one line each)."""
    return " ".join(str(message).split())


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    exp = min(int(math.log(n, 1024)), 4)
    return f"{n / 1024 ** exp:.1f} {['B', 'KiB', 'MiB', 'GiB', 'TiB'][exp]}"


def _shape(v: Volume, channels_first: bool) -> str:
    """``55x55x32 (HxWxC)``; the layout letters follow the number of spatial dimensions and the batch."""
    if not v.spatial:
        return f"{v.batch}x{v.channels}" if v.batch else str(v.channels)
    letters = {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}[len(v.spatial)]
    layout = ["C", *letters] if channels_first else [*letters, "C"]
    text = v.chw() if channels_first else v.hwc()
    if v.batch:
        text, layout = f"{v.batch}x{text}", ["N", *layout]
    return f"{text} ({'x'.join(layout)})"


def _padding_text(pads: tuple[tuple[int, int], ...]) -> str:
    names = {1: ["length"], 2: ["height", "width"], 3: ["depth", "height", "width"]}[len(pads)]
    parts = [f"{n} {lo} before / {hi} after" for n, (lo, hi) in zip(names, pads)]
    symmetric = all(lo == hi for lo, hi in pads)
    torch_arg = f"PyTorch padding={tuple(lo for lo, _ in pads)}" if symmetric else "not symmetric"
    return f"{'; '.join(parts)} ({torch_arg})"


def single_layer_lines(layer, cost: LayerCost, volume: Volume, dtype: str, channels_first: bool) -> list[tuple[str, str]]:
    """Label/value lines describing one layer, in the order a student reads them."""
    size = dtype_bytes(dtype)
    lines = [("input volume", _shape(volume, channels_first)), ("output volume", _shape(cost.output, channels_first))]
    if isinstance(layer, Conv):
        k = layer.kernel if isinstance(layer.kernel, tuple) else (layer.kernel,) * len(volume.spatial)
        fan_in = (layer.filters // layer.groups if layer.transposed else volume.channels // layer.groups)
        weights = math.prod(k) * fan_in
        shape = "x".join(map(str, (*k, fan_in)))
        each = f"{shape} = {weights:,} weights" + (f" + 1 bias = {weights + 1:,} scalars" if layer.bias else "")
        lines += [
            ("filters", f"{layer.filters} (one per output activation map)"),
            ("each filter", each),
        ]
        if layer.groups > 1:
            lines.append(("groups", f"{layer.groups}: each filter sees {fan_in} of {volume.channels} input channels"))
        if layer.transposed:
            lines[-1] = ("each filter", each + f" (weight tensor {volume.channels}x{layer.filters // layer.groups}x"
                         f"{'x'.join(map(str, k))})")
    lines.append(("parameters", f"{cost.params:,} ({human_bytes(cost.params * size)} as {dtype})"))
    if cost.padding:
        lines.append(("padding applied", _padding_text(cost.padding)))
    lines += [
        ("MACs", f"{cost.macs:,} multiply-accumulates"),
        ("FLOPs", f"{cost.flops:,}" + (" (= 2 x MACs)" if cost.macs else " (no multiply-accumulates)")),
        ("output activations", f"{cost.output.numel:,} values, {human_bytes(cost.output.numel * size)} as {dtype}"),
    ]
    if cost.rf is not None and isinstance(layer, (Conv, Pool)):
        lines.append(("receptive field", f"{cost.rf} px, jump {cost.jump}"))
    lines += [("note", n) for n in cost.notes]
    return lines


def stack_table_rows(report: StackReport, channels_first: bool) -> list[list[str]]:
    size = dtype_bytes(report.dtype)
    rows = []
    for row in report.rows:
        c = row.cost
        out = c.output.chw() if channels_first else c.output.hwc()
        rf = "-" if c.rf is None else str(c.rf)
        jump = "-" if c.jump is None else str(c.jump)
        rows.append([str(row.index), row.spec, out, f"{c.params:,}", f"{c.macs:,}", f"{c.flops:,}", rf, jump,
                     human_bytes(c.output.numel * size)])
    return rows


STACK_COLUMNS = ["#", "layer", "output", "params", "MACs", "FLOPs", "RF", "jump", "activations"]


def stack_json(report: StackReport) -> str:
    data: dict[str, Any] = {
        "input": report.input.hwc(), "dtype": report.dtype,
        "units": {"macs": "multiply-accumulates", "flops": "floating-point operations (2 per MAC)"},
        "layers": [{
            "index": r.index, "spec": r.spec, "kind": r.cost.kind, "output_hwc": r.cost.output.hwc(),
            "params": r.cost.params, "macs": r.cost.macs, "flops": r.cost.flops,
            "padding": [list(p) for p in r.cost.padding], "receptive_field": r.cost.rf,
            "jump": None if r.cost.jump is None else float(r.cost.jump),
            "activation_bytes": r.cost.activation_bytes(report.dtype), "notes": list(r.cost.notes),
        } for r in report.rows],
        "totals": {"params": report.params, "macs": report.macs, "flops": report.flops,
                   "activation_bytes": report.activation_bytes, "output_hwc": report.output.hwc()},
    }
    return json.dumps(data, indent=2)


def print_single_layer(out: Console, layer, cost: LayerCost, volume: Volume, dtype: str, channels_first: bool) -> None:
    """The lines of :func:`single_layer_lines` as a two-column table."""
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for label, value in single_layer_lines(layer, cost, volume, dtype, channels_first):
        table.add_row(label, value)
    out.print(table)


def print_stack(out: Console, report: StackReport, channels_first: bool) -> None:
    """One row per layer (:data:`STACK_COLUMNS`), then the totals."""
    volume = report.input
    table = Table(title=f"input {volume.chw() if channels_first else volume.hwc()}")
    for col in STACK_COLUMNS:
        table.add_column(col, justify="left" if col == "layer" else "right")
    for row in stack_table_rows(report, channels_first):
        table.add_row(*row)
    out.print(table)
    out.print(f"total parameters {report.params:,} ({human_bytes(report.params * dtype_bytes(report.dtype))} as "
              f"{report.dtype}); MACs {report.macs:,}; FLOPs {report.flops:,}; "
              f"activations {human_bytes(report.activation_bytes)}", soft_wrap=True)


SUMMARY_COLUMNS = ["layer", "type", "output", "params", "MACs", "FLOPs", "RF", "activations"]


def print_summary(out: Console, result, shape: Sequence[int], batch: int, depth: int | None = None) -> None:
    """A :class:`dlparts.summary.Summary` as a table of its rows (those nested at most ``depth`` deep), the totals and
    the layer types it could not count."""
    table = Table(title=f"{result.model} on {batch}x{'x'.join(map(str, shape))} ({result.device} device)")
    for col in SUMMARY_COLUMNS:
        table.add_column(col, justify="left" if col in ("layer", "type") else "right")
    for r in result.rows:
        if depth is not None and r.depth > depth:
            continue
        table.add_row(r.name, r.type, "x".join(map(str, r.output_shape or [])) or "-", f"{r.params:,}",
                      f"{r.macs:,}", f"{r.flops:,}", "-" if r.rf is None else str(r.rf),
                      human_bytes(r.activation_bytes))
    out.print(table)
    t = result.totals()
    out.print(f"parameters {t['params']:,} (trainable {t['trainable_params']:,}, frozen {t['frozen_params']:,}; "
              f"{human_bytes(t['param_bytes'])}); MACs {t['macs']:,}; FLOPs {t['flops']:,}; "
              f"activations {human_bytes(t['activation_bytes'])}", soft_wrap=True)
    if result.uncounted:
        out.print(f"not counted (unknown layer types): {', '.join(result.uncounted)}")


def print_models(out: Console, infos: Iterable[tuple[str, Any]]) -> None:
    """``(name, ModelInfo)`` pairs as the table of ``dlparts models``."""
    table = Table(title="dlparts models")
    for col in ("name", "task", "parameters", "input", "paper"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for name, info in infos:
        table.add_row(name, info.task, f"{info.num_params:,}", "x".join(map(str, info.input_spec)), info.paper)
    out.print(table)


RESULT_COLUMNS = ["model", "data", "epochs", "best val", "test", "time"]


def print_results(out: Console, rows: Iterable[Sequence[str]], results: list[dict]) -> None:
    """The results table of ``dlparts fit``, ``test`` and ``demo`` (``rows`` as
    :func:`dlparts.train.report.result_rows` makes them), then each run's folder and plots."""
    table = Table(title="results")
    for col in RESULT_COLUMNS:
        table.add_column(col, justify="left" if col in ("model", "data", "best val", "test") else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table)
    for r in results:
        out.print(f"run folder {r['run_dir']} (best checkpoint {r.get('best_ckpt', r.get('ckpt'))})", soft_wrap=True)
        if r.get("plots"):
            out.print(f"plots: {', '.join(r['plots'])}", soft_wrap=True)
