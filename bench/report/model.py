"""The report model: the tables, labels and formatted cells a report shows, read from a run directory.

Both renderers (`bench.report.markdown`, `bench.report.html`) read one `ReportData`;
`bench.report.build` fills it and writes every report file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bench.errors import UserError
from bench.run.metadata import KNOWN_PIXELS_CHANGED
from bench.run.rundir import RunDir
from bench.run.runner import rows_from_records
from bench.analysis.statistics import CI_METHOD
from bench.metrics.catalogue import CATALOGUE, best_labels, format_interval, format_value, label_with_arrow
from bench.metrics.learned import FID_INDICATIVE_REASON, FID_MIN_N, FID_RELIABLE_MIN_N
from bench.metrics.pixel import PSNR_CAP_DB, RIM_DISTANCE, SSIM_CONVENTIONS
from methods.registry import get_method_class

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
    masks: pd.DataFrame = field(default_factory=pd.DataFrame)
    fid_differences: pd.DataFrame = field(default_factory=pd.DataFrame)


def load_run(run_dir: Path) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame]:
    """Configuration, metadata, rows and errors of a run directory.

    A run killed between its last job record and ``run.json``, or whose ``rows.parquet``,
    ``config.toml``, ``run.json`` or ``errors.csv`` is damaged, is rebuilt from what the directory still
    holds (the job records, the prepared images); ``meta["rebuilt"]`` lists one sentence per file that
    had to be rebuilt and what the report therefore cannot state. ``rows.parquet`` rebuilt from the
    records is written back.

    Raises
    ------
    UserError
        The folder holds neither a result table nor any job record.
    """
    paths = RunDir(run_dir)
    run_dir = paths.root
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a run directory: pass the folder `relama-bench run` wrote, e.g. runs/latest")
    rebuilt: list[str] = []
    rows = _read_rows(paths, rebuilt)
    config = _read_config(paths, rows, rebuilt)
    meta = _read_meta(paths, config, rows, rebuilt)
    try:
        errors = paths.read_errors()
    except (ValueError, UnicodeDecodeError) as error:  # pandas' ParserError is a ValueError
        errors = pd.DataFrame()
        rebuilt.append(f"{paths.errors_path} is unreadable ({_reason(error)}): failed jobs are not listed")
    meta["rebuilt"] = rebuilt
    return config, meta, rows, errors


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read_rows(paths: RunDir, rebuilt: list[str]) -> pd.DataFrame:
    rows_path, run_dir = paths.rows_path, paths.root
    problem = "is missing"
    if rows_path.exists():
        try:
            rows = paths.read_rows()
        except (OSError, ValueError) as error:  # pyarrow raises ArrowInvalid (a ValueError) for damaged files
            problem = f"is unreadable ({_reason(error)})"
        else:
            if {"method", "case", "image_id"} <= set(rows.columns):
                return rows
            problem = "is not a result table (no method, case and image_id columns)"
    rows, unreadable = rows_from_records(run_dir)
    if rows.empty:
        raise UserError(f"{run_dir} is not a finished run directory ({rows_path.name} {problem} and there are no "
                        "job records in logs/jobs.*.jsonl): run `relama-bench run` first")
    skipped = f"; {len(unreadable)} unreadable log line(s) left out, e.g. {unreadable[0]}" if unreadable else ""
    rebuilt.append(f"{rows_path} {problem}: rebuilt from {len(rows)} job records{skipped}")
    paths.write_rows(rows)
    return rows


def _read_config(paths: RunDir, rows: pd.DataFrame, rebuilt: list[str]) -> dict:
    path = paths.config_path
    try:
        config = paths.read_config()
        if not isinstance(config.get("run"), dict) or not isinstance(config["run"].get("cases"), list):
            raise ValueError("no [run] table with its cases")
        return config
    except FileNotFoundError:
        problem = "is missing"
    except (OSError, ValueError, UnicodeDecodeError) as error:  # TOMLDecodeError is a ValueError
        problem = f"is unreadable ({_reason(error)})"
    rebuilt.append(f"{path} {problem}: cases taken from the job records; seed, mask-case parameters and "
                   "versions are unknown, and KID subsets are drawn with seed 0")
    return {"run": {"cases": list(dict.fromkeys(rows["case"])), "seed": "unknown"}}


def _read_meta(paths: RunDir, config: dict, rows: pd.DataFrame, rebuilt: list[str]) -> dict:
    path, run_dir = paths.meta_path, paths.root
    try:
        meta = paths.read_meta()
        absent = [key for key in META_KEYS if not isinstance(meta, dict) or key not in meta]
        if absent:
            raise ValueError(f"no {', '.join(absent)}")
        return meta
    except FileNotFoundError:
        problem = "is missing (the run was stopped before writing it)"
    except (OSError, ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        problem = f"is unreadable ({_reason(error)})"
    rebuilt.append(f"{path} {problem}: images and methods taken from the run directory; image sources, "
                   "conversions, skipped methods, method details, run time and the command are unknown")
    images = []
    for image_path in sorted(paths.image("*").parent.glob("*.png")):
        try:
            with Image.open(image_path) as image:
                size = [image.height, image.width]
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        images.append({"image_id": image_path.stem, "source": "unknown", "original_size": size, "size": size,
                       "notes": []})
    methods = list(dict.fromkeys(rows["method"]))
    return {
        "run_id": run_dir.name, "data_description": str(config["run"].get("data", "unknown")),
        "size_policy": "unknown", "duration_s": None, "computed_jobs": None, "cached_jobs": None, "skipped": {},
        "methods_run": methods, "command": "unknown", "scoring": {}, "images": images,
        "methods": [_method_facts(name) for name in methods],
    }


def _method_facts(name: str) -> dict:
    try:
        cls = get_method_class(name)
    except KeyError:  # a plug-in method that is no longer installed
        return {"name": name, "family": "unknown", "resolution": "unknown", "details": {}}
    return {"name": name, "family": cls.family.value, "resolution": cls.resolution.describe(), "details": {}}


#: Keys of ``run.json`` the reports read.
META_KEYS = ("run_id", "data_description", "size_policy", "duration_s", "computed_jobs", "cached_jobs", "skipped",
             "methods_run", "methods", "images", "command")


def run_time_text(meta: dict) -> str:
    """The report's run-time sentence (unknown for a run whose ``run.json`` was rebuilt)."""
    if meta.get("duration_s") is None:
        return "Run time: unknown."
    return (f"Run time: {meta['duration_s']:.1f} s ({meta['computed_jobs']} jobs computed, "
            f"{meta['cached_jobs']} reused from an earlier attempt).")


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
            best_fid, best_kid = best_set_labels(sets.reindex(methods))
            fid_column, kid_column = [], []
            for method in methods:
                if method not in sets.index:
                    fid_column.append("n/a")
                    kid_column.append("n/a")
                    continue
                fid, kid = fid_text(sets.loc[method]), kid_text(sets.loc[method])
                fid_column.append(f"**{fid}**" if method in best_fid else fid)
                kid_column.append(f"**{kid}**" if method in best_kid else kid)
            table[label_with_arrow("fid")] = fid_column
            table[label_with_arrow("kid")] = kid_column
    counts = data.groupby("method", sort=False)["n"].max()
    table["N"] = [int(counts[method]) for method in methods]
    return table


