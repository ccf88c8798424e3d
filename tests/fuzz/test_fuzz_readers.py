"""Fuzzing the file readers: mutated seed files of every format, point clouds, meshes and images (truncated, bytes
flipped, counts inflated,
non-finite and huge numbers, wrong extension, other encodings, lying archive members) must each end in a clean load
or a DlpartsError.  Hypothesis drives the cheap mutators in this process; the ones that inflate sizes run in a
subprocess under a memory limit (``_worker.py``), so a reader that allocates what a header promises fails the test
instead of the machine.  ``benchmarks/fuzz.py`` runs thousands of the same cases.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from _worker import outcome  # noqa: E402
from mutations import MUTATORS, case, seeds  # noqa: E402

SEEDS = seeds()
WORKER = Path(__file__).with_name("_worker.py")
CHEAP = ("truncate", "flip_bytes", "nasty_numbers", "wrong_extension", "encodings")
RISKY = ("inflate_counts", "zip_members")


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_loads(tmp_path, name):
    """The seeds are valid, so a mutant's refusal is the mutation's doing."""
    path = tmp_path / name
    path.write_bytes(SEEDS[name])
    assert outcome(path) == ("ok", "")


@pytest.mark.filterwarnings("ignore::RuntimeWarning:trimesh.exchange.ply")  # trimesh casting a mutated "nan" index
@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # Pillow reading a mutated TIFF header
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed_name=st.sampled_from(sorted(SEEDS)), mutator=st.sampled_from(CHEAP), number=st.integers(0, 10 ** 6))
def test_mutants_load_cleanly_or_are_refused(tmp_path_factory, seed_name, mutator, number):
    name, data = case(seed_name, mutator, number, SEEDS)
    path = tmp_path_factory.mktemp("case") / name
    path.write_bytes(data)
    os.environ["DLPARTS_MAX_POINTS"] = str(10 ** 6)
    try:
        result, detail = outcome(path)
    finally:
        del os.environ["DLPARTS_MAX_POINTS"]
    assert result in ("ok", "refused"), detail
    assert result == "ok" or path.name in detail, detail  # a refusal names the file


def run_worker(folder: Path, limit_mb: int = 768, timeout: int = 300) -> list[dict]:
    """The worker's JSON lines for every file of ``folder`` (a hang is a failure: the timeout raises)."""
    env = {**os.environ, "DLPARTS_MAX_POINTS": str(4 * 10 ** 6), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(WORKER), str(folder), str(limit_mb)], capture_output=True, text=True,
                          env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_size_inflating_mutants_under_a_memory_limit(tmp_path):
    for seed_name in sorted(SEEDS):
        for mutator in RISKY:
            for number in range(6):
                name, data = case(seed_name, mutator, number, SEEDS)
                (tmp_path / f"{mutator}-{number}-{name}").write_bytes(data)
    results = run_worker(tmp_path)
    assert len(results) == len(list(tmp_path.iterdir()))
    assert [r for r in results if r["outcome"] == "bug"] == []
    assert {r["outcome"] for r in results} == {"ok", "refused"}


def test_the_worker_reports_a_bomb_as_a_bug(tmp_path):
    """The memory limit is real: an allocation far beyond it is reported, not survived."""
    (tmp_path / "bomb.xyz").write_text("1 2 3\n")
    script = ("import sys, runpy; sys.argv = sys.argv[1:]; import dlparts.data as d; "
              "d.load_points = lambda *a, **k: bytearray(2 ** 33); runpy.run_path(sys.argv[0], run_name='__main__')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script, str(WORKER), str(tmp_path), "256"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert result["outcome"] == "bug" and result["detail"].startswith("MemoryError")


def test_every_mutator_is_exercised():
    assert set(CHEAP) | set(RISKY) == set(MUTATORS)
