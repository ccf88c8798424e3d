"""Loads every file of a folder under a memory limit (images with ``load_rgb`` + ``preprocess``, anything else with
``load_points``) and prints one JSON line per file:

    python _worker.py CASE_DIR LIMIT_MB

``{"name": ..., "outcome": "ok" | "refused" | "bug", "detail": ..., "seconds": ...}``: ``ok`` is a finite cloud of the
asked size inside the unit sphere (or a ``uint8 [3, 32, 32]`` image), ``refused`` a DlpartsError, ``bug`` anything
else (a raw exception, a MemoryError because the limit was hit, a wrong cloud).  The limit (``RLIMIT_DATA``: heap and anonymous mappings) is set after
the imports, at their footprint plus ``LIMIT_MB``, so a reader that allocates what a header promises dies here, not
on the machine.
"""

import json
import resource
import sys
import time
from pathlib import Path

import h5py  # noqa: F401  (imported before the limit: readers import it lazily, its footprint is not the case's)
import torch
import trimesh  # noqa: F401  (the same)

from dlparts.data import load_points
from dlparts.data.images import load_rgb, preprocess
from dlparts.errors import DlpartsError

POINTS, PIXELS = 16, 32
IMAGES = (".png", ".jpg", ".gif", ".tif", ".bmp")


def _data_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    return 0


def outcome(path: Path) -> tuple[str, str]:
    try:
        if path.suffix in IMAGES:
            image = preprocess(load_rgb(path), PIXELS)
            ok = image.shape == (3, PIXELS, PIXELS) and image.dtype == torch.uint8
            return ("ok", "") if ok else ("bug", f"a wrong image: {list(image.shape)} {image.dtype}")
        cloud = load_points(path, POINTS, seed=0)
    except DlpartsError as exc:
        return "refused", str(exc)[:300]
    except BaseException as exc:  # the worker exists to report anything else
        return "bug", f"{type(exc).__name__}: {str(exc)[:300]}"
    if cloud.shape != (POINTS, 3) or not bool(torch.isfinite(cloud).all()) or float(cloud.norm(dim=1).max()) > 1.0001:
        return "bug", f"a wrong cloud: shape {list(cloud.shape)}, finite {bool(torch.isfinite(cloud).all())}"
    return "ok", ""


def main() -> None:
    folder, limit_mb = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    limit = _data_bytes() + limit_mb * 2 ** 20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    for path in sorted(folder.iterdir()):
        started = time.perf_counter()
        result, detail = outcome(path)
        print(json.dumps({"name": path.name, "outcome": result, "detail": detail,
                          "seconds": round(time.perf_counter() - started, 4)}), flush=True)


if __name__ == "__main__":
    main()
