"""The engine's small parts: voting, BN momentum schedule, sampler, hold-out, schedules, atomic checkpoints."""

import math

import pytest
import torch

from dlparts.data.transforms import axis_rotation
from dlparts.errors import ConfigError
from dlparts.train.callbacks import AtomicCheckpointIO, bn_momentum
from dlparts.train.config import load_config
from dlparts.train.data import EpochSampler, ResumableLoader, holdout
from dlparts.train.optim import build_optimizer
from dlparts.train.voting import vote_logits


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_votes_turn_about_the_axis(axis):
    # four quarter turns of every point average to its projection on the axis; the other channels stay
    points = torch.tensor([[[1.0, 2.0, 5.0, 7.0], [-3.0, 0.5, 2.0, 1.0]]], dtype=torch.float64)
    voted = vote_logits(lambda p: p, points, 4, axis=axis, scale=(1.0, 1.0))
    expected = torch.zeros_like(points)
    expected[..., axis], expected[..., 3] = points[..., axis], points[..., 3]
    torch.testing.assert_close(voted, expected)
    # the copies turn as the data layer's augmentation turns clouds (the same rotation matrix)
    seen = []
    vote_logits(lambda p: seen.append(p) or p, points, 4, axis=axis, scale=(1.0, 1.0))
    torch.testing.assert_close(seen[1][..., :3], points[..., :3] @ axis_rotation(math.pi / 2, axis))


def test_one_vote_is_the_plain_forward_and_votes_average():
    points = torch.randn(2, 16, 4)
    forward = lambda p: p[..., :3].sum(dim=1)  # noqa: E731  [B, 3]
    assert torch.equal(vote_logits(forward, points, 1), forward(points))
    # the norm of each point is kept by rotation: with scale (1, 1) every vote of a radial function agrees
    radial = lambda p: p[..., :3].norm(dim=-1)  # noqa: E731  [B, N]
    assert torch.allclose(vote_logits(radial, points, 5, scale=(1.0, 1.0)), radial(points), atol=1e-6)
    # extra channels are not rotated
    extra = lambda p: p[..., 3:]  # noqa: E731
    assert torch.allclose(vote_logits(extra, points, 3), points[..., 3:])


