"""The HTML report: escaping of user data, content, self-containment, and rendering in headless Chromium."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import pandas as pd
import pytest

from bench.report.html import CONTENT_SECURITY_POLICY, render_html, write_html
from bench.report.build import build_report
from tiny_run import CASE, HOSTILE_ID, METHODS, build_tiny_run

HOSTILE_ERROR = 'RuntimeError: <script>alert("boom")</script> & more'
HOSTILE_REASON = "weights missing: <b>pass</b> --weights lama=A&B.ckpt"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]
#: Injected into a copy of the page before its Content-Security-Policy: after loading, it lists every
#: image with its decoded size, and every script error, failed resource and policy violation, in
#: ``<pre id="probe">`` so that ``--dump-dom`` shows them.
PROBE_SCRIPT = """<script>
(function () {
  var problems = [];
  window.addEventListener("error", function (event) {
    problems.push("error: " + (event.message || (event.target && (event.target.src || event.target.href))));
  }, true);
  document.addEventListener("securitypolicyviolation", function (event) {
    problems.push("policy: " + event.violatedDirective + " " + event.blockedURI);
  });
  window.addEventListener("load", function () {
    var lines = [];
    document.querySelectorAll("img").forEach(function (image) {
      lines.push("image " + image.getAttribute("src") + " " + image.naturalWidth + "x" + image.naturalHeight);
    });
    problems.forEach(function (problem) { lines.push(problem); });
    var out = document.createElement("pre");
    out.id = "probe";
    out.textContent = lines.join("\\n");
    document.body.appendChild(out);
  });
})();
</script>
"""


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """The tiny run re-rendered after a hostile error row was added to its ``errors.csv``."""
    run_dir = build_tiny_run(tmp_path_factory.mktemp("html"))
    errors = pd.DataFrame([{"method": "ns", "case": CASE, "image_id": HOSTILE_ID, "error": HOSTILE_ERROR}])
    errors.to_csv(run_dir / "errors.csv", index=False)
    return build_report(run_dir)


def test_build_report_writes_the_html_beside_the_figures(tiny_report):
    path = tiny_report.run_dir / "report.html"
    assert path.exists()
    html = path.read_text(encoding="utf-8")
    for relative in [*tiny_report.grid_paths.values(), *tiny_report.curve_paths.values(), tiny_report.scatter_path]:
        assert (tiny_report.run_dir / relative).exists()
        assert f'src="{relative}"' in html


def test_user_strings_are_escaped(tiny_report):
    data = copy.copy(tiny_report)
    data.meta = {**tiny_report.meta, "skipped": {"lama": HOSTILE_REASON}}
    html = render_html(data)
    assert "<img src=x" not in html and "<script>" not in html and "<b>pass</b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;amp" in html
    assert "&lt;script&gt;alert(&#34;boom&#34;)&lt;/script&gt; &amp; more" in html
    assert "&lt;b&gt;pass&lt;/b&gt; --weights lama=A&amp;B.ckpt" in html


def test_page_is_self_contained(tiny_report):
    html = render_html(tiny_report)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "@import" not in html and "url(" not in html
    assert "<script" not in html
    assert CONTENT_SECURITY_POLICY.replace("'", "&#39;") in html


def test_tables_mark_the_best_mean_and_show_intervals(tiny_report):
    html = render_html(tiny_report)
    summary = tiny_report.summary
    psnr = summary[(summary["case"] == CASE) & (summary["metric"] == "psnr")].set_index("method")
    best = psnr["mean"].idxmax()
    low, high = psnr.loc[best, "ci_low"], psnr.loc[best, "ci_high"]
    assert (f'<td class="best" title="best mean in this case"><strong>{psnr.loc[best, "mean"]:.2f}</strong> '
            f'<span class="ci">[{low:.2f}, {high:.2f}]</span></td>') in html
    assert html.count('<table class="metrics"') == 1
    assert '<table class="paired">' in html and f"Paired comparison against <code>{tiny_report.reference}</code>" in html
    assert '<table class="bins">' in html and '<table class="timing">' in html
    assert '<table class="errors">' in html
    for method in METHODS:
        assert f'<th scope="row">{method}</th>' in html


def test_every_figure_has_a_full_size_view(tiny_report):
    html = render_html(tiny_report)
    anchors = re.findall(r'<a href="#(figure-\d+)"><img', html)
    assert len(anchors) == len(tiny_report.grid_paths) + len(tiny_report.curve_paths) + 1
    for anchor in anchors:
        assert f'<div class="lightbox" id="{anchor}">' in html


def test_write_html_returns_the_report_path(tiny_report):
    assert write_html(tiny_report) == tiny_report.run_dir / "report.html"


def test_report_renders_in_headless_chromium(tiny_report, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed")
    run_dir = tiny_report.run_dir
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    probed = html.replace('<meta charset="utf-8">\n', '<meta charset="utf-8">\n' + PROBE_SCRIPT, 1)
    assert probed != html
    page = run_dir / "probe.html"
    page.write_text(probed, encoding="utf-8")
    completed = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    console = [line for line in completed.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    dom = completed.stdout
    probe = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert probe, dom[-2000:]
    lines = probe.group(1).splitlines()
    images = [line.split() for line in lines if line.startswith("image ")]
    problems = [line for line in lines if not line.startswith("image ")]
    assert problems == []
    figure_count = len(tiny_report.grid_paths) + len(tiny_report.curve_paths) + 1
    assert len(images) == 2 * figure_count  # each figure: the thumbnail and its full-size overlay
    for _, source, size in images:
        width, height = map(int, size.split("x"))
        assert width > 0 and height > 0, f"{source} did not load"
    assert dom.count("<table") >= 6
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;amp" in dom
    assert "&lt;script&gt;alert(\"boom\")&lt;/script&gt; &amp; more" in dom
    assert '<img src="x"' not in dom
