"""Fuzzing the file readers at scale: thousands of mutated seed files (every format, every mutator of
``tests/fuzz/mutations.py``), each loaded with ``load_points`` in worker subprocesses under a memory limit.  Prints
the counts per mutator and per format (clean loads, DlpartsError refusals, bugs), the slowest case, and every bug
with the (seed, mutator, number) that replays it.  Exits 1 when a bug was found.

    .venv/bin/python benchmarks/fuzz.py                  # 40 cases per seed and mutator: ~4,200 cases
    .venv/bin/python benchmarks/fuzz.py --cases 200 --workers 4
    .venv/bin/python benchmarks/fuzz.py --src ../other-checkout/src   # the same cases against another version
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "tests" / "fuzz"
sys.path.insert(0, str(FUZZ))
from mutations import MUTATORS, case, seeds  # noqa: E402


def write_cases(folder: Path, per: int) -> dict[str, tuple[str, str, int]]:
    """Case file name -> (seed, mutator, number), written into ``folder``."""
    seed_files, index = seeds(), {}
    for seed_name in sorted(seed_files):
        for mutator in MUTATORS:
            for number in range(per):
                name, data = case(seed_name, mutator, number, seed_files)
                key = f"{len(index):06d}-{name}"
                (folder / key).write_bytes(data)
                index[key] = (seed_name, mutator, number)
    return index


def run_chunk(files: list[Path], chunk: Path, src: Path, limit_mb: int, timeout: int) -> list[dict]:
    chunk.mkdir()
    for f in files:
        f.rename(chunk / f.name)
    env = {**os.environ, "PYTHONPATH": str(src), "DLPARTS_MAX_POINTS": str(4 * 10 ** 6), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run([sys.executable, str(FUZZ / "_worker.py"), str(chunk), str(limit_mb)],
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        results = [json.loads(line) for line in out.splitlines()]
        seen = {r["name"] for r in results}
        hung = sorted(f.name for f in chunk.iterdir() if f.name not in seen)[:1]
        return results + [{"name": n, "outcome": "bug", "detail": "hang (worker timeout)", "seconds": timeout}
                          for n in hung]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    if done.returncode != 0:
        seen = {r["name"] for r in results}
        dead = sorted(f.name for f in chunk.iterdir() if f.name not in seen)[:1]
        results += [{"name": n, "outcome": "bug", "detail": f"worker died: {done.stderr.strip()[-300:]}",
                     "seconds": 0.0} for n in dead]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=40, help="cases per seed file and mutator")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=150, help="cases per worker process")
    parser.add_argument("--limit-mb", type=int, default=768, help="memory a worker may add to its imports")
    parser.add_argument("--timeout", type=int, default=600, help="seconds a worker may take for its chunk")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the dlparts source tree to fuzz")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pool = Path(tmp) / "cases"
        pool.mkdir()
        index = write_cases(pool, args.cases)
        files = sorted(pool.iterdir())
        chunks = [files[i:i + args.chunk] for i in range(0, len(files), args.chunk)]
        with ThreadPoolExecutor(args.workers) as ex:
            parts = ex.map(lambda ic: run_chunk(ic[1], Path(tmp) / f"chunk{ic[0]}", args.src.resolve(),
                                                args.limit_mb, args.timeout), enumerate(chunks))
            results = [r for part in parts for r in part]
    by_mutator, by_format = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter)
    for r in results:
        seed_name, mutator, _ = index[r["name"]]
        by_mutator[mutator][r["outcome"]] += 1
        by_format[seed_name][r["outcome"]] += 1
    total = collections.Counter(r["outcome"] for r in results)
    print(f"{len(results)} cases of {len(index)} ({args.cases} per seed file and mutator, {len(seeds())} seeds, "
          f"{len(MUTATORS)} mutators): {total['ok']} loaded, {total['refused']} refused, {total['bug']} bugs")
    for title, table in (("mutator", by_mutator), ("seed file", by_format)):
        print(f"\n{title:<16} {'loaded':>7} {'refused':>8} {'bugs':>5}")
        for key in sorted(table):
            c = table[key]
            print(f"{key:<16} {c['ok']:>7} {c['refused']:>8} {c['bug']:>5}")
    slowest = max(results, key=lambda r: r["seconds"])
    print(f"\nslowest case: {slowest['seconds']:.3f} s ({index[slowest['name']]})")
    bugs = [r for r in results if r["outcome"] == "bug"]
    for r in bugs[:40]:
        print(f"BUG {index[r['name']]}: {r['detail']}")
    return 1 if bugs or len(results) != len(index) else 0


if __name__ == "__main__":
    sys.exit(main())
