"""The single-page HTML report: figures embedded, nothing left pointing outside the file, a missing
figure refused; and (slow, where Chromium is installed) the page renders with its figures in a browser."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from overlooked.bench.arena import render_arenas, render_figure_index
from overlooked.bench.html import render_html
from overlooked.plots.common import plt, save_figure


def _png(path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return save_figure(fig, path)


def test_images_are_embedded_and_tables_rendered(tmp_path):
    png = _png(tmp_path / "figures" / "a.png")
    page = render_html("# Title\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n![a](figures/a.png)\n", tmp_path)
    assert "<table>" in page and "<td>1</td>" in page
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    assert f'src="data:image/png;base64,{data}"' in page
    assert 'src="figures/' not in page


def test_missing_figure_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        render_html("![m](figures/missing.png)\n", tmp_path)


def test_figure_index_and_arena_tables(tmp_path):
    _png(tmp_path / "figures" / "b_plot.png")
    lines = render_figure_index(tmp_path / "figures", tmp_path)
    assert "![b plot](figures/b_plot.png)" in lines
    suites = tmp_path / "suites"
    suites.mkdir()
    rows = [
        {"arena": "mnist", "case": "cnn", "role": "baseline", "status": "measured", "test_accuracy": 0.99, "params": 10, "flops_per_example": 100, "train_time_s": 5.0, "latency_ms": 0.1},
        {"arena": "mnist", "case": "snn", "role": "family", "status": "not run", "test_accuracy": None, "expected_hours": 2.0},
    ]
    (suites / "quick.json").write_text(__import__("json").dumps({"suite": "quick", "budgets": {"mnist": 64}, "wall_time_s": 754.0, "environment": {"cpu": "x"}, "annotations": {"suite": ["one run"]}, "fairness": {"mnist": "met"}, "rows": rows}))
    text = "\n".join(render_arenas(suites, tmp_path / "figures"))
    assert "- Fair-comparison rule (docs/fair_comparison.md), judged when the suite ran: met" in text
    assert "the whole suite took 12.6 min." in text and "- Note: one run" in text
    assert "| cnn | baseline | measured | 99.00 | 10 | 100 | 5 | 0.100 | — | — |" in text
    assert "| snn | family | not run (expected 2.0 h) | — |" in text
    assert (tmp_path / "figures" / "arena_quick_mnist.png").is_file()
    # a second file of the same suite (a rerun kept beside) draws its own figure, not over the first's
    (suites / "quick_later.json").write_text(__import__("json").dumps({"suite": "quick", "budgets": {"mnist": 64}, "rows": rows}))
    made: list = []
    text = "\n".join(render_arenas(suites, tmp_path / "figures", made))
    assert "figures/arena_quick_mnist.png" in text and "figures/arena_quick_later_mnist.png" in text
    assert sorted(p.name for p in made) == ["arena_quick_later_mnist.png", "arena_quick_mnist.png"]
    # the index says which figures this report made and which it found
    index = "\n".join(render_figure_index(tmp_path / "figures", tmp_path, made))
    assert "### arena quick mnist\n\n*Regenerated* by `overlooked report`." in index
    assert "### b plot\n\nNot written by this report" in index


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (apt-get install chromium; .ci/run installs it when it can)")
def test_report_page_renders_in_headless_chromium(tmp_path):
    """A page whose only content is an embedded, mostly red figure: the screenshot must show that red."""
    fig, ax = plt.subplots(figsize=(4, 4))
    fig.patch.set_facecolor("red")
    ax.set_facecolor("red")
    save_figure(fig, tmp_path / "figures" / "red.png")
    page = tmp_path / "report.html"
    page.write_text(render_html("![red](figures/red.png)\n", tmp_path).replace("max-width: 100%", "width: 100%"))
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=800,800", page.as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]  # [H, W, 3] floats in [0, 1]
    red = (img[..., 0] > 0.8) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)
    assert red.mean() > 0.2, "the embedded figure did not render"


def test_images_outside_the_page_folder_or_not_images_are_refused(tmp_path):
    """A note's link may not embed a file outside the report's folder (../../etc/hostname was base64'd into the
    page, tagged image/png); a JPEG is embedded with its own type; a text file is refused."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "secret.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="lies outside"):
        render_html("![x](../secret.txt)\n", tmp_path / "docs")
    (tmp_path / "docs" / "a.jpg").write_bytes(b"\xff\xd8\xff")
    assert 'src="data:image/jpeg;base64,' in render_html("![a](a.jpg)\n", tmp_path / "docs")
    (tmp_path / "docs" / "b.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="not an image the page can embed"):
        render_html("![b](b.txt)\n", tmp_path / "docs")
