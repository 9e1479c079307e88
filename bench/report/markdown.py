"""The Markdown report of a run, rendered from its `ReportData`."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd

from bench.metrics.catalogue import format_interval, format_value, label
from bench.report.model import (ReportData, convention_lines, external_prediction_lines, fid_difference_rows,
                                learned_metric_lines, mask_table, run_time_text)


#: Characters with a meaning in CommonMark or GitHub Markdown inline text (emphasis, code, link and image
#: brackets, tables, strikethrough, maths). ``&``, ``<`` and ``>`` become HTML entities instead (raw HTML,
#: autolinks). Parentheses stay: without an unescaped ``[`` they cannot form a link.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]#!|~$])")
#: Line breaks and other control characters: user text must stay inside its line (a newline could start
#: a heading, a list, a table row or a link definition).
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
#: A list marker, setext underline or ordered-list number where text might start a line.
_LIST_START = re.compile(r"^(\s*)([-=+])")
_NUMBER_START = re.compile(r"^(\s*\d+)([.)])")


def markdown_text(value: object) -> str:
    """User-derived text (ids, paths, file names, messages) made inert in Markdown.

    The text stays on one line (control characters become a space), HTML is escaped as entities (Markdown
    passes raw HTML through), and every character that could open a link, an image, emphasis, code, a
    table cell or maths is backslash-escaped, so ``[x](javascript:...)`` is shown as typed, never linked.
    """
    text = _MARKDOWN_PUNCTUATION.sub(r"\\\1", _CONTROL.sub(" ", str(value)))
    text = html.escape(text, quote=False)
    text = _LIST_START.sub(r"\1\\\2", text)
    return _NUMBER_START.sub(r"\1\\\2", text)


def markdown_code(value: object) -> str:
    """A name shown as inline code (inside which Markdown and HTML mean nothing), or as `markdown_text`
    when it holds a backtick or a control character, which could end or break the code span."""
    name = str(value)
    if "`" in name or _CONTROL.search(name) or not name.strip():
        return markdown_text(name)
    return f"`{name}`"


def markdown_table(table: pd.DataFrame, *, escape: list[str] | None = None) -> str:
    """``table`` as a GitHub Markdown table with the cells of ``escape`` (default: every text column)
    passed through `markdown_text`; ``_none_`` for an empty table."""
    if table.empty:
        return "_none_"
    columns = escape if escape is not None else [column for column in table.columns
                                                 if not pd.api.types.is_numeric_dtype(table[column])]
    shown = table.copy()
    for column in columns:
        shown[column] = shown[column].map(markdown_text)
    return shown.to_markdown(index=False)


def render_markdown(data: ReportData) -> str:
    """The Markdown report; every user-derived string goes through `markdown_text`."""
    config, meta = data.config, data.meta
    run = config["run"]
    text = markdown_text
    lines = [f"# relama-bench report: {text(meta['run_id'])}", ""]
    lines += [f"- **Rebuilt:** {text(line)}." for line in meta.get("rebuilt", [])]
    lines += [
        f"- Data: {text(meta['data_description'])}, N = {len(meta['images'])} images; size policy: "
        f"{text(meta['size_policy'])}.",
        f"- Cases: {text(', '.join(run['cases']))}; seed {text(run['seed'])}.",
        f"- Methods run: {text(', '.join(meta['methods_run']) or 'none')}.",
        f"- {run_time_text(meta)}",
        *(f"- {text(line)}" for line in convention_lines(data)),
        *(f"- {text(line.removeprefix('- '))}" for line in learned_metric_lines(meta)),
        *(f"- {text(line)}" for line in data.size_limits),
        *(f"- {text(line.removeprefix('- '))}" for line in external_prediction_lines(meta)),
        "",
    ]
    if meta["skipped"]:
        lines += ["## Skipped methods", ""]
        lines += [f"- {text(name)}: {text(reason)}" for name, reason in meta["skipped"].items()]
        lines.append("")
    lines += ["## Results by case", ""]
    for case, table in data.case_tables.items():
        # The metric cells are numbers the suite formatted (with ** for the best); only names are user text.
        lines += [f"### {text(case)}", "", markdown_table(table, escape=["method"]), ""]
        if case in data.grid_paths:
            lines += [f"![{text(case)} grid]({data.grid_paths[case]})", ""]
    if not data.diversity.empty:
        lines += ["## Diversity", "", "Mean pairwise LPIPS between the completions a sampling method draws for the "
                  "same input (higher = more diverse; the measure of the Pluralistic and ICT papers), "
                  "mean [95 % CI] over images.", ""]
        diversity = data.diversity.copy()
        diversity["diversity (pairwise LPIPS)"] = [
            f"{mean:.4f} [{low:.4f}, {high:.4f}]"
            for mean, low, high in zip(diversity["mean"], diversity["ci_low"], diversity["ci_high"])]
        lines += [markdown_table(diversity[["method", "case", "diversity (pairwise LPIPS)", "n"]],
                                 escape=["method", "case"]), ""]
        lines += [f"![{text(name)} samples]({path})" for name, path in data.sample_grid_paths.items()]
        lines.append("")
    if data.reference and not data.paired.empty:
        lines += [f"## Paired comparison against {markdown_code(data.reference)}", "",
                  "Mean per-image difference (method − reference) with its 95 % CI, Wilcoxon signed-rank "
                  "p-value, and win rate (share of images where the method is better; ties count half).", ""]
        shown = data.paired.copy()
        shown["difference [95% CI]"] = [
            format_interval(m, d, lo, hi)
            for m, d, lo, hi in zip(shown["metric"], shown["mean_diff"], shown["ci_low"], shown["ci_high"])
        ]
        shown["p"] = shown["p_wilcoxon"].map(lambda p: "n/a" if np.isnan(p) else f"{p:.3g}")
        shown["win rate"] = shown["win_rate"].map(lambda w: f"{w:.2f}")
        lines += [markdown_table(shown[["method", "case", "metric", "difference [95% CI]", "p", "win rate", "n"]],
                                 escape=["method", "case", "metric"]), ""]
    if not data.fid_differences.empty:
        lines += [f"## FID against {markdown_code(data.reference)}", "",
                  "FID of each method minus the reference's on the same images; the interval resamples images, "
                  "keeping each original with both predictions, so it carries the uncertainty of the shared "
                  "real set as well.", "",
                  markdown_table(pd.DataFrame(fid_difference_rows(data))), ""]
    if not data.bins.empty:
        lines += ["## By hole area", "", "Mean per 10 % hole-area bin (LaMa's binning); bins without images "
                  "are left out.", ""]
        key_metric = "lpips" if "lpips" in set(data.bins["metric"]) else "psnr_hole"
        pivot = data.bins[data.bins["metric"] == key_metric].pivot_table(
            index="method", columns="bin", values="mean", sort=False)
        lines += [f"{label(key_metric)}:", "",
                  markdown_table(pivot.map(lambda v: format_value(key_metric, v)).reset_index(), escape=["method"]),
                  ""]
        lines += [f"![{text(metric)} by area]({path})" for metric, path in data.curve_paths.items()]
        lines.append("")
    lines += ["## Speed", "", "Wall time per image on this machine (inference only, after loading).", ""]
    timing = data.timing.copy()
    timing["median_s"] = timing["median_s"].map(lambda v: f"{v:.3f}")
    timing["mean_s"] = timing["mean_s"].map(lambda v: f"{v:.3f}")
    lines += [markdown_table(timing), ""]
    if data.scatter_path:
        lines += [f"![speed vs quality]({data.scatter_path})", ""]
    lines += ["## Errors", ""]
    if data.errors.empty:
        lines += ["No job failed.", ""]
    else:
        lines += [markdown_table(data.errors.astype(str)), ""]
    lines += ["## Data", ""]
    image_table = pd.DataFrame([
        {"image": image["image_id"], "source": image["source"],
         "original": f"{image['original_size'][1]}x{image['original_size'][0]}",
         "used": f"{image['size'][1]}x{image['size'][0]}", "conversions": "; ".join(image["notes"]) or "-"}
        for image in meta["images"]
    ])
    lines += [markdown_table(image_table), ""]
    lines += ["## Mask cases", "", "What each case is (configuration) and what its masks actually were in this run "
              "(each image counted once).", ""]
    lines += [markdown_table(mask_table(data).astype(str)), ""]
    lines += ["## Methods", ""]
    lines += [f"- {markdown_code(method['name'])} ({text(method['family'])}, {text(method['resolution'])})"
              + (f": {text(', '.join(f'{k} {v}' for k, v in method['details'].items()))}" if method["details"] else "")
              for method in meta["methods"]]
    lines += ["", "## Environment", ""]
    lines += [f"- {text(name)}: {text(value)}" for name, value in config.get("versions", {}).items()]
    lines += [f"- {text(name)}: {text(value)}" for name, value in config.get("machine", {}).items()]
    lines += ["", f"Reproduce: {text(meta['command'])}", ""]
    return "\n".join(lines)
