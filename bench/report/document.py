"""Reports of the analysis commands (``erf``, ``sweep``): sections rendered as Markdown and as HTML.

The HTML is one self-contained file: figures are embedded as base64 PNG data URIs, and every text
goes through Jinja2 with autoescaping.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from bench.report.markdown import markdown_table, markdown_text
from bench.run.rundir import write_text


@dataclass
class Section:
    """One report section: paragraphs, then tables, then figures (paths relative to the output dir)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)


_HTML = jinja2.Environment(autoescape=True).from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; line-height: 1.4; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #444; }
img { max-width: 100%; }
</style></head><body>
<h1>{{ title }}</h1>
{% for line in intro %}<p>{{ line }}</p>{% endfor %}
{% for section in sections %}
<h2>{{ section.title }}</h2>
{% for paragraph in section.paragraphs %}<p>{{ paragraph }}</p>{% endfor %}
{% for caption, table in section.tables %}<p><b>{{ caption }}</b></p>{{ table }}{% endfor %}
{% for caption, uri in section.figures %}<figure><img src="{{ uri }}" alt="{{ caption }}">
<figcaption>{{ caption }}</figcaption></figure>{% endfor %}
{% endfor %}
</body></html>
""")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_markdown(title: str, intro: list[str], sections: list[Section]) -> str:
    """The report as Markdown (figures linked by relative path).

    Every text (titles, paragraphs, captions, table cells) is plain text that may carry user data (paths,
    image ids, weights file names), so all of it goes through `markdown_text`.
    """
    text = markdown_text
    lines = [f"# {text(title)}", ""]
    for line in intro:
        lines += [text(line), ""]
    for section in sections:
        lines += [f"## {text(section.title)}", ""]
        for paragraph in section.paragraphs:
            lines += [text(paragraph), ""]
        for caption, table in section.tables:
            lines += [f"**{text(caption)}**", "", markdown_table(table), ""]
        for caption, relative in section.figures:
            lines += [f"![{text(caption)}]({relative})", "", f"_{text(caption)}_", ""]
    return "\n".join(lines)


def render_html(title: str, intro: list[str], sections: list[Section], out_dir: Path) -> str:
    """The report as one self-contained HTML page."""
    rendered = []
    for section in sections:
        # pandas escapes cell contents itself (escape=True); the table markup is then trusted.
        tables = [(caption, Markup(table.to_html(index=False, escape=True, border=0)))
                  for caption, table in section.tables]
        figures = [(caption, _data_uri(out_dir / relative)) for caption, relative in section.figures]
        rendered.append({"title": section.title, "paragraphs": section.paragraphs, "tables": tables,
                         "figures": figures})
    return _HTML.render(title=title, intro=intro, sections=rendered)


def write_reports(out_dir: Path, title: str, intro: list[str], sections: list[Section]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; returns their paths."""
    markdown_path, html_path = out_dir / "report.md", out_dir / "report.html"
    write_text(markdown_path, render_markdown(title, intro, sections))
    write_text(html_path, render_html(title, intro, sections, out_dir))
    return markdown_path, html_path
