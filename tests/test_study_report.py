"""Markdown and self-contained, escaped HTML reports of the analysis commands."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from bench.report.figures import save_figure  # noqa: E402
from bench.report.document import Section, write_reports  # noqa: E402


def test_reports_hold_the_sections_escape_text_and_embed_figures(tmp_path) -> None:
    figure, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    save_figure(figure, tmp_path / "figures" / "line.png")
    section = Section("A <b> section", ["text with <script>alert(1)</script>"],
                      [("table", pd.DataFrame({"method": ["<lama>"], "value": [1.5]}))],
                      [("a line", "figures/line.png")])
    markdown_path, html_path = write_reports(tmp_path, "title & co", ["intro"], [section])
    markdown = markdown_path.read_text()
    assert "## A &lt;b&gt; section" in markdown and "![a line](figures/line.png)" in markdown
    assert "| &lt;lama&gt;" in markdown and "text with &lt;script&gt;" in markdown and "# title &amp; co" in markdown
    html = html_path.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;lama&gt;" in html
    assert "title &amp; co" in html and "data:image/png;base64," in html and "figures/line.png" not in html