def fid_text(cell: pd.Series) -> str:
    """FID cell: "n/a (N < 50)" below `FID_MIN_N` images, a * when indicative."""
    if cell["n"] < FID_MIN_N or not np.isfinite(cell["fid"]):
        return f"n/a (N < {FID_MIN_N})" if cell["n"] < FID_MIN_N else "n/a"
    return format_value("fid", cell["fid"]) + ("*" if cell["indicative"] else "")


def kid_text(cell: pd.Series) -> str:
    """KID ×1000 cell: ``mean ± std`` over subsets, or the single value without ± when one subset held
    every image (its std is 0 by construction, not a measured spread)."""
    value = format_value("kid", cell["kid_mean"] * 1000)
    subsets = cell.get("kid_subsets", np.nan)
    single = subsets == 1 if np.isfinite(subsets) else cell["kid_subset_size"] >= cell["n"]
    return value if single else f"{value} ± {format_value('kid', cell['kid_std'] * 1000)}"


def best_set_labels(sets: pd.DataFrame) -> tuple[set, set]:
    """Methods to mark best for FID (among those with at least `FID_MIN_N` images) and for KID
    (``sets`` indexed by method)."""
    reportable_fid = sets["fid"].where(sets["n"] >= FID_MIN_N)
    return best_labels(reportable_fid, "fid"), best_labels(sets["kid_mean"], "kid")


def ssim_convention(config: dict) -> str:
    """The SSIM convention a run used; runs written before the option existed used scikit-image's."""
    return config["run"].get("ssim", "skimage")


