"""Checkpoints never run code: a pickled payload is refused unexecuted, a malformed inside is a DataError naming
the file, and no ``torch.load``/``np.load`` in the package may unpickle."""

import ast
import pickle
from pathlib import Path

import pytest
import torch

from dlparts.cli import main
from dlparts.errors import DataError
from dlparts.train.config import load_config
from dlparts.train.engine import load_checkpoint

SRC = Path(__file__).resolve().parents[2] / "src" / "dlparts"


class Payload:
    """Unpickling this runs ``exec``: it writes ``marker``, as a hostile checkpoint would do anything."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _hostile(tmp_path: Path, marker: Path) -> Path:
    ckpt = tmp_path / "hostile.ckpt"
    torch.save({"hyper_parameters": {"cfg": Payload(marker), "info": {"task": "point_cls"}}, "state_dict": {}}, ckpt)
    return ckpt


def test_the_payload_is_real(tmp_path):
    """The check below can fail: unpickling the same payload does write its marker."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.read_text() == "ran"


def test_a_pickled_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    ckpt = _hostile(tmp_path, marker)
    with pytest.raises(DataError, match=r"hostile\.ckpt is refused: it holds Python objects"):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_the_cli_refuses_it_in_one_line(tmp_path, capsys):
    marker = tmp_path / "ran"
    ckpt = _hostile(tmp_path, marker)
    assert main(["test", "--ckpt", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "is refused" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def _cfg() -> dict:
    return load_config(None, ["model.name=pointnet_cls_vanilla", "data.name=modelnet40"])


@pytest.mark.parametrize("state, message", [
    ([1, 2, 3], "not a dlparts checkpoint"),
    ({"hyper_parameters": "cfg"}, "not a dlparts checkpoint"),
    ({"hyper_parameters": {"cfg": 3, "info": {}}, "state_dict": {}}, "hyper_parameters.cfg is a int"),
    ({"hyper_parameters": {"cfg": "CFG", "info": []}, "state_dict": {}}, "hyper_parameters.info is a list"),
    ({"hyper_parameters": {"cfg": "CFG", "info": {"task": "point_cls"}}}, "state_dict is a NoneType"),
    ({"hyper_parameters": {"cfg": "CFG", "info": {"task": "point_cls"}}, "state_dict": {"w": [1.0]}},
     "state_dict holds something other than named tensors"),
    ({"hyper_parameters": {"cfg": "CFG", "info": {}}, "state_dict": {}}, "info names no task"),
    ({"hyper_parameters": {"cfg": "CFG", "info": {"task": "point_cls"}}, "state_dict": {},
      "dlparts_history": "rows"}, "dlparts_history is a str"),
    ({"hyper_parameters": {"cfg": {"optim": {"lr": "fast"}}, "info": {"task": "point_cls"}}, "state_dict": {}},
     "saved config is refused.*optim.lr='fast'"),
    ({"hyper_parameters": {"cfg": {"bogus": 1}, "info": {"task": "point_cls"}}, "state_dict": {}},
     "saved config is refused.*unknown key 'bogus'"),
    ({"hyper_parameters": {"cfg": "CFG", "info": {"task": "point_cls"}}, "state_dict": {}},
     "info does not describe the dataset"),
])
def test_a_malformed_inside_is_a_data_error_naming_the_file(tmp_path, state, message):
    if isinstance(state, dict) and isinstance(state.get("hyper_parameters"), dict):
        if state["hyper_parameters"].get("cfg") == "CFG":
            state["hyper_parameters"]["cfg"] = _cfg()
    ckpt = tmp_path / "odd.ckpt"
    torch.save(state, ckpt)
    with pytest.raises(DataError, match=f"checkpoint {ckpt}.*{message}"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04" + bytes(100)])
def test_a_foreign_file_cannot_be_read(tmp_path, content):
    ckpt = tmp_path / "foreign.ckpt"
    ckpt.write_bytes(content)
    with pytest.raises(DataError, match="foreign.ckpt"):
        load_checkpoint(ckpt)


def _calls(name: str):
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                yield path.relative_to(SRC), {k.arg: ast.unparse(k.value) for k in node.keywords}


def test_every_torch_load_reads_weights_only():
    calls = list(_calls("torch.load"))
    assert calls, "the scan found no torch.load at all"
    assert [(p, kw) for p, kw in calls if kw.get("weights_only") != "True"] == []


def test_no_np_load_allows_pickles():
    calls = list(_calls("np.load"))
    assert calls, "the scan found no np.load at all"
    assert [(p, kw) for p, kw in calls if kw.get("allow_pickle", "False") != "False"] == []


def test_resume_refuses_a_hostile_last_checkpoint_before_lightning_loads_it(tmp_path):
    from dlparts.train.engine import fit

    cfg = load_config(None, ["model.name=pointnet_cls_vanilla", "data.name=modelnet40", f"run.dir={tmp_path}",
                             "run.name=run"])
    marker = tmp_path / "ran"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    _hostile(tmp_path, marker).rename(tmp_path / "run" / "checkpoints" / "last.ckpt")
    refused = r"last\.ckpt is refused: it holds Python objects .*\(Unsupported global: GLOBAL exec\)"
    with pytest.raises(DataError, match=refused):
        fit(cfg, resume=tmp_path / "run")
    assert not marker.exists()
