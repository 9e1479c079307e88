"""The report model: the tables, labels and formatted cells a report shows, read from a run directory.

Both renderers (`bench.report.markdown`, `bench.report.html`) read one `ReportData`;
`bench.report.build` fills it and writes every report file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import UserError
from bench.run.rundir import RunDir
from bench.metrics.catalogue import CATALOGUE, best_labels, format_interval, format_value, label_with_arrow
from bench.metrics.learned import FID_INDICATIVE_REASON, FID_RELIABLE_MIN_N

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
    #: Sentences naming the images too small for a metric (see `size_limit_lines`).
    size_limits: list[str] = field(default_factory=list)


def load_run(run_dir: Path) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame]:
    """Configuration, metadata, rows and errors of a run directory."""
    paths = RunDir(run_dir)
    if not paths.rows_path.exists():
        raise UserError(f"{paths.root} is not a finished run directory (no rows.parquet): run `relama-bench run` first")
    return paths.read_config(), paths.read_meta(), paths.read_rows(), paths.read_errors()


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
    of each column in bold (every tied best, `bench.metrics.catalogue.best_labels`), and N."""
    data = summary[summary["case"] == case]
    methods = list(dict.fromkeys(data["method"]))
    table = pd.DataFrame({"method": methods})
    for metric in metrics:
        cells = data[data["metric"] == metric].set_index("method")
        best = best_labels(cells["mean"].reindex(methods), metric)
        column = []
        for method in methods:
            cell = cells.loc[method]
            text = format_interval(metric, cell["mean"], cell["ci_low"], cell["ci_high"])
            column.append(f"**{text}**" if method in best else text)
        table[label_with_arrow(metric)] = column
    if set_metrics is not None and not set_metrics.empty:
        sets = set_metrics[set_metrics["case"] == case].set_index("method")
        if not sets.empty:
            best_fid = best_labels(sets["fid"].reindex(methods), "fid")
            best_kid = best_labels(sets["kid_mean"].reindex(methods), "kid")
            fid_column, kid_column = [], []
            for method in methods:
                if method not in sets.index:
                    fid_column.append("n/a")
                    kid_column.append("n/a")
                    continue
                cell = sets.loc[method]
                fid = format_value("fid", cell["fid"]) + ("*" if cell["indicative"] else "")
                kid = f"{format_value('kid', cell['kid_mean'] * 1000)} ± {format_value('kid', cell['kid_std'] * 1000)}"
                fid_column.append(f"**{fid}**" if method in best_fid else fid)
                kid_column.append(f"**{kid}**" if method in best_kid else kid)
            table[label_with_arrow("fid")] = fid_column
            table[label_with_arrow("kid")] = kid_column
    counts = data.groupby("method", sort=False)["n"].max()
    table["N"] = [int(counts[method]) for method in methods]
    return table


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


def size_limit_lines(meta: dict, metrics: list[str], *, shown: int = 10) -> list[str]:
    """One sentence per size limit naming the images too small for the metrics it concerns.

    Those metrics are missing (NaN) for those images, so their N is smaller than the other metrics'.

    Parameters
    ----------
    meta : dict
        ``run.json``; each image records the size it was scored at.
    metrics : list of str
        Metrics the run reports; limits of metrics not among them are not mentioned.
    shown : int
        Images named per sentence; the rest are counted.
    """
    by_side: dict[int, list[str]] = {}
    for metric in metrics:
        if metric in CATALOGUE and CATALOGUE[metric].minimum_side > 1:
            by_side.setdefault(CATALOGUE[metric].minimum_side, []).append(CATALOGUE[metric].label)
    lines = []
    for side, labels in sorted(by_side.items()):
        small = [f"{image['image_id']} ({image['size'][1]}x{image['size'][0]})" for image in meta.get("images", [])
                 if min(image["size"]) < side]
        if small:
            more = f" and {len(small) - shown} more" if len(small) > shown else ""
            lines.append(f"{' and '.join(labels)} need images of at least {side}x{side} pixels and are missing for "
                         f"{len(small)} image(s): {', '.join(small[:shown])}{more}; the other metrics are scored.")
    return lines
