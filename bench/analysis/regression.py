"""Regression check of a run's summary table against a committed baseline.

The compared table is ``tables/summary.csv`` that `bench.report.build.build_report` writes (columns
``method, case, metric, mean, std, ci_low, ci_high, n``). Each ``(method, case, metric)`` entry's mean
is compared with the baseline's under the metric's tolerance in `TOLERANCES`; ``n`` must match exactly.
The other columns are derived from the same per-image values and are kept in the baseline for reading
only.

Verdicts, all of which fail the check:

- *regression*: the mean is worse than the baseline's beyond the tolerance;
- *improvement*: better beyond the tolerance. This fails too, so the committed baseline stays as tight
  as the code allows: refresh it with ``relama-bench check RUN_DIR --baseline DIR --update`` and commit
  it (``--allow-improvements`` lets improvements pass, for local experiments);
- *changed*: a metric without a known direction moved beyond its tolerance, a value became or stopped
  being NaN, or ``n`` differs;
- *missing* / *new*: an entry is in the baseline but not in the run, or the other way round.

A baseline directory holds ``summary.csv`` (the run's summary table) and ``baseline.json`` (which
command and versions produced it), plus a generated ``README.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import UserError
from bench.run.rundir import RunDir, write_table, write_text
from bench.metrics.catalogue import CATALOGUE, DEFAULT_TOLERANCE, Tolerance


#: Per-metric tolerances of the mean (see `bench.metrics.catalogue.MetricSpec.tolerance`).
TOLERANCES: dict[str, Tolerance] = {name: spec.tolerance for name, spec in CATALOGUE.items()}
#: Direction of every metric the check knows: True when larger is better.
DIRECTIONS: dict[str, bool] = {name: spec.higher_is_better for name, spec in CATALOGUE.items()}

KEY = ["method", "case", "metric"]
SUMMARY_COLUMNS = ["method", "case", "metric", "mean", "std", "ci_low", "ci_high", "n", "n_missing"]
BASELINE_TABLE = "summary.csv"
BASELINE_META = "baseline.json"
BASELINE_README = "README.md"


@dataclass(frozen=True)
class Finding:
    """One difference between run and baseline."""

    kind: str
    method: str
    case: str
    metric: str
    message: str


@dataclass
class CheckResult:
    """Every finding of a check, grouped by kind."""

    findings: list[Finding] = field(default_factory=list)
    compared: int = 0

    def of_kind(self, kind: str) -> list[Finding]:
        """Findings of one kind (``regression``, ``improvement``, ``changed``, ``missing``, ``new``)."""
        return [finding for finding in self.findings if finding.kind == kind]

    def failed(self, *, allow_improvements: bool = False) -> bool:
        """Whether any finding fails the check; improvements count unless ``allow_improvements``."""
        blocking = [finding for finding in self.findings
                    if not (allow_improvements and finding.kind == "improvement")]
        return bool(blocking)


#: Section titles of the report, in the order they are printed.
SECTIONS = {
    "regression": "REGRESSIONS (worse than the baseline beyond tolerance)",
    "improvement": "IMPROVEMENTS (better than the baseline beyond tolerance)",
    "changed": "CHANGED (no direction, NaN, or a different number of images)",
    "missing": "MISSING FROM THE RUN (in the baseline only)",
    "new": "NEW IN THE RUN (not in the baseline)",
}


def tolerance_for(metric: str) -> Tolerance:
    """The tolerance of ``metric``'s mean, `DEFAULT_TOLERANCE` for metrics not in `TOLERANCES`."""
    return TOLERANCES.get(metric, DEFAULT_TOLERANCE)


