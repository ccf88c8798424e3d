"""Layer stacks: batch norm (``bn``) counted as :mod:`dlparts.summary` counts ``nn.BatchNorm*``."""

from torch import nn

from dlparts.arith import parse_volume
from dlparts.stacks import apply_stack, parse_stack
from dlparts.summary import summarize


def test_bn_by_hand():
    report = apply_stack(parse_stack("conv(16, k=3, bias=false), bn, relu"), parse_volume("8x8x3"))
    bn = report.rows[1].cost
    assert (bn.kind, bn.output.hwc(), bn.params, bn.macs, bn.flops) == ("bn", "6x6x16", 32, 0, 2 * 6 * 6 * 16)
    assert (bn.rf, bn.jump) == (3, 1)  # batch norm leaves the receptive field as it was


def test_bn_stack_matches_summary_of_the_torch_modules():
    report = apply_stack(parse_stack("conv(16, k=3, p=1, bias=false), batchnorm, relu, fc(10)"),
                         parse_volume("3x8x8", channels_first=True))
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16 * 8 * 8, 10))
    totals = summarize(model, (3, 8, 8)).totals()
    assert report.params == totals["params"] == sum(p.numel() for p in model.parameters())
    assert (report.macs, report.flops) == (totals["macs"], totals["flops"])
    rows = {r.type: r for r in summarize(model, (3, 8, 8)).rows}
    assert (rows["BatchNorm2d"].params, rows["BatchNorm2d"].flops) == (report.rows[1].cost.params,
                                                                        report.rows[1].cost.flops)
