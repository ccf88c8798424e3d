"""Whole runs in subprocesses: kill -9 mid-epoch then --resume (from the last epoch or a step checkpoint) and Ctrl-C
then --resume equal an uninterrupted run; a 2-process DDP fit
(gloo on loopback, launched by torchrun) ends with equal weights on both processes and metrics over all samples."""

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("_worker.py")
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _run(args, **kw):
    return subprocess.run([sys.executable, str(WORKER), *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=240, **kw)


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = torch.load(a), torch.load(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run the resumed ones must equal."""
    folder = tmp_path_factory.mktemp("runs") / "whole"
    done = _run([folder])
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def _assert_same_run(whole: Path, resumed: Path) -> None:
    """Weights bit for bit, results, history and every epoch's rows of logs/metrics.csv once, as the whole run's."""
    assert _same_weights(whole / "final_rank0.pt", resumed / "final_rank0.pt")
    a, b = (json.loads((d / "results.json").read_text()) for d in (whole, resumed))
    assert a["test"] == b["test"] and a["best_val"] == b["best_val"]
    history = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)["dlparts_history"]
               for d in (whole, resumed)]
    assert history[0] == history[1] and len(history[0]) == 4
    logs = [(d / "logs" / "metrics.csv").read_text() for d in (whole, resumed)]
    assert logs[0] == logs[1]
    assert [row["epoch"] for row in csv.DictReader(io.StringIO(logs[1])) if row["val/acc"]] == ["0", "1", "2", "3"]


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 200
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.2)


def _kill_in_epoch(folder: Path, epoch: int, *overrides) -> None:
    """A run killed (SIGKILL) after the 3rd step of ``epoch``."""
    proc = subprocess.Popen([sys.executable, str(WORKER), str(folder), "--hang-at", str(epoch), *overrides], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(folder / "midepoch", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (folder / "results.json").exists()


def test_kill_mid_epoch_and_resume_from_the_last_epoch_equals_uninterrupted(whole, tmp_path):
    killed = tmp_path / "killed"
    _kill_in_epoch(killed, 2)  # last.ckpt holds the end of epoch 1
    ckpt = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 1 and len(ckpt["dlparts_history"]) == 2  # saved after validating epoch 1
    resumed = _run([killed, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_run(whole, killed)


def test_step_checkpoints_resume_mid_epoch_exactly(whole, tmp_path):
    killed = tmp_path / "killed"
    _kill_in_epoch(killed, 1, "trainer.checkpoint_every_n_steps=5")  # 9 steps an epoch: steps 5 and 10 saved
    ckpt = torch.load(killed / "checkpoints" / "step.ckpt", weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 10  # the first step of epoch 1 done, eight to go
    resumed = _run([killed, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "not resumable" not in resumed.stderr
    _assert_same_run(whole, killed)


def test_ctrl_c_saves_after_the_step_and_resumes_exactly(whole, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(WORKER), str(run), "--hang-at", "0"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(run / "midepoch", proc)
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C during the 3rd step of the first epoch
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 1
    saved = run / "checkpoints" / "interrupted.ckpt"
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert lines == [f"interrupted: saved {saved} (epoch 1, step 3); continue with: dlparts fit --resume {run}"]
    assert not (run / "checkpoints" / "last.ckpt").exists()  # before the first epoch ended: nothing else to resume
    resumed = _run([run, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_run(whole, run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_on_cpu(tmp_path):
    run = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(WORKER), str(run), "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_epochs=2"]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _same_weights(run / "final_rank0.pt", run / "final_rank1.pt")
    # each process evaluated 11 or 10 of the 21 test clouds; the metric states were summed before computing
    confmats = [torch.load(run / f"test_rank{r}.pt") for r in range(2)]
    assert torch.equal(confmats[0], confmats[1]) and int(confmats[0].sum()) == 21
    result = json.loads((run / "results.json").read_text())
    cm = confmats[0].double()
    assert result["test"]["acc"] == pytest.approx(float(cm.diag().sum() / cm.sum()))
