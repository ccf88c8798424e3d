"""Figures: titles, integer epoch ticks, legends naming each label's colour, readable sizes, and the interactive HTML
view (self-contained; its renderer run under Node.js with a recording canvas when Node is installed)."""

import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from dlparts import viz


@pytest.fixture()
def figures(monkeypatch):
    """The matplotlib figures the plot functions make, kept open for inspection (still written to disk)."""
    kept, save = [], viz._save

    def keep(fig, path):
        kept.append(fig)
        fig.savefig(path)
        return path

    monkeypatch.setattr(viz, "_save", keep)
    yield kept
    monkeypatch.setattr(viz, "_save", save)
    for fig in kept:
        viz._pyplot().close(fig)


@pytest.mark.parametrize("epochs", [1, 3, 40])
def test_curves_have_the_title_and_whole_epochs(figures, tmp_path, epochs):
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "lr": 1e-3, "acc": 0.02 * e} for e in range(epochs)]
    viz.plot_curves(history, tmp_path / "curves.png", title="training: m on d, run r", labels={"acc": "top-1"})
    fig = figures[0]
    assert fig._suptitle.get_text() == "training: m on d, run r"
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)  # no epoch 1.5
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["val top-1"]


def test_point_cloud_legend_names_the_labels_shown(figures, tmp_path):
    xyz = np.random.default_rng(0).normal(size=(50, 3))
    labels = np.array([0] * 20 + [2] * 30)
    viz.plot_point_clouds([(xyz, labels, "a"), (xyz, np.full(50, 3), "b")], tmp_path / "c.png",
                          names=["wing", "body", "tail", "engine"], title="t", note="test set: mIoU 80.0%")
    legend = figures[0].legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["wing", "tail", "engine"]
    colors = [tuple(h.get_color()) for h in legend.legend_handles]
    assert colors == [tuple(c) for c in viz.label_colors(np.array([0, 2, 3]))]
    assert "test set: mIoU 80.0%" in [t.get_text() for t in figures[0].texts]


def test_big_panel_is_at_least_800_px(tmp_path):
    xyz = np.random.default_rng(0).normal(size=(200, 3))
    path = viz.plot_point_clouds([(xyz, np.arange(200) % 3, "x: predicted labels")], tmp_path / "p.png",
                                 names=["a", "b", "c"], panel=10.0)
    assert min(Image.open(path).size) >= 800


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self._in = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag == "script"
        if self._in:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in = False

    def handle_data(self, data):
        if self._in:
            self.scripts[-1] += data


def _html(tmp_path, n=60, names=("wing", "body", "tail</script>")):
    xyz = np.random.default_rng(1).normal(size=(n, 3))
    labels = np.arange(n) % 3
    path = viz.write_cloud_html(xyz, labels, tmp_path / "v.html", names=list(names), title="ball.xyz & co")
    return path, xyz, labels


def test_html_is_self_contained_and_holds_the_cloud(tmp_path):
    path, xyz, labels = _html(tmp_path)
    text = path.read_text()
    parser = _Tags()
    parser.feed(text)
    assert not any(key in attrs for _, attrs in parser.tags for key in ("src", "href"))  # nothing to fetch
    assert "http" not in text.lower()
    data = json.loads(parser.scripts[0])
    assert data["labels"] == labels.tolist() and len(data["xyz"]) == len(xyz)
    assert np.allclose(data["xyz"], xyz - xyz.mean(axis=0), atol=1e-4)
    assert data["colors"]["1"] == viz._hex(viz.label_colors(np.array([1]))[0])
    assert "wing (20)" in text and "tail&lt;/script&gt; (20)" in text and "<title>ball.xyz &amp; co</title>" in text
    assert text.count("</script>") == 2  # the label name could not close a script early


_NODE_HARNESS = """
const fs = require("fs");
const html = fs.readFileSync(process.argv[1], "utf8");
const scripts = [...html.matchAll(/<script[^>]*>([\\s\\S]*?)<\\/script>/g)].map(m => m[1]);
const rects = [], handlers = {};
const ctx = { fillStyle: "", fillRect(x, y, w, h) { rects.push([x, y, w, h, this.fillStyle]); } };
const canvas = { width: 800, height: 800, getContext: () => ctx,
                 addEventListener: (name, fn) => { handlers[name] = fn; } };
global.document = { getElementById: id => id === "cloud" ? { textContent: scripts[0] } : canvas };
eval(scripts[1]);
const first = rects.splice(0);
handlers.pointerdown({ clientX: 0, clientY: 0 });
handlers.pointermove({ clientX: 60, clientY: 20 });
console.log(JSON.stringify({ first: first, turned: rects }));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed: the renderer is not run")
def test_html_renderer_draws_every_point_and_turns(tmp_path):
    path, xyz, labels = _html(tmp_path)
    out = subprocess.run(["node", "-e", _NODE_HARNESS, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    frames = json.loads(out.stdout)
    first, turned = frames["first"], frames["turned"]
    assert len(first) == len(turned) == len(xyz) + 1  # the background, then one square per point
    assert first[0][:4] == [0, 0, 800, 800] and first[0][4] == "#ffffff"
    data = json.loads(path.read_text().split('type="application/json">')[1].split("</script>")[0])
    assert sorted(r[4] for r in first[1:]) == sorted(data["colors"][str(k)] for k in labels)
    assert all(0 <= x <= 800 and 0 <= y <= 800 for x, y, *_ in first[1:])  # the cloud fits the canvas
    assert [r[:2] for r in first[1:]] != [r[:2] for r in turned[1:]]  # a drag turns the view
