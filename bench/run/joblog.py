"""Finished-job bookkeeping: append-only JSON-lines logs, one per rank and attempt.

Each process of a run appends one line per finished job to ``logs/jobs.rank<r>.<attempt>.jsonl``
(`JobLog`): the job's complete record, its job key included, in one ``write`` on a file opened for
appending, so a job costs one system call instead of a temporary file and a rename, and 10^6 jobs are a
few files instead of 10^6. A process killed in the middle of a write leaves at most a torn last line,
which readers skip (`read_records`), as they skip any line that does not parse.

A line is valid only for its ``job_key`` (`bench.run.identity.JobIdentity`): readers look up records by
key, and for one key the line written last wins (`latest_records`), so recomputing a job, or adding a
metric to a finished one (LPIPS catch-up), only appends. The logs are the source of truth and are never
rewritten; ``rows.parquet`` is built from them by rank 0 at the end of a run.

Attempts are numbered: every rank of an attempt uses 1 + the highest number any of them finds in its
``logs/`` (`last_attempt`), so no attempt, whatever its number of processes, appends to an earlier
attempt's file, and "written later" is "higher attempt, or further down the same file" (two ranks of
one attempt never log the same job).
"""

from __future__ import annotations

import json
import os
import re
import weakref
from pathlib import Path
from typing import Collection, Iterator

#: ``jobs.rank<r>.<attempt>.jsonl``.
_LOG_NAME = re.compile(r"^jobs\.rank(\d+)\.(\d+)\.jsonl$")
#: The job key of a line, found without parsing the line (most lines of a big run are other ranks' jobs).
_KEY_FIELD = re.compile(rb'"job_key": "([^"]*)"')


def log_name(rank: int, attempt: int) -> str:
    return f"jobs.rank{rank}.{attempt}.jsonl"


def log_paths(folder: Path) -> list[Path]:
    """The job logs in ``folder``, oldest attempt first (rank order within an attempt)."""
    found = []
    for path in Path(folder).glob("jobs.rank*.jsonl"):
        match = _LOG_NAME.match(path.name)
        if match:
            found.append((int(match.group(2)), int(match.group(1)), path))
    return [path for _, _, path in sorted(found)]


def attempt_of(path: Path) -> int:
    """The attempt number of a job log (as `log_paths` lists them)."""
    return int(_LOG_NAME.match(path.name).group(2))


def last_attempt(folder: Path) -> int:
    """The highest attempt number of the job logs in ``folder`` (0 when there are none)."""
    return max(map(attempt_of, log_paths(folder)), default=0)


class JobLog:
    """This process's job log of this attempt, created on the first record.

    Parameters
    ----------
    path : Path
        ``logs/jobs.rank<r>.<attempt>.jsonl``. An attempt never appends to an existing file (an earlier
        process may have left it with a torn last line): when the file exists, the log takes the next
        free attempt number and `path` says which.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._closer: weakref.finalize | None = None

    def append(self, record: dict) -> None:
        """Write ``record`` as one line (a single ``write``; the line is complete once it returns)."""
        line = (json.dumps(record, sort_keys=True, allow_nan=True) + "\n").encode("utf-8")
        if self._fd is None:
            self._fd = self._create()
            # Closed by `close`, or when the log is dropped (a run that stopped on an exception).
            self._closer = weakref.finalize(self, os.close, self._fd)
        written = os.write(self._fd, line)
        while written < len(line):  # a short write (signal, nearly full disk): write the rest
            written += os.write(self._fd, line[written:])

    def _create(self) -> int:
        """Create the log, moving to the next attempt number while the file exists: another run started
        in this run directory before this one logged anything may have taken the number, and a higher
        number still sorts after every earlier attempt."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                rank, attempt = _LOG_NAME.match(self.path.name).groups()
                self.path = self.path.with_name(log_name(int(rank), int(attempt) + 1))

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer, self._fd = None, None


def read_records(paths: list[Path], keys: Collection[str] | None = None,
                 unparsable: list[str] | None = None) -> Iterator[dict]:
    """The records of the logs ``paths``, in order; with ``keys``, only those of these job keys.

    Lines that do not parse as a JSON object (a torn last line of a killed process, a damaged file) are
    skipped, as are unreadable files; ``unparsable``, when given, receives ``file:line`` of each (lines
    left out by ``keys`` are not parsed, so not checked).
    """
    for path in paths:
        try:
            handle = open(path, "rb")
        except OSError:
            if unparsable is not None:
                unparsable.append(str(path))
            continue
        with handle:
            for number, line in enumerate(handle, start=1):
                if keys is not None:
                    found = _KEY_FIELD.search(line)
                    if found is None or found.group(1).decode("utf-8", errors="replace") not in keys:
                        continue
                record = _parse(line)
                if record is not None:
                    yield record
                elif unparsable is not None:
                    unparsable.append(f"{path}:{number}")


def _parse(line: bytes) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return record if isinstance(record, dict) else None


def latest_records(paths: list[Path], keys: Collection[str] | None = None) -> dict[str, dict]:
    """The last valid record of each job key in the logs ``paths`` (only ``keys`` when given)."""
    latest: dict[str, dict] = {}
    for record in read_records(paths, keys):
        key = record.get("job_key")
        if isinstance(key, str):
            latest[key] = record
    return latest


def latest_by_job(paths: list[Path], unparsable: list[str] | None = None) -> dict[tuple[str, str, str], dict]:
    """The last valid record of each (method, case, image id) in the logs ``paths``, whatever its key
    (for rebuilding rows without the run's inputs, which the keys would be checked against);
    ``unparsable`` as for `read_records`."""
    latest: dict[tuple[str, str, str], dict] = {}
    for record in read_records(paths, unparsable=unparsable):
        job = (record.get("method"), record.get("case"), record.get("image_id"))
        if all(isinstance(part, str) for part in job):
            latest[job] = record
    return latest
