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
