"""Writing a run's report: every file under ``tables/``, ``figures/``, ``report.md`` and ``report.html``.

`build_report` reads ``rows.parquet``, ``run.json``, ``config.toml`` and ``errors.csv``, computes the
statistics, draws the figures into ``figures/`` and writes ``report.md`` and ``report.html``. Re-rendering a
finished run (``relama-bench report RUN_DIR``) gives the same report without running any method.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.statistics import (
    area_bins,
    choose_reference,
    mask_summary,
    metric_columns,
    paired_comparison,
    summarise,
    timing_summary,
)
from bench.report import figures
from bench.report.html import write_html
from bench.report.markdown import markdown_table, render_markdown
from bench.metrics.catalogue import label
from bench.report.model import ReportData, case_table, load_run, method_labels, size_limit_lines
from bench.run.rundir import RunDir, read_rgb_png, sample_path, write_table, write_text
from bench.run.scoring import fid_differences, set_metrics
from masks.io import read_mask_png


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
    seed = config["run"].get("seed")
    seed = seed if isinstance(seed, int) else 0
    sets = set_metrics(run_dir, rows, seed=seed) if not rows.empty else pd.DataFrame()
    data = ReportData(run_dir, config, meta, rows, errors, summary, paired, bins, timing, reference, sets,
                      size_limits=size_limit_lines(meta, metrics))
    data.masks = mask_summary(rows) if not rows.empty else pd.DataFrame()
    if not sets.empty and reference and len(methods) > 1:
        data.fid_differences = fid_differences(run_dir, rows, reference, seed=seed)
    paths = RunDir(run_dir)
    write_table(paths.table("summary.csv"), summary)
    write_table(paths.table("paired.csv"), paired)
    write_table(paths.table("area_bins.csv"), bins)
    write_table(paths.table("timing.csv"), timing)
    write_table(paths.table("set_metrics.csv"), sets)
    write_table(paths.table("masks.csv"), data.masks)
    write_table(paths.table("fid_differences.csv"), data.fid_differences)
    for case in config["run"]["cases"]:
        if case in set(summary["case"]):
            table = case_table(summary, case, metrics, sets)
            table["method"] = table["method"].map(lambda name: method_labels(meta).get(name, name))
            data.case_tables[case] = table
            write_text(paths.table(f"summary_{case}.md"), markdown_table(table, escape=["method"]) + "\n")
    if "diversity_lpips" in rows.columns and rows["diversity_lpips"].notna().any():
        data.diversity = summarise(rows[rows["diversity_lpips"].notna()], ["diversity_lpips"])
        write_table(paths.table("diversity.csv"), data.diversity)
    _draw_figures(data, metrics)
    write_text(paths.markdown_report, render_markdown(data))
    write_html(data)
    return data


def _draw_figures(data: ReportData, metrics: list[str]) -> None:
    paths, rows = RunDir(data.run_dir), data.rows
    if rows.empty:
        return
    figure_rows = int(data.config["run"].get("figure_rows", 8))
    image_ids = [image["image_id"] for image in data.meta["images"]][:figure_rows]
    methods = list(dict.fromkeys(rows["method"]))
    # A prediction left by a job that did not finish (no row) is not shown.
    finished = set(zip(rows["method"], rows["case"], rows["image_id"]))
    originals = [read_rgb_png(paths.image(image_id)) for image_id in image_ids]
    for case in data.config["run"]["cases"]:
        hole_masks = [read_mask_png(paths.mask(case, image_id)) for image_id in image_ids]
        predictions = {}
        for method in methods:
            panels = []
            for image_id in image_ids:
                path = paths.prediction(method, case, image_id)
                panels.append(read_rgb_png(path) if path.exists() and (method, case, image_id) in finished
                              else None)
            predictions[method] = panels
        relative = paths.figure(f"grid_{case}.png")
        figures.comparison_grid(image_ids, originals, hole_masks, predictions, paths.path(relative),
                                title=f"case: {case}")
        data.grid_paths[case] = relative
    for metric in metrics:
        if not data.bins[data.bins["metric"] == metric].empty:
            relative = paths.figure(f"area_{metric}.png")
            figures.area_curve(data.bins, metric, paths.path(relative), ylabel=label(metric))
            data.curve_paths[metric] = relative
    _draw_sample_grids(data, image_ids, originals)
    quality_metric = "lpips" if "lpips" in metrics else "psnr_hole"
    per_method = data.summary[data.summary["metric"] == quality_metric].groupby("method", sort=False)["mean"].mean()
    speed = data.timing.groupby("method", sort=False)["median_s"].median()
    points = pd.DataFrame({"method": per_method.index, quality_metric: per_method.values,
                           "median_s": speed.reindex(per_method.index).values}).dropna(subset=["median_s"])
    if not points.empty:
        data.scatter_path = paths.figure("speed_quality.png")
        figures.speed_quality_scatter(points, quality_metric, paths.path(data.scatter_path))


SAMPLE_GRID_IMAGES = 4


def _draw_sample_grids(data: ReportData, image_ids: list[str], originals: list[np.ndarray]) -> None:
    """For each sampling method and case, a grid of the k completions of the first few images."""
    if data.diversity.empty:
        return
    paths = RunDir(data.run_dir)
    shown_ids, shown_originals = image_ids[:SAMPLE_GRID_IMAGES], originals[:SAMPLE_GRID_IMAGES]
    for (method, case), group in data.rows[data.rows["diversity_lpips"].notna()].groupby(["method", "case"]):
        samples = int(group["samples"].max())
        hole_masks = [read_mask_png(paths.mask(case, image_id)) for image_id in shown_ids]
        columns: dict[str, list[np.ndarray | None]] = {}
        for index in range(samples):
            panels = []
            for image_id in shown_ids:
                path = paths.prediction(method, case, image_id)
                path = path if index == 0 else sample_path(path, index)
                panels.append(read_rgb_png(path) if path.exists() else None)
            columns[f"sample {index + 1}"] = panels
        relative = paths.figure(f"samples_{method}_{case}.png")
        figures.comparison_grid(shown_ids, shown_originals, hole_masks, columns, paths.path(relative),
                                title=f"{method}, case {case}: {samples} samples per image")
        data.sample_grid_paths[f"{method} / {case}"] = relative
