"""dlparts.summarize vs torchinfo.summary on torchvision's resnet50 (and AlexNet), in one run.

Prints the time of each (median of several runs, after one warm-up), the ratio, and whether the parameter and MAC
totals agree. torchinfo runs a real forward pass on the CPU; dlparts runs on the meta device.

    .venv/bin/python benchmarks/summary.py
"""

import statistics
import time

import torch
import torchinfo
import torchvision

from dlparts.summary import summarize


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    fn()
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    torch.set_num_threads(2)
    print(f"{'model':<10} {'dlparts s':>10} {'torchinfo s':>12} {'ratio':>7}  params (dlparts / torchinfo)"
          f"          MACs (dlparts / torchinfo)")
    for name, shape in (("resnet50", (3, 224, 224)), ("alexnet", (3, 224, 224))):
        model = getattr(torchvision.models, name)()
        ours_t, ours = timed(lambda: summarize(model, shape))
        theirs_t, theirs = timed(lambda: torchinfo.summary(model, (1, *shape), verbose=0))
        agree = "agree" if ours.total_params == theirs.total_params else "DIFFER"
        print(f"{name:<10} {ours_t:>10.4f} {theirs_t:>12.4f} {theirs_t / ours_t:>6.1f}x  "
              f"{ours.total_params:,} / {theirs.total_params:,} ({agree})   {ours.macs:,} / {theirs.total_mult_adds:,}")


if __name__ == "__main__":
    main()
