"""`dlparts sample`: one .npy per input file, a line per file; user mistakes exit 2 with one line."""

import numpy as np
import pytest
import trimesh

from dlparts.cli import main


def test_sample_writes_npy(tmp_path, capsys):
    trimesh.creation.box().export(tmp_path / "box.stl")
    (tmp_path / "pts.xyz").write_text("\n".join(f"{i} {i % 3} {i % 5} 0 0 1" for i in range(50)))
    out = tmp_path / "out"
    assert main(["sample", str(tmp_path / "box.stl"), str(tmp_path / "pts.xyz"), "--points", "32", "--normals",
                 "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("box.npy [32, 6]")
    for name in ("box", "pts"):
        cloud = np.load(out / f"{name}.npy")
        assert cloud.shape == (32, 6) and cloud.dtype == np.float32
        assert abs(np.linalg.norm(cloud[:, :3], axis=1).max() - 1) < 1e-5


def test_sample_bad_file_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "big.off").write_text("OFF\n1000000000 1 0\n")
    assert main(["sample", str(tmp_path / "big.off"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "big.off" in err and "1000000000 vertices" in err


def test_sample_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--help"])
    assert exc.value.code == 0
    assert "dlparts sample chair_0001.off --points 1024 --out clouds/" in capsys.readouterr().out


def test_sample_shared_stems_keep_their_suffix(tmp_path, capsys):
    trimesh.creation.box().export(tmp_path / "table.off")
    trimesh.creation.icosphere().export(tmp_path / "table.ply")
    out = tmp_path / "clouds"
    assert main(["sample", str(tmp_path / "table.off"), str(tmp_path / "table.ply"), "--points", "16",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["table.off.npy", "table.ply.npy"]
    box, sphere = np.load(out / "table.off.npy"), np.load(out / "table.ply.npy")
    assert not np.allclose(box, sphere)  # two clouds, neither replacing the other


def test_sample_refuses_two_files_meeting_in_one_target(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        trimesh.creation.box().export(tmp_path / folder / "chair.off")
    out = tmp_path / "clouds"
    assert main(["sample", str(tmp_path / "a" / "chair.off"), str(tmp_path / "b" / "chair.off"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path}/a/chair.off and {tmp_path}/b/chair.off would both be written to" in err
    assert not out.exists()  # refused before anything was written


def test_sample_says_when_it_replaces_an_earlier_file(tmp_path, capsys):
    trimesh.creation.box().export(tmp_path / "box.stl")
    args = ["sample", str(tmp_path / "box.stl"), "--points", "8", "--out", str(tmp_path / "out")]
    assert main(args) == 0 and "replaced" not in capsys.readouterr().out
    assert main(args) == 0 and capsys.readouterr().out.rstrip().endswith("[8, 3] (replaced the file there)")
