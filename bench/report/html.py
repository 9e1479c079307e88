"""The HTML report: one self-contained ``report.html`` beside the run's ``figures/`` folder.

The page is rendered with Jinja2 from the same `ReportData` as ``report.md``, with autoescaping on, so
every string that comes from user data (image ids, sources, method names, error messages, the command
line) reaches the browser as text. It opens from disk and loads nothing from the network: the stylesheet
is inlined, figures are relative links into ``figures/``, full-size views use CSS ``:target`` overlays
instead of scripts, and a Content-Security-Policy forbids scripts and remote resources as a second line
of defence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from bench.run.rundir import RunDir, write_text
from bench.metrics.catalogue import (CATALOGUE, best_labels, format_bounds, format_interval, format_value,
                                     label_with_arrow)
from bench.report.model import (ReportData, best_set_labels, convention_lines, external_prediction_lines,
                                fid_difference_rows, fid_text, kid_text, learned_metric_lines, mask_table,
                                method_labels, run_time_text)

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"
STYLESHEET_NAME = "report.css"
#: The page may show images from its own folder and inline styles; nothing else, no script at all.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"


def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATE_DIR), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def metric_label(metric: str) -> str:
    """Column label of ``metric`` with an arrow saying which direction is better."""
    return label_with_arrow(metric)


class _Figures:
    """Figures of the page, each with the anchor id of its full-size overlay."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, relative_path: str | None, caption: str) -> dict[str, str] | None:
        if not relative_path:
            return None
        self.count += 1
        return {"src": quote(relative_path), "caption": caption, "anchor": f"figure-{self.count}"}


def case_sections(data: ReportData, figure: _Figures) -> list[dict[str, Any]]:
    """Per case: one row per method with ``mean [CI]`` per metric, the best mean flagged, and N."""
    sections = []
    summary = data.summary
    for case in data.case_tables:
        cases_rows = summary[summary["case"] == case]
        metrics = list(dict.fromkeys(cases_rows["metric"]))
        methods = list(dict.fromkeys(cases_rows["method"]))
        columns = [metric_label(metric) for metric in metrics]
        labels = method_labels(data.meta)
        body = {method: {"method": labels.get(method, method), "cells": [], "n": 0} for method in methods}
        for metric in metrics:
            cells = cases_rows[cases_rows["metric"] == metric].set_index("method")
            best = best_labels(cells["mean"], metric)
            for method in methods:
                if method not in cells.index:
                    body[method]["cells"].append({"mean": "n/a", "ci": "", "best": False})
                    continue
                cell = cells.loc[method]
                body[method]["cells"].append({
                    "mean": format_value(metric, cell["mean"]),
                    "ci": format_bounds(metric, cell["ci_low"], cell["ci_high"]),
                    "best": method in best,
                })
                body[method]["n"] = max(body[method]["n"], int(cell["n"]))
        sets = data.set_metrics[data.set_metrics["case"] == case] if not data.set_metrics.empty else data.set_metrics
        if not sets.empty:
            columns += [label_with_arrow("fid"), label_with_arrow("kid")]
            indexed = sets.set_index("method")
            best_fid, best_kid = best_set_labels(indexed.reindex(methods))
            for method in methods:
                if method not in indexed.index:
                    body[method]["cells"] += [{"mean": "n/a", "ci": "", "best": False}] * 2
                    continue
                cell = indexed.loc[method]
                fid = fid_text(cell)
                body[method]["cells"].append({
                    "mean": fid.removesuffix("*"),
                    "ci": f"(N {int(cell['n'])}{', indicative' if cell['indicative'] and fid.endswith('*') else ''})",
                    "best": method in best_fid})
                kid_mean, _, kid_spread = kid_text(cell).partition(" ± ")
                body[method]["cells"].append({
                    "mean": kid_mean, "ci": f"± {kid_spread}" if kid_spread else "(one subset)",
                    "best": method in best_kid})
        sections.append({"case": case, "columns": columns, "rows": list(body.values()),
                         "grid": figure(data.grid_paths.get(case), f"Case {case}: original, mask, masked input "
                                                                   "and every method's result")})
    return sections


def _reading(metric: str, low: float, high: float) -> str:
    """Plain-language reading of a paired difference's confidence interval."""
    if metric not in CATALOGUE or not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    if low <= 0 <= high:
        return "no clear difference"
    higher = low > 0
    return "better" if higher == CATALOGUE[metric].higher_is_better else "worse"


def paired_rows(data: ReportData) -> list[dict[str, str]]:
    """The paired comparison against the reference, one row per method, case and metric."""
    rows = []
    for _, row in data.paired.iterrows():
        metric = row["metric"]
        rows.append({
            "method": row["method"], "case": row["case"], "metric": metric_label(metric),
            "difference": format_interval(metric, row["mean_diff"], row["ci_low"], row["ci_high"]),
            "p": "n/a" if not np.isfinite(row["p_wilcoxon"]) else f"{row['p_wilcoxon']:.3g}",
            "win_rate": "n/a" if not np.isfinite(row["win_rate"]) else f"{row['win_rate']:.2f}",
            "n": str(int(row["n"])), "reading": _reading(metric, row["ci_low"], row["ci_high"]),
        })
    return rows


def key_metric(metrics: list[str]) -> str | None:
    """The metric the report leads with: LPIPS when computed, else PSNR over the hole."""
    for candidate in ("lpips", "psnr_hole"):
        if candidate in metrics:
            return candidate
    return metrics[0] if metrics else None