def test_bn_momentum_schedule_of_the_pointnet_code():
    # momentum = 1 - TF decay; TF decay = min(0.99, 1 - 0.5 * 0.5 ** (epoch // 20))
    for epoch in (0, 19, 20, 45, 100, 500):
        tf_decay = min(0.99, 1 - 0.5 * 0.5 ** (epoch // 20))
        assert bn_momentum(epoch) == pytest.approx(1 - tf_decay)
    assert bn_momentum(0) == 0.5 and bn_momentum(20) == 0.25 and bn_momentum(1000) == 0.01


def test_sampler_shuffles_by_epoch_and_splits_ranks():
    s = EpochSampler(10, shuffle=True, seed=1)
    first = list(s)
    assert sorted(first) == list(range(10)) and list(s) == first
    s.set_epoch(1)
    assert list(s) != first
    ranks = [EpochSampler(11, shuffle=True, seed=1, rank=r, world=2) for r in range(2)]
    parts = [list(r) for r in ranks]
    assert len(parts[0]) == len(parts[1]) == 5 and not set(parts[0]) & set(parts[1])
    evals = [list(EpochSampler(11, shuffle=False, rank=r, world=2)) for r in range(2)]
    assert sorted(evals[0] + evals[1]) == list(range(11))  # every sample once, no padding


class Noisy(torch.utils.data.Dataset):
    """Sample ``i`` with a draw of the global RNG, as augmentation makes."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        return torch.tensor([float(i), float(torch.rand(()))])


def _loader() -> ResumableLoader:
    return ResumableLoader(Noisy(), batch_size=3, sampler=EpochSampler(12, shuffle=True, seed=4), drop_last=True)


def test_a_loader_resumed_within_an_epoch_serves_the_rest_of_it_with_the_same_draws():
    whole = _loader()
    whole.sampler.set_epoch(2)
    batches = iter(whole)
    done = [next(batches), next(batches)]
    state = whole.state_dict()
    assert state["epoch"] == 2 and state["batches"] == 2
    rest = list(batches)  # two more batches
    resumed = _loader()
    resumed.load_state_dict(state)
    torch.manual_seed(123)  # whatever ran before: the saved random states replace it
    resumed.sampler.set_epoch(2)
    again = list(resumed)
    assert len(again) == 2 and all(torch.equal(a, b) for a, b in zip(again, rest))
    assert resumed.served == 4 and not any(torch.equal(a, b) for a in again for b in done)
    resumed.sampler.set_epoch(3)  # the next epoch is whole
    assert len(list(resumed)) == 4 and resumed.served == 4


def test_holdout_is_seeded_and_disjoint():
    train, val = holdout(20, 0.25, seed=3)
    assert len(val) == 5 and sorted(train + val) == list(range(20))
    assert holdout(20, 0.25, seed=3) == (train, val)
    with pytest.raises(ConfigError, match="val_fraction=1.5"):
        holdout(20, 1.5, seed=0)


def _lrs(cfg, epochs, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    out = build_optimizer(cfg, [p], "val/acc", steps)
    opt, sched = out["optimizer"], out["lr_scheduler"]
    lrs = []
    for _ in range(epochs * (steps if sched["interval"] == "step" else 1)):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched["scheduler"].step()
    return lrs


def test_step_decay_of_pointnet():
    cfg = load_config(None, ["model.name=pointnet_cls", "data.name=y", "optim.lr=0.001", "sched.name=step"])
    lrs = _lrs(cfg, 281, 1)
    assert lrs[19] == pytest.approx(1e-3) and lrs[20] == pytest.approx(7e-4) and lrs[40] == pytest.approx(4.9e-4)
    assert lrs[259] == pytest.approx(1e-3 * 0.7**12)  # 1.38e-5, still above the floor
    assert lrs[260] == pytest.approx(1e-5) and lrs[280] == pytest.approx(1e-5)  # 0.7**13 = 0.0097 < 0.01: clipped


def test_cosine_with_warmup():
    cfg = load_config(None, ["model.name=pointnet_cls", "data.name=y", "optim.lr=1.0", "sched.name=cosine",
                             "sched.warmup_epochs=1", "sched.min_lr=0.0", "trainer.max_epochs=3"])
    lrs = _lrs(cfg, 3, 4)  # 12 steps, 4 of warm-up
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[8] == pytest.approx(0.5)  # half way through the 8 cosine steps
    assert lrs[11] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_atomic_checkpoint_leaves_no_partial_file(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "ck" / "last.ckpt"
    io.save_checkpoint({"a": torch.arange(3)}, target)
    io.save_checkpoint({"a": torch.arange(4)}, target)
    assert torch.load(target)["a"].tolist() == [0, 1, 2, 3]
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_default_run_names_count_up_and_a_given_name_is_refused(tmp_path):
    from dlparts.train.engine import run_folder

    cfg = load_config(None, ["model.name=pointnet_cls", "data.name=synthetic_shapes", f"run.dir={tmp_path}"])
    first = run_folder(cfg)
    assert first == tmp_path / "pointnet_cls-synthetic_shapes"
    (first / "checkpoints").mkdir(parents=True)
    (first / "checkpoints" / "interrupted.ckpt").write_bytes(b"")  # a run stopped before its first epoch ended
    assert run_folder(cfg) == tmp_path / "pointnet_cls-synthetic_shapes-2"
    (tmp_path / "pointnet_cls-synthetic_shapes-2" / "checkpoints").mkdir(parents=True)
    (tmp_path / "pointnet_cls-synthetic_shapes-2" / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert run_folder(cfg) == tmp_path / "pointnet_cls-synthetic_shapes-3"
    assert run_folder(cfg, resume=first) == first
    named = load_config(None, ["model.name=pointnet_cls", "data.name=synthetic_shapes", f"run.dir={tmp_path}",
                               f"run.name={first.name}"])
    with pytest.raises(ConfigError, match="already holds a run; continue it with --resume"):
        run_folder(named)


def test_resumed_logs_keep_the_rows_up_to_the_checkpoint():
    from dlparts.train.callbacks import kept_rows

    rows = [{"epoch": "0", "step": "8"}, {"epoch": "1", "step": "9"}, {"epoch": "1", "step": "17"},
            {"epoch": "2", "step": "20"}, {"epoch": "2", "step": "23"}]

    def ckpt(epoch, step, processed):
        return {"epoch": epoch, "global_step": step,
                "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": processed}}}}}

    assert kept_rows(rows, ckpt(1, 18, 2)) == rows[:3]  # end of epoch 1: epoch 2's rows are replayed
    assert kept_rows(rows, ckpt(2, 22, 2)) == rows[:4]  # within epoch 2, at step 22
    assert kept_rows(rows, ckpt(0, 3, 0)) == []