def convention_lines(data: "ReportData") -> list[str]:
    """What the report's numbers are and are not: CI method, SSIM and its hole variant, PSNR cap, KID
    sign. One line each, without list markers."""
    convention = ssim_convention(data.config)
    lines = [
        f"Statistics: mean [{CI_METHOD}]; images whose mask had no hole are left out of every statistic, and a "
        "metric missing for an image (N column) is counted, never silently dropped.",
        f"SSIM ({convention}): {SSIM_CONVENTIONS[convention]}.",
        f"SSIM hole: the SSIM map averaged over hole pixels. A hole pixel within {RIM_DISTANCE} px of known pixels "
        "has a window that also covers known pixels, identical in prediction and original, so for thin holes "
        "this mostly measures how well the fill meets the hole's rim, not the structure inside a large hole; "
        "the mask table gives each case's share of such hole pixels.",
        f"PSNR over RGB values in [0, 1], capped at {PSNR_CAP_DB:.0f} dB (a perfect fill scores {PSNR_CAP_DB:.0f} "
        "and stays in every statistic); L1 is the mean absolute error in [0, 1]; \"hole\" columns use hole "
        "pixels only. Every method's output is composited with the known pixels before scoring.",
    ]
    sets = data.set_metrics
    if not sets.empty and (sets["kid_mean"] < 0).any():
        lines.append("KID is an unbiased estimate of a squared distance, so it is negative when the predictions' "
                     "features are as close to the originals' as sampling noise can resolve at this N: read a "
                     "negative KID as \"indistinguishable here\", not as better than zero.")
    return lines


def mask_table(data: "ReportData") -> pd.DataFrame:
    """Per case: family, generators and parameters from the configuration, and what the masks
    actually were (area mean and percentiles, box share, frames, hole-rim share)."""
    records = []
    summary = data.masks.set_index("case") if not data.masks.empty else pd.DataFrame()
    for case in data.config["run"]["cases"]:
        params = data.config.get("cases", {}).get(case, {})
        record = {"case": case, "family": params.get("family", "user masks"),
                  "generator and parameters": _parameter_text(params), "frame": params.get("frame", "the image")}
        if case in summary.index:
            row = summary.loc[case]
            record.update({
                "N": int(row["n_images"]),
                "area mean [p10, p50, p90]": (f"{row['area_mean']:.1%} [{row['area_p10']:.1%}, {row['area_p50']:.1%}, "
                                              f"{row['area_p90']:.1%}]"),
                "box share": "n/a" if np.isnan(row["box_share"]) else f"{row['box_share']:.1%}",
                "masks drawn": row["generators"], "frames used": row["frames"],
                f"hole px within {RIM_DISTANCE} px of known": ("n/a" if np.isnan(row["hole_rim_share"])
                                                               else f"{row['hole_rim_share']:.1%}"),
            })
        records.append(record)
    return pd.DataFrame(records)


def _parameter_text(params: dict) -> str:
    parts = []
    for side, components in params.get("parameter_sets", {}).items():
        described = []
        for component in components:
            values = ", ".join(f"{key} {value}" for key, value in component.items()
                               if key not in ("generator", "probability", "area_range"))
            low, high = component["area_range"]
            described.append(f"{component['generator']} p {component['probability']:.3f} ({values}; "
                             f"area {low * 100:g}-{high * 100:g} %)")
        parts.append(f"set {side}: " + "; ".join(described))
    if params.get("area_rule"):
        parts.append(params["area_rule"])
    return ". ".join(parts) if parts else params.get("description", "")


def fid_difference_rows(data: "ReportData") -> list[dict[str, str]]:
    """FID differences against the reference, formatted."""
    rows = []
    for _, row in data.fid_differences.iterrows():
        if np.isfinite(row["ci_low"]):
            text = f"{row['fid_diff']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
        elif np.isfinite(row["fid_diff"]):
            text = f"{row['fid_diff']:+.2f}"
        else:
            text = "n/a"
        rows.append({"method": row["method"], "case": row["case"], "FID − reference [95% CI]": text,
                     "N": str(int(row["n"])), "note": row["note"] or
                     f"percentile bootstrap over images, {int(row['resamples'])} resamples"})
    return rows


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
                     "of each case; KID ×1000, mean ± std over 100 subsets of 1,000 images, or one value without ± "
                     f"below 1,000 images (one subset: every image). FID is shown as n/a below {FID_MIN_N} images; "
                     f"FID marked * (fewer than {FID_RELIABLE_MIN_N:,} images): {FID_INDICATIVE_REASON}.")
    costs = [f"{label} {scoring[key]:.3f} s per image"
             for key, label in (("lpips_seconds_per_image", "LPIPS"), ("features_seconds_per_image", "Inception features"))
             if scoring.get(key)]
    if costs:
        setup = scoring.get("backbone_setup_seconds")
        once = f", plus {setup:.1f} s once to load the backbones" if setup else ""
        lines.append(f"- Metric cost on this machine: {', '.join(costs)}{once}.")
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


def external_prediction_lines(meta: dict) -> list[str]:
    """Report lines on predictions made elsewhere (`relama-bench score`): how they were scored."""
    external = [method for method in meta.get("methods", []) if method["family"] == "external"]
    if not external:
        return []
    counts = "; ".join(f"{method['name']} {method['details'][KNOWN_PIXELS_CHANGED]}" for method in external)
    return ["- Predictions made elsewhere: their known pixels are replaced by the original's before scoring, as "
            f"for every method. Predictions whose known pixels the method had changed: {counts}."]