def bin_sections(data: ReportData, figure: _Figures) -> list[dict[str, Any]]:
    """Per metric: mean (and N) per method and hole-area bin, with its curve; the key metric first."""
    bins = data.bins
    if bins.empty:
        return []
    metrics = list(dict.fromkeys(bins["metric"]))
    lead = key_metric(metrics)
    ordered = [lead] + [metric for metric in metrics if metric != lead]
    labels = list(dict.fromkeys(bins.sort_values("bin_low")["bin"]))
    method_order = {method: index for index, method in enumerate(dict.fromkeys(data.summary["method"]))}
    sections = []
    for metric in ordered:
        of_metric = bins[bins["metric"] == metric]
        rows = []
        groups = sorted(of_metric.groupby("method", sort=False),
                        key=lambda item: method_order.get(item[0], len(method_order)))
        for method, group in groups:
            by_bin = group.set_index("bin")
            rows.append({"method": method, "cells": [
                f"{format_value(metric, by_bin.loc[label, 'mean'])} (n={int(by_bin.loc[label, 'n'])})"
                if label in by_bin.index else "–" for label in labels]})
        sections.append({"metric": metric_label(metric), "bins": labels, "rows": rows, "open": metric == lead,
                         "curve": figure(data.curve_paths.get(metric),
                                         f"{metric_label(metric)} against hole area, one line per method")})
    return sections


def timing_rows(data: ReportData) -> list[dict[str, str]]:
    """Median and mean time per image, per method and case, as display strings."""
    return [{"method": row["method"], "case": row["case"], "median_s": f"{row['median_s']:.3f}",
             "mean_s": f"{row['mean_s']:.3f}", "n": str(int(row["n"]))} for _, row in data.timing.iterrows()]


def plain_table(table: pd.DataFrame) -> dict[str, list]:
    """Column names and stringified cells of any table (missing values shown as empty)."""
    return {"columns": [str(column) for column in table.columns],
            "rows": [["" if pd.isna(value) else str(value) for value in row]
                     for row in table.itertuples(index=False, name=None)]}


def image_rows(meta: dict) -> list[dict[str, str]]:
    """One row per image of the run: id, source, original and used size, conversions applied."""
    return [{"image": image["image_id"], "source": image["source"],
             "original": f"{image['original_size'][1]}x{image['original_size'][0]}",
             "used": f"{image['size'][1]}x{image['size'][0]}", "conversions": "; ".join(image["notes"]) or "-"}
            for image in meta["images"]]


def page_context(data: ReportData) -> dict[str, Any]:
    """Everything the template shows, as plain strings, lists and dicts."""
    config, meta = data.config, data.meta
    run = config["run"]
    figure = _Figures()
    cases = case_sections(data, figure)
    bins = bin_sections(data, figure)
    return {
        "title": f"relama-bench report: {meta['run_id']}",
        "csp": CONTENT_SECURITY_POLICY,
        "stylesheet": Markup((TEMPLATE_DIR / STYLESHEET_NAME).read_text(encoding="utf-8")),
        "facts": [
            *(f"Rebuilt: {line}." for line in meta.get("rebuilt", [])),
            f"Data: {meta['data_description']}, N = {len(meta['images'])} images; size policy: {meta['size_policy']}.",
            f"Cases: {', '.join(run['cases'])}; seed {run['seed']}.",
            f"Methods run: {', '.join(meta['methods_run']) or 'none'}.",
            run_time_text(meta),
            *(line.removeprefix("- ") for line in learned_metric_lines(meta)),
            *data.size_limits,
            *(line.removeprefix("- ") for line in external_prediction_lines(meta)),
        ],
        "diversity": [
            {"method": row["method"], "case": row["case"], "mean": f"{row['mean']:.4f}",
             "ci": f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]", "n": int(row["n"])}
            for _, row in data.diversity.iterrows()
        ],
        "sample_grids": [figure(path, f"{name}: samples of the same inputs")
                         for name, path in data.sample_grid_paths.items()],
        "conventions": convention_lines(data),
        "fid_differences": fid_difference_rows(data) if not data.fid_differences.empty else [],
        "skipped": list(meta["skipped"].items()),
        "cases": cases,
        "reference": data.reference,
        "paired": paired_rows(data) if data.reference and not data.paired.empty else [],
        "bins": bins,
        "timing": timing_rows(data),
        "scatter": figure(data.scatter_path, "Median time per image against quality, one point per method"),
        "errors": plain_table(data.errors) if not data.errors.empty else None,
        "images": image_rows(meta),
        "mask_table": plain_table(mask_table(data)),
        "methods": [{"name": method["name"], "family": method["family"], "resolution": method["resolution"],
                     "details": ", ".join(f"{key} {value}" for key, value in method["details"].items())}
                    for method in meta["methods"]],
        "environment": [*config.get("versions", {}).items(), *config.get("machine", {}).items()],
        "command": meta["command"],
    }


def render_html(data: ReportData) -> str:
    """The HTML report of ``data`` as one string (figures are linked from ``figures/``)."""
    return _environment().get_template(TEMPLATE_NAME).render(page_context(data))


def write_html(data: ReportData) -> Path:
    """Write ``report.html`` into the run directory and return its path."""
    path = RunDir(data.run_dir).html_report
    write_text(path, render_html(data))
    return path
