"""The Markdown report of a run, rendered from its `ReportData`."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from bench.metrics.pixel import SSIM_CONVENTION
from bench.metrics.catalogue import format_interval, format_value, label
from bench.report.model import ReportData, learned_metric_lines


def _markdown_table(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False) if not table.empty else "_none_"


def _text(value: object) -> str:
    """User-supplied text (ids, paths, messages) made inert in Markdown, which passes HTML through."""
    return html.escape(str(value), quote=False).replace("|", "\\|")


def render_markdown(data: ReportData) -> str:
    """The Markdown report."""
    config, meta = data.config, data.meta
    run = config["run"]
    lines = [f"# relama-bench report: {meta['run_id']}", ""]
    lines += [
        f"- Data: {meta['data_description']}, N = {len(meta['images'])} images; size policy: "
        f"{meta['size_policy']}.",
        f"- Cases: {', '.join(run['cases'])}; seed {run['seed']}.",
        f"- Methods run: {', '.join(meta['methods_run']) or 'none'}.",
        f"- Run time: {meta['duration_s']:.1f} s ({meta['computed_jobs']} jobs computed, "
        f"{meta['cached_jobs']} reused from an earlier attempt).",
        "- Statistics: mean [95 % percentile-bootstrap CI of the mean, 2000 resamples]; images whose mask "
        "had no hole are left out of every statistic.",
        *learned_metric_lines(meta),
        f"- SSIM convention: {SSIM_CONVENTION}. PSNR over RGB values in [0, 1]; L1 mean absolute error in "
        "[0, 1]; \"hole\" columns use hole pixels only. Every method's output is composited with the known "
        "pixels before scoring.",
        "",
    ]
    if meta["skipped"]:
        lines += ["## Skipped methods", ""]
        lines += [f"- {_text(name)}: {_text(reason)}" for name, reason in meta["skipped"].items()]
        lines.append("")
    lines += ["## Results by case", ""]
    for case, table in data.case_tables.items():
        lines += [f"### {case}", "", _markdown_table(table), ""]
        if case in data.grid_paths:
            lines += [f"![{case} grid]({data.grid_paths[case]})", ""]
    if not data.diversity.empty:
        lines += ["## Diversity", "", "Mean pairwise LPIPS between the completions a sampling method draws for the "
                  "same input (higher = more diverse; the measure of the Pluralistic and ICT papers), "
                  "mean [95 % CI] over images.", ""]
        diversity = data.diversity.copy()
        diversity["diversity (pairwise LPIPS)"] = [
            f"{mean:.4f} [{low:.4f}, {high:.4f}]"
            for mean, low, high in zip(diversity["mean"], diversity["ci_low"], diversity["ci_high"])]
        lines += [_markdown_table(diversity[["method", "case", "diversity (pairwise LPIPS)", "n"]]), ""]
        lines += [f"![{name} samples]({path})" for name, path in data.sample_grid_paths.items()]
        lines.append("")
    if data.reference and not data.paired.empty:
        lines += [f"## Paired comparison against `{data.reference}`", "",
                  "Mean per-image difference (method − reference) with its 95 % CI, Wilcoxon signed-rank "
                  "p-value, and win rate (share of images where the method is better; ties count half).", ""]
        shown = data.paired.copy()
        shown["difference [95% CI]"] = [
            format_interval(m, d, lo, hi)
            for m, d, lo, hi in zip(shown["metric"], shown["mean_diff"], shown["ci_low"], shown["ci_high"])
        ]
        shown["p"] = shown["p_wilcoxon"].map(lambda p: "n/a" if np.isnan(p) else f"{p:.3g}")
        shown["win rate"] = shown["win_rate"].map(lambda w: f"{w:.2f}")
        lines += [_markdown_table(shown[["method", "case", "metric", "difference [95% CI]", "p", "win rate", "n"]]), ""]
    if not data.bins.empty:
        lines += ["## By hole area", "", "Mean per 10 % hole-area bin (LaMa's binning); bins without images "
                  "are left out.", ""]
        key_metric = "lpips" if "lpips" in set(data.bins["metric"]) else "psnr_hole"
        pivot = data.bins[data.bins["metric"] == key_metric].pivot_table(
            index="method", columns="bin", values="mean", sort=False)
        lines += [f"{label(key_metric)}:", "",
                  pivot.map(lambda v: format_value(key_metric, v)).reset_index().to_markdown(index=False), ""]
        lines += [f"![{metric} by area]({path})" for metric, path in data.curve_paths.items()]
        lines.append("")
    lines += ["## Speed", "", "Wall time per image on this machine (inference only, after loading).", ""]
    timing = data.timing.copy()
    timing["median_s"] = timing["median_s"].map(lambda v: f"{v:.3f}")
    timing["mean_s"] = timing["mean_s"].map(lambda v: f"{v:.3f}")
    lines += [_markdown_table(timing), ""]
    if data.scatter_path:
        lines += [f"![speed vs quality]({data.scatter_path})", ""]
    lines += ["## Errors", ""]
    if data.errors.empty:
        lines += ["No job failed.", ""]
    else:
        lines += [_markdown_table(data.errors.map(_text)), ""]
    lines += ["## Data", ""]
    image_table = pd.DataFrame([
        {"image": _text(image["image_id"]), "source": _text(image["source"]),
         "original": f"{image['original_size'][1]}x{image['original_size'][0]}",
         "used": f"{image['size'][1]}x{image['size'][0]}", "conversions": _text("; ".join(image["notes"]) or "-")}
        for image in meta["images"]
    ])
    lines += [_markdown_table(image_table), ""]
    lines += ["## Mask cases", ""]
    for case, params in config.get("cases", {}).items():
        lines.append(f"- `{case}`: {params}")
    lines += ["", "## Methods", ""]
    lines += [f"- `{method['name']}` ({method['family']}, {method['resolution']})"
              + (f": {', '.join(f'{k} {v}' for k, v in method['details'].items())}" if method["details"] else "")
              for method in meta["methods"]]
    lines += ["", "## Environment", ""]
    lines += [f"- {name}: {value}" for name, value in config.get("versions", {}).items()]
    lines += [f"- {name}: {value}" for name, value in config.get("machine", {}).items()]
    lines += ["", f"Reproduce: {_text(meta['command'])}", ""]
    return "\n".join(lines)
