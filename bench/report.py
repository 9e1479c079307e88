"""Report rendering: everything in a report is derived from the run directory.

`build_report` reads ``rows.parquet``, ``run.json``, ``config.toml`` and ``errors.csv``, computes the
statistics, draws the figures into ``figures/`` and writes ``report.md``. Re-rendering a finished run
(``relama-bench report RUN_DIR``) gives the same report without running any method.
"""

from __future__ import annotations

import html
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import figures
from bench.errors import UserError
from bench.io import read_json, read_rgb_png, sample_path, write_table, write_text
from bench.pixel_metrics import HIGHER_IS_BETTER, SSIM_CONVENTION
from bench.deep_metrics import FID_INDICATIVE_REASON, FID_RELIABLE_MIN_N
from bench.scoring import set_metrics
from bench.statistics import (
    area_bins,
    choose_reference,
    metric_columns,
    paired_comparison,
    summarise,
    timing_summary,
)
from masks.io import read_mask_png

METRIC_LABELS = {
    "psnr": "PSNR (dB)", "ssim": "SSIM", "l1": "L1", "psnr_hole": "PSNR hole (dB)",
    "ssim_hole": "SSIM hole", "l1_hole": "L1 hole", "lpips": "LPIPS",
}
METRIC_DECIMALS = {"psnr": 2, "psnr_hole": 2}


def format_value(metric: str, value: float) -> str:
    if value is None or not np.isfinite(value):
        return "n/a" if value is None or np.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.{METRIC_DECIMALS.get(metric, 4)}f}"


@dataclass
class ReportData:
    """Tables and figure paths a report shows; shared by the Markdown and HTML renderers."""

    run_dir: Path
    config: dict
    meta: dict
    rows: pd.DataFrame
    errors: pd.DataFrame
    summary: pd.DataFrame
    paired: pd.DataFrame
    bins: pd.DataFrame
    timing: pd.DataFrame
    reference: str | None
    set_metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    case_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    grid_paths: dict[str, str] = field(default_factory=dict)
    curve_paths: dict[str, str] = field(default_factory=dict)
    scatter_path: str | None = None
    diversity: pd.DataFrame = field(default_factory=pd.DataFrame)
    sample_grid_paths: dict[str, str] = field(default_factory=dict)


def load_run(run_dir: Path) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame]:
    """Configuration, metadata, rows and errors of a run directory."""
    run_dir = Path(run_dir)
    rows_path = run_dir / "rows.parquet"
    if not rows_path.exists():
        raise UserError(f"{run_dir} is not a finished run directory (no rows.parquet): run `relama-bench run` first")
    config = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    meta = read_json(run_dir / "run.json")
    rows = pd.read_parquet(rows_path)
    errors_path = run_dir / "errors.csv"
    errors = pd.read_csv(errors_path) if errors_path.exists() and errors_path.stat().st_size else pd.DataFrame()
    return config, meta, rows, errors


def method_labels(meta: dict) -> dict[str, str]:
    """Row labels of methods: the name, plus the training domain for methods that declare one, so a
    reader sees next to the numbers when a method runs outside the data it was trained on."""
    labels = {}
    for method in meta.get("methods", []):
        domain = method.get("details", {}).get("training domain")
        labels[method["name"]] = f"{method['name']} (trained on {domain})" if domain else method["name"]
    return labels


