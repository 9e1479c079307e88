"""What finished-job bookkeeping costs at scale: one JSON file per job against the per-rank job logs.

``python -m bench.studies.joblog_benchmark --jobs 20000,100000`` writes that many synthetic job records
(the fields a run's records have) into a scratch run directory both ways, and times

* write: one atomic JSON file per job (temporary file + rename, the former layout) against one
  appended line per job (`bench.run.joblog.JobLog`);
* resume check: finding which jobs are finished with their current key (reading every record file,
  against `bench.run.joblog.latest_records` over the logs);
* collect: the records of the current keys read into a DataFrame (every record file read and its key
  checked, against `bench.run.joblog.latest_records`); `bench.run.runner.collect_rows` adds the same
  per-row work (families, column order) to either, timed apart as ``rows_s``.

It also counts the files and bytes each way. Not a test: the numbers depend on the disk and the load.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.run.joblog import JobLog, latest_records
from bench.run.rundir import RunDir, read_json, write_json
from bench.run.runner import collect_rows

DEFAULT_JOBS = (20_000, 100_000)
METHODS = ("telea", "ns")
CASES = ("small", "large")


def synthetic_records(count: int) -> list[dict]:
    """``count`` job records shaped like a run's (method x case x image, pixel metrics, LPIPS, key)."""
    records = []
    for index in range(count):
        method, case = METHODS[index % len(METHODS)], CASES[(index // len(METHODS)) % len(CASES)]
        image_id = f"img{index // (len(METHODS) * len(CASES)):07d}"
        records.append({
            "method": method, "case": case, "image_id": image_id, "sample": 0, "height": 512, "width": 512,
            "hole_fraction": 0.25 + (index % 7) / 100, "wall_time_s": 0.01 * (index % 13), "note": "",
            "samples": 1, "job_key": hashlib.sha256(f"{index}".encode()).hexdigest(),
            "mask_generator": "lama-thick", "mask_frame": "512x512", "psnr": 25.0 + index % 5,
            "ssim": 0.9, "l1": 0.05, "psnr_hole": 20.0, "ssim_hole": 0.7, "l1_hole": 0.1, "lpips": 0.12,
        })
    return records


def _timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def measure(count: int, scratch: Path) -> list[dict]:
    records = synthetic_records(count)
    keys = [record["job_key"] for record in records]
    files_dir = RunDir(scratch / f"files-{count}")
    record_paths = [files_dir.prediction(r["method"], r["case"], r["image_id"]).with_suffix(".json") for r in records]

    def write_files() -> None:
        for path, record in zip(record_paths, records):
            write_json(path, record)

    def check_files() -> int:
        finished = 0
        for path, key in zip(record_paths, keys):
            try:
                finished += read_json(path).get("job_key") == key
            except (OSError, ValueError):
                pass
        return finished

    def collect_files() -> pd.DataFrame:
        found = []
        for path, key in zip(record_paths, keys):
            record = read_json(path)
            if record.get("job_key") == key:
                found.append(record)
        return pd.DataFrame(found)

    logs_dir = RunDir(scratch / f"logs-{count}")

    def write_log() -> None:
        log = JobLog(logs_dir.job_log(0, 1))
        for record in records:
            log.append(record)
        log.close()

    def collect_log() -> pd.DataFrame:
        latest = latest_records(logs_dir.job_logs(), set(keys))
        return pd.DataFrame([latest[key] for key in keys if key in latest])

    rows = []
    for layout, write, check, collect, folder in (
            ("one JSON file per job", write_files, check_files, collect_files, files_dir.root / "pred"),
            ("job log per rank", write_log, lambda: len(latest_records(logs_dir.job_logs(), set(keys))),
             collect_log, logs_dir.root / "logs")):
        write_s, _ = _timed(write)
        check_s, finished = _timed(check)
        collect_s, table = _timed(collect)
        if finished != count or len(table) != count:
            raise RuntimeError(f"{layout}: {finished} finished and {len(table)} rows of {count}")
        files = [path for path in folder.rglob("*") if path.is_file()]
        rows.append({"jobs": count, "layout": layout, "write_s": write_s, "resume_check_s": check_s,
                     "collect_s": collect_s, "files": len(files),
                     "mib": sum(path.stat().st_size for path in files) / 2 ** 20})
    rows[-1]["rows_s"] = _timed(lambda: collect_rows(logs_dir.root, keys))[0]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default=",".join(map(str, DEFAULT_JOBS)),
                        help="numbers of job records, comma-separated (default %(default)s)")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="folder for the scratch run directories (default: the system's temporary folder)")
    args = parser.parse_args(argv)
    print("| jobs | layout | write s | resume check s | collect s | files | MiB | collect_rows s |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="joblog-benchmark-", dir=args.scratch) as scratch:
        for count in (int(jobs) for jobs in args.jobs.split(",")):
            for row in measure(count, Path(scratch)):
                rows_s = f"{row['rows_s']:.1f}" if "rows_s" in row else "-"
                print(f"| {row['jobs']:,} | {row['layout']} | {row['write_s']:.1f} | {row['resume_check_s']:.1f} | "
                      f"{row['collect_s']:.1f} | {row['files']:,} | {row['mib']:.1f} | {rows_s} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