def read_summary(path: Path) -> pd.DataFrame:
    """A summary table with the columns `SUMMARY_COLUMNS`, checked for types and duplicate entries.

    Raises
    ------
    UserError
        One sentence naming the file: unreadable, empty, binary, missing columns, a mean that is not a
        number, an ``n`` that is not a whole number, or a duplicated entry.
    """
    fix = "regenerate it with `relama-bench report` (a run) or `relama-bench check RUN --update` (a baseline)"
    try:
        table = pd.read_csv(path, dtype={"method": str, "case": str, "metric": str})
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a summary table: pass the folder that holds summary.csv") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty: {fix}") from None
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path} is not a readable CSV table ({reason}): {fix}") from None
    absent = [column for column in ("method", "case", "metric", "mean", "n") if column not in table.columns]
    if absent:
        raise UserError(f"{path} lacks the column(s) {', '.join(absent)}: it is not a relama-bench summary table")
    for column in [name for name in SUMMARY_COLUMNS[3:] if name in table.columns]:
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = numbers.isna() & table[column].notna()
        if column == "n":
            bad |= numbers.isna() | (numbers != numbers.round())
        if bad.any():
            row = table[bad].iloc[0]
            raise UserError(f"{path} has {column} {row[column]} for {row['method']}/{row['case']}/{row['metric']}, "
                            f"not a {'whole number' if column == 'n' else 'number'}: {fix}")
        table[column] = numbers
    duplicated = table.duplicated(KEY)
    if duplicated.any():
        first = table[duplicated].iloc[0]
        raise UserError(f"{path} lists {first['method']}/{first['case']}/{first['metric']} twice: "
                        "regenerate it with `relama-bench report`")
    return table


def run_summary_path(run_dir: Path) -> Path:
    """``RUN_DIR/tables/summary.csv``; a `UserError` naming the fix when it does not exist."""
    paths = RunDir(run_dir)
    path = paths.table(BASELINE_TABLE)
    if not path.exists():
        if paths.rows_path.exists():
            raise UserError(f"{path} does not exist: render the run's tables with `relama-bench report {run_dir}`")
        raise UserError(f"{run_dir} is not a finished run directory (no {path}): run `relama-bench run` first")
    return path


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _number(value: float, metric: str) -> str:
    return f"{value:.4f}" if metric in {"psnr", "psnr_hole"} or abs(value) >= 10 else f"{value:.6f}"


def compare_entry(method: str, case: str, metric: str, baseline: pd.Series, run: pd.Series) -> list[Finding]:
    """Findings for one ``(method, case, metric)`` entry present on both sides."""
    findings = []
    where = (method, case, metric)
    if int(baseline["n"]) != int(run["n"]):
        findings.append(Finding("changed", *where, f"n {int(baseline['n'])} -> {int(run['n'])} images"))
    old, new = float(baseline["mean"]), float(run["mean"])
    if _same(old, new):
        return findings
    if not (math.isfinite(old) and math.isfinite(new)):
        findings.append(Finding("changed", *where, f"mean {old} -> {new}"))
        return findings
    tolerance = tolerance_for(metric)
    difference = new - old
    allowed = tolerance.allowed(old)
    if abs(difference) <= allowed or math.isclose(abs(difference), allowed, rel_tol=1e-9):
        return findings
    text = (f"mean {_number(old, metric)} -> {_number(new, metric)} ({difference:+.6g}{tolerance.unit}; "
            f"tolerance {tolerance.describe()})")
    if metric not in DIRECTIONS:
        findings.append(Finding("changed", *where, text))
    else:
        better = (difference > 0) == DIRECTIONS[metric]
        findings.append(Finding("improvement" if better else "regression", *where, text))
    return findings


def compare_tables(baseline: pd.DataFrame, run: pd.DataFrame) -> CheckResult:
    """Compare two summary tables entry by entry.

    Parameters
    ----------
    baseline, run : DataFrame
        Tables with at least the columns ``method, case, metric, mean, n``.

    Returns
    -------
    CheckResult
        Findings in the baseline's order, then entries new in the run.
    """
    result = CheckResult()
    run_entries = run.set_index(KEY)
    baseline_keys = set()
    for _, entry in baseline.iterrows():
        key = (entry["method"], entry["case"], entry["metric"])
        baseline_keys.add(key)
        if key not in run_entries.index:
            result.findings.append(Finding("missing", *key, f"baseline mean {entry['mean']}, n {entry['n']}"))
            continue
        result.compared += 1
        result.findings += compare_entry(*key, entry, run_entries.loc[key])
    for _, entry in run.iterrows():
        key = (entry["method"], entry["case"], entry["metric"])
        if key not in baseline_keys:
            result.findings.append(Finding("new", *key, f"run mean {entry['mean']}, n {entry['n']}"))
    return result