def case_table(summary: pd.DataFrame, case: str, metrics: list[str],
               set_metrics: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per method: ``mean [low, high]`` per metric, FID and KID when available, the best value
    of each column in bold, and N."""
    data = summary[summary["case"] == case]
    methods = list(dict.fromkeys(data["method"]))
    table = pd.DataFrame({"method": methods})
    for metric in metrics:
        cells = data[data["metric"] == metric].set_index("method")
        means = cells["mean"].replace([np.inf, -np.inf], np.nan)
        best = None
        if means.notna().any():
            best = means.idxmax() if HIGHER_IS_BETTER[metric] else means.idxmin()
        column = []
        for method in methods:
            cell = cells.loc[method]
            text = (f"{format_value(metric, cell['mean'])} "
                    f"[{format_value(metric, cell['ci_low'])}, {format_value(metric, cell['ci_high'])}]")
            column.append(f"**{text}**" if method == best and len(methods) > 1 else text)
        arrow = "↑" if HIGHER_IS_BETTER[metric] else "↓"
        table[f"{METRIC_LABELS.get(metric, metric)} {arrow}"] = column
    if set_metrics is not None and not set_metrics.empty:
        sets = set_metrics[set_metrics["case"] == case].set_index("method")
        if not sets.empty:
            best_fid = sets["fid"].idxmin() if sets["fid"].notna().any() else None
            best_kid = sets["kid_mean"].idxmin() if sets["kid_mean"].notna().any() else None
            fid_column, kid_column = [], []
            for method in methods:
                if method not in sets.index:
                    fid_column.append("n/a")
                    kid_column.append("n/a")
                    continue
                cell = sets.loc[method]
                fid = f"{cell['fid']:.2f}" + ("*" if cell["indicative"] else "")
                kid = f"{cell['kid_mean'] * 1000:.2f} ± {cell['kid_std'] * 1000:.2f}"
                bold = len(methods) > 1
                fid_column.append(f"**{fid}**" if bold and method == best_fid else fid)
                kid_column.append(f"**{kid}**" if bold and method == best_kid else kid)
            table["FID ↓"] = fid_column
            table["KID×1000 ↓"] = kid_column
    counts = data.groupby("method", sort=False)["n"].max()
    table["N"] = [int(counts[method]) for method in methods]
    return table


def build_report(run_dir: Path, *, reference: str | None = None) -> ReportData:
    """Compute tables, draw figures and write ``report.md`` for the run in ``run_dir``."""
    run_dir = Path(run_dir)
    config, meta, rows, errors = load_run(run_dir)
    metrics = metric_columns(rows)
    methods = list(dict.fromkeys(rows["method"])) if not rows.empty else []
    reference = choose_reference(methods, reference)
    summary = summarise(rows, metrics)
    paired = paired_comparison(rows, reference, metrics) if reference and len(methods) > 1 else pd.DataFrame()
    bins = area_bins(rows, metrics)
    timing = timing_summary(rows)
    sets = set_metrics(run_dir, rows, seed=int(config["run"].get("seed", 0))) if not rows.empty else pd.DataFrame()
    data = ReportData(run_dir, config, meta, rows, errors, summary, paired, bins, timing, reference, sets)
    tables_dir = run_dir / "tables"
    write_table(tables_dir / "summary.csv", summary)
    write_table(tables_dir / "paired.csv", paired)
    write_table(tables_dir / "area_bins.csv", bins)
    write_table(tables_dir / "timing.csv", timing)
    write_table(tables_dir / "set_metrics.csv", sets)
    for case in config["run"]["cases"]:
        if case in set(summary["case"]):
            table = case_table(summary, case, metrics, sets)
            table["method"] = table["method"].map(lambda name: method_labels(meta).get(name, name))
            data.case_tables[case] = table
            write_text(tables_dir / f"summary_{case}.md", data.case_tables[case].to_markdown(index=False) + "\n")
    if "diversity_lpips" in rows.columns and rows["diversity_lpips"].notna().any():
        data.diversity = summarise(rows[rows["diversity_lpips"].notna()], ["diversity_lpips"])
        write_table(tables_dir / "diversity.csv", data.diversity)
    _draw_figures(data, metrics)
    write_text(run_dir / "report.md", render_markdown(data))
    from bench.html_report import write_html  # imported here: html_report imports this module

    write_html(data)
    return data


def _draw_figures(data: ReportData, metrics: list[str]) -> None:
    run_dir, rows = data.run_dir, data.rows
    if rows.empty:
        return
    figure_rows = int(data.config["run"].get("figure_rows", 8))
    image_ids = [image["image_id"] for image in data.meta["images"]][:figure_rows]
    methods = list(dict.fromkeys(rows["method"]))
    originals = [read_rgb_png(run_dir / "images" / f"{image_id}.png") for image_id in image_ids]
    for case in data.config["run"]["cases"]:
        hole_masks = [read_mask_png(run_dir / "masks" / case / f"{image_id}.png") for image_id in image_ids]
        predictions = {}
        for method in methods:
            panels = []
            for image_id in image_ids:
                path = run_dir / "pred" / method / case / f"{image_id}.png"
                panels.append(read_rgb_png(path) if path.exists() and
                              (path.with_suffix(".json")).exists() else None)
            predictions[method] = panels
        relative = f"figures/grid_{case}.png"
        figures.comparison_grid(image_ids, originals, hole_masks, predictions, run_dir / relative,
                                title=f"case: {case}")
        data.grid_paths[case] = relative
    for metric in metrics:
        if not data.bins[data.bins["metric"] == metric].empty:
            relative = f"figures/area_{metric}.png"
            figures.area_curve(data.bins, metric, run_dir / relative, ylabel=METRIC_LABELS.get(metric, metric))
            data.curve_paths[metric] = relative
    _draw_sample_grids(data, image_ids, originals)
    quality_metric = "lpips" if "lpips" in metrics else "psnr_hole"
    per_method = data.summary[data.summary["metric"] == quality_metric].groupby("method", sort=False)["mean"].mean()
    speed = data.timing.groupby("method", sort=False)["median_s"].median()
    points = pd.DataFrame({"method": per_method.index, quality_metric: per_method.values,
                           "median_s": speed.reindex(per_method.index).values})
    if not points.empty:
        data.scatter_path = "figures/speed_quality.png"
        figures.speed_quality_scatter(points, quality_metric, run_dir / data.scatter_path)


def learned_metric_lines(meta: dict) -> list[str]:
    """Report lines stating how LPIPS, FID and KID were computed, or why they are unavailable."""
    scoring = meta.get("scoring", {})
    lines = []
    if scoring.get("lpips_unavailable"):
        lines.append(f"- LPIPS: {scoring['lpips_unavailable']}.")
    elif scoring:
        lines.append(f"- LPIPS: v0.1, {scoring.get('lpips_net', 'alex')} backbone, inputs mapped to [-1, 1], whole "
                     "image.")
    if scoring.get("fid_unavailable"):
        lines.append(f"- FID/KID: {scoring['fid_unavailable']}.")
    elif scoring:
        lines.append("- FID/KID: Inception-v3 pool3 (TF inception-2015-12-05 weights), whole image, over the images "
                     "of each case; KID ×1000, mean ± std over subsets whose size follows N. FID marked * "
                     f"(fewer than {FID_RELIABLE_MIN_N:,} images): {FID_INDICATIVE_REASON}.")
    for key, label in (("lpips_seconds_per_image", "LPIPS"), ("features_seconds_per_image", "Inception features")):
        if scoring.get(key):
            lines.append(f"- Metric cost on this machine: {label} {scoring[key]:.3f} s per image.")
    return lines


SAMPLE_GRID_IMAGES = 4


def _draw_sample_grids(data: ReportData, image_ids: list[str], originals: list[np.ndarray]) -> None:
    """For each sampling method and case, a grid of the k completions of the first few images."""
    if data.diversity.empty:
        return
    run_dir = data.run_dir
    shown_ids, shown_originals = image_ids[:SAMPLE_GRID_IMAGES], originals[:SAMPLE_GRID_IMAGES]
    for (method, case), group in data.rows[data.rows["diversity_lpips"].notna()].groupby(["method", "case"]):
        samples = int(group["samples"].max())
        hole_masks = [read_mask_png(run_dir / "masks" / case / f"{image_id}.png") for image_id in shown_ids]
        columns: dict[str, list[np.ndarray | None]] = {}
        for index in range(samples):
            panels = []
            for image_id in shown_ids:
                path = run_dir / "pred" / method / case / f"{image_id}.png"
                path = path if index == 0 else sample_path(path, index)
                panels.append(read_rgb_png(path) if path.exists() else None)
            columns[f"sample {index + 1}"] = panels
        relative = f"figures/samples_{method}_{case}.png"
        figures.comparison_grid(shown_ids, shown_originals, hole_masks, columns, run_dir / relative,
                                title=f"{method}, case {case}: {samples} samples per image")
        data.sample_grid_paths[f"{method} / {case}"] = relative


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
            f"{format_value(m, d)} [{format_value(m, lo)}, {format_value(m, hi)}]"
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
        lines += [f"{METRIC_LABELS.get(key_metric, key_metric)}:", "",
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
