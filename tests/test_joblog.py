"""The job logs: append-only JSON lines per rank and attempt, read back whatever a kill left."""

from __future__ import annotations

import json

from bench.run.joblog import JobLog, last_attempt, latest_by_job, latest_records, log_paths, read_records
from bench.run.rundir import RunDir
from bench.run.runner import rows_from_records


def _record(image_id: str, key: str, **fields) -> dict:
    return {"method": "telea", "case": "small", "image_id": image_id, "job_key": key, "sample": 0,
            "hole_fraction": 0.25, "psnr": 30.0, **fields}


def test_each_record_is_one_complete_line(tmp_path):
    log = JobLog(tmp_path / "logs" / "jobs.rank0.1.jsonl")
    log.append(_record("a", "k1"))
    log.append(_record("b", "k2", psnr=float("nan")))
    log.close()
    lines = (tmp_path / "logs" / "jobs.rank0.1.jsonl").read_text().splitlines()
    assert [json.loads(line)["job_key"] for line in lines] == ["k1", "k2"]


def test_an_attempt_never_appends_to_an_existing_log(tmp_path):
    path = tmp_path / "jobs.rank0.1.jsonl"
    path.write_text('{"job_key": "k1", "method": "telea"')  # a torn line an earlier process left
    (tmp_path / "jobs.rank0.2.jsonl").write_text("")  # and a concurrent run took the next number
    log = JobLog(path)
    log.append(_record("a", "k2"))
    log.close()
    assert path.read_text() == '{"job_key": "k1", "method": "telea"'
    assert log.path == tmp_path / "jobs.rank0.3.jsonl"
    assert latest_records(log_paths(tmp_path))["k2"]["image_id"] == "a"


def test_a_torn_last_line_and_other_bad_lines_are_skipped(tmp_path):
    path = tmp_path / "jobs.rank1.3.jsonl"
    lines = [json.dumps(_record("a", "k1")), "not json", json.dumps(["a list"]), "\xff\xfe garbage",
             json.dumps(_record("b", "k2"))]
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1") + json.dumps(_record("c", "k3")).encode()[:40])
    assert set(latest_records([path])) == {"k1", "k2"}
    unparsable: list[str] = []
    list(read_records([path], unparsable=unparsable))
    assert unparsable == [f"{path}:{number}" for number in (2, 3, 4, 6)]


def test_the_last_line_of_a_key_wins_across_attempts_and_other_keys_stay_apart(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "jobs.rank0.2.jsonl").write_text(json.dumps(_record("a", "k1", lpips=0.5)) + "\n")
    # Attempt 10 comes after attempt 2 (numbers, not text, order the attempts).
    (logs / "jobs.rank1.10.jsonl").write_text(json.dumps(_record("a", "k1", lpips=0.25)) + "\n"
                                              + json.dumps(_record("a", "k-other", psnr=1.0)) + "\n")
    (logs / "jobs.rank0.1.jsonl").write_text(json.dumps(_record("a", "k1")) + "\n")
    (logs / "jobs.rank0.x.jsonl").write_text(json.dumps(_record("a", "k1", lpips=9.0)) + "\n")  # not a job log
    paths = log_paths(logs)
    assert [path.name for path in paths] == ["jobs.rank0.1.jsonl", "jobs.rank0.2.jsonl", "jobs.rank1.10.jsonl"]
    assert last_attempt(logs) == 10 and last_attempt(tmp_path / "none") == 0
    latest = latest_records(paths)
    assert latest["k1"]["lpips"] == 0.25 and latest["k-other"]["psnr"] == 1.0
    assert set(latest_records(paths, {"k1", "absent"})) == {"k1"}
    # Without keys to check (rows rebuilt without the inputs) the last line of the job wins.
    assert latest_by_job(paths)[("telea", "small", "a")]["job_key"] == "k-other"


def test_rows_are_rebuilt_from_the_logs_naming_the_lines_left_out(tmp_path):
    paths = RunDir(tmp_path)
    log = JobLog(paths.job_log(0, 1))
    log.append(_record("b", "k2"))
    log.append(_record("a", "k1"))
    log.close()
    with open(paths.job_log(0, 1), "a") as handle:
        handle.write('{"method": "telea", "case": "sm')
    rows, unreadable = rows_from_records(tmp_path)
    assert list(rows["image_id"]) == ["a", "b"] and "job_key" not in rows.columns
    assert unreadable == [f"{paths.job_log(0, 1)}:3"]
