"""The Markdown report: every user-derived string is shown as typed, never as Markdown or HTML.

Rendered with markdown-it-py (CommonMark plus GitHub's tables and strikethrough): hostile text must come
out as plain text tokens equal to what the user typed, with no link, image, HTML, emphasis or new block.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from bench.report.build import build_report
from bench.report.markdown import markdown_code, markdown_table, markdown_text
from tiny_run import build_tiny_run

HOSTILE = [
    "[click](javascript:alert(1))",
    "![x](javascript:alert(1))",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<javascript:alert(1)>",
    "a\n# heading\n- item",
    "cell | cell\n|---|---|",
    "[ref]: javascript:alert(1)",
    "line\r\n\u2028next",
    "`code` *em* _em_ **strong** ~~gone~~",
    "1. numbered",
    "- listed",
    "+ listed",
    "=====",
    "&amp; &#106;avascript:",
    "$x^2$ maths",
    "trailing backslash \\",
    "weights_v2 [final](http://evil).ckpt",
]

PARSER = MarkdownIt("commonmark").enable("table").enable("strikethrough")
#: Inline tokens that only Markdown syntax produces.
SYNTAX_TOKENS = {"link_open", "image", "html_inline", "code_inline", "em_open", "strong_open", "s_open",
                 "softbreak", "hardbreak"}


def _one_line(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]+", " ", text)


def _inline_text(tokens) -> str:
    return "".join(child.content for child in tokens if child.type == "text")


@pytest.mark.parametrize("hostile", HOSTILE)
def test_markdown_text_is_shown_as_typed(hostile):
    for line in (markdown_text(hostile), f"- name: {markdown_text(hostile)}", f"# report: {markdown_text(hostile)}"):
        blocks = PARSER.parse(line)
        inline = [token for token in blocks if token.type == "inline"]
        assert len(inline) == 1, line  # one block: no heading, list item or table row was started
        assert not {child.type for child in inline[0].children} & SYNTAX_TOKENS, line
        assert _inline_text(inline[0].children).endswith(_one_line(hostile))
        assert not any(token.type.startswith("html") for token in blocks)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_markdown_table_cells_hold_the_text_as_typed(hostile):
    table = pd.DataFrame({"image": [hostile, "plain"], "value": [1.5, 2.0]})
    blocks = PARSER.parse(markdown_table(table))
    cells = [token for token in blocks if token.type == "inline"]
    assert len(cells) == 6  # two headers and two rows of two cells: a pipe or newline made no extra cell or row
    assert _inline_text(cells[2].children) == _one_line(hostile).strip()
    assert not any(child.type in SYNTAX_TOKENS for cell in cells for child in cell.children)


@pytest.mark.parametrize("name", ["telea", "a`b", "x\ny", ""])
def test_markdown_code_is_a_code_span_only_when_it_can_hold_the_name(name):
    children = PARSER.parseInline(markdown_code(name))[0].children
    if name == "telea":
        assert [child.type for child in children] == ["code_inline"] and children[0].content == name
    else:
        assert "code_inline" not in {child.type for child in children}


def test_report_escapes_run_id_data_path_weights_and_errors(tmp_path):
    run_dir = build_tiny_run(tmp_path)
    meta = json.loads((run_dir / "run.json").read_text())
    hostile_weights = "lama](javascript:alert(1))<b>.ckpt"
    meta.update(run_id="[run](javascript:alert(1))", data_description="photos\n# owned <i>x</i>",
                skipped={"lama": f"weights {hostile_weights} | unreadable"},
                command="relama-bench run --data '[x](javascript:y)'")
    meta["methods"][0]["details"] = {"weights": hostile_weights}
    meta["images"][0]["notes"] = ["note | with pipe\nand newline"]
    (run_dir / "run.json").write_text(json.dumps(meta))
    pd.DataFrame([{"method": "ns", "case": "region", "image_id": "plain",
                   "error": "ValueError: [boom](javascript:alert(2)) <script>x</script>"}]).to_csv(
        run_dir / "errors.csv", index=False)
    build_report(run_dir)
    report = (run_dir / "report.md").read_text()
    tokens = PARSER.parse(report)
    assert not any(token.type.startswith("html") for token in tokens)
    inline = [child for token in tokens if token.type == "inline" for child in token.children]
    assert not any(child.type in ("html_inline", "link_open") for child in inline)
    # The only images are the run's own figures.
    assert all(child.attrGet("src").startswith("figures/") for child in inline if child.type == "image")
    text = " ".join(child.content for child in inline if child.type == "text")
    for typed in ("[run](javascript:alert(1))", "photos # owned <i>x</i>", hostile_weights, "note | with pipe and newline",
                  "[boom](javascript:alert(2)) <script>x</script>"):
        assert typed in text, typed
    assert [token.content for token in tokens if token.type == "inline"][0].startswith("relama-bench report:")