def _grouped(findings: list[Finding]) -> list[str]:
    """Missing/new entries grouped by method and case, so a whole missing method is one line."""
    groups: dict[tuple[str, str], list[str]] = {}
    for finding in findings:
        groups.setdefault((finding.method, finding.case), []).append(finding.metric)
    return [f"  {method} / {case}: {', '.join(metrics)}" for (method, case), metrics in groups.items()]


def format_result(result: CheckResult, *, run_dir: Path, baseline_dir: Path, allow_improvements: bool = False) -> str:
    """Readable report of a check, ending with the verdict and how to act on it."""
    lines = [f"relama-bench check: {Path(run_dir) / 'tables' / 'summary.csv'} against {baseline_dir / BASELINE_TABLE} "
             f"({result.compared} entries compared)"]
    for kind, title in SECTIONS.items():
        findings = result.of_kind(kind)
        if not findings:
            continue
        lines += ["", f"{title}: {len(findings)}"]
        if kind in ("missing", "new"):
            lines += _grouped(findings)
        else:
            lines += [f"  {f.method} / {f.case} / {f.metric}: {f.message}" for f in findings]
    counts = ", ".join(f"{len(result.of_kind(kind))} {kind}" for kind in SECTIONS if result.of_kind(kind))
    lines.append("")
    if not result.failed(allow_improvements=allow_improvements):
        lines.append("PASSED: every mean is within tolerance of the baseline"
                     + (f" (improvements allowed: {counts})" if counts else "") + ".")
    else:
        lines.append(f"FAILED: {counts}.")
        lines.append("If these changes are intended, refresh the baseline and commit it: "
                     f"relama-bench check {run_dir} --baseline {baseline_dir} --update")
    tolerances = ", ".join(f"{metric} {tolerance.describe()}" for metric, tolerance in TOLERANCES.items())
    lines.append(f"Tolerances of the mean: {tolerances}; other metrics {DEFAULT_TOLERANCE.describe()}; "
                 "n must match exactly.")
    return "\n".join(lines)


def check_run(run_dir: Path, baseline_dir: Path) -> CheckResult:
    """Compare the run in ``run_dir`` with the baseline in ``baseline_dir``."""
    run_path = run_summary_path(run_dir)
    baseline_path = Path(baseline_dir) / BASELINE_TABLE
    if not baseline_path.exists():
        raise UserError(f"no baseline table {baseline_path}: create it with "
                        f"`relama-bench check {run_dir} --baseline {baseline_dir} --update`")
    return compare_tables(read_summary(baseline_path), read_summary(run_path))


def update_baseline(run_dir: Path, baseline_dir: Path) -> Path:
    """Write the run's summary table as the baseline, with a note of what produced it.

    The files depend on the run's results and command only (no timestamps), so refreshing an unchanged
    baseline changes nothing under version control.

    Returns
    -------
    Path
        The written baseline table.
    """
    run_dir, baseline_dir = Path(run_dir), Path(baseline_dir)
    summary = read_summary(run_summary_path(run_dir))
    columns = [column for column in SUMMARY_COLUMNS if column in summary.columns]
    table_path = baseline_dir / BASELINE_TABLE
    write_table(table_path, summary[columns])
    paths = RunDir(run_dir)
    meta = paths.read_meta() if paths.meta_path.exists() else {}
    note = {
        "command": meta.get("command", "unknown"),
        "images": [image["image_id"] for image in meta.get("images", [])],
        "methods": meta.get("methods_run", []),
        "entries": len(summary),
        "tolerances": {metric: tolerance.describe() for metric, tolerance in TOLERANCES.items()},
    }
    write_text(baseline_dir / BASELINE_META, json.dumps(note, indent=2) + "\n")
    write_text(baseline_dir / BASELINE_README, _readme(note))
    return table_path


def _readme(note: dict) -> str:
    return "\n".join([
        "# Metric baseline",
        "",
        "`relama-bench check RUN_DIR --baseline <this folder>` compares a run's `tables/summary.csv` with",
        f"`{BASELINE_TABLE}` here and fails on any regression, improvement, missing or new entry beyond the",
        "per-metric tolerances listed in `bench/analysis/regression.py` (and in `baseline.json`).",
        "",
        f"Produced by: `{note['command']}`",
        "",
        "To refresh it after an intended change, rerun that command, then",
        "`relama-bench check runs/latest --baseline <this folder> --update`, and commit the result.",
        "",
    ])
