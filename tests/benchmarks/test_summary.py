"""benchmarks/summary.py: the table says which goals are met, the chart is written, a benchmark that
did not run is named rather than hidden."""

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import summary  # noqa: E402


def test_summary_table_and_chart(tmp_path):
    figs = [summary.Figure("intref_scale", "(a) embed 64", summary.INTREF_WALL, 0.5, goal=summary.INTREF_GOAL),
            summary.Figure("intref_scale", "(b) CIFAR 4-384", summary.INTREF_WALL, 1.3, goal=summary.INTREF_GOAL),
            summary.Figure("lava_scale", "(a) embed 64", summary.LAVA_STEPS, 12.0),
            summary.Figure("compile_scale", "2-64", summary.COMPILE_S, 7.8, params=160_000),
            summary.Figure("compile_scale", "4-384", summary.COMPILE_S, 16.5, params=9_310_000)]
    md, png = summary.write(figs, tmp_path, notes=["lava_speed: **failed**"])
    text = md.read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| intref_scale")]
    assert len(rows) == 2 and rows[0].endswith("| yes |") and rows[1].endswith("| **no** |")
    assert "1 of 2 figures with a goal meet it" in text and "lava_speed: **failed**" in text
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_summary_of_nothing(tmp_path):
    md, png = summary.write([], tmp_path)
    assert "No benchmark returned figures." in md.read_text() and png.exists()
