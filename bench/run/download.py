"""Moving released files onto this machine: resumable HTTP, a mirror, Google Drive, safe unpacking.

Every official source can be replaced by a mirror (``RELAMA_BENCH_MIRROR``): a base URL or a local
directory holding ``<method>/<file name>`` for each released file (`methods.releases`), for clusters
without internet. HTTP downloads resume from a partial ``.part`` file with a ``Range`` request, retry
a dropped connection a few times, and refuse a body shorter or longer than the server declared.
Archives are unpacked only when no member could land outside the target folder.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import shutil
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from methods.releases import GDRIVE_FILE, GDRIVE_FOLDER, HTTP, ReleasedFile

#: Environment variable naming a base URL or a directory that replaces every official source.
MIRROR_ENV = "RELAMA_BENCH_MIRROR"
#: Tries of one HTTP download (each resumes where the last stopped).
ATTEMPTS = 4
#: Seconds without data before a connection counts as dropped.
TIMEOUT_S = 60
#: Most bytes an archive may unpack to (a guard against archive bombs; the largest release is ~3 GB).
MAX_UNPACKED_BYTES = 20 * 1024**3
_BLOCK = 1 << 20


class DownloadError(RuntimeError):
    """A transfer or an unpacking failed; the message is one sentence naming the file and the fix."""


class DownloadRefused(DownloadError):
    """A complete download failed a check (length, digest, archive, loader) and was deleted."""


@dataclass(frozen=True)
class Source:
    """Where one released file is taken from: ``kind`` is ``http``, ``directory`` or ``gdrive``."""

    kind: str
    location: str
    released: ReleasedFile

    def describe(self) -> str:
        if self.kind == "directory":
            return f"mirror directory {self.location}"
        return self.location if self.kind == HTTP else self.released.official_location()


def source_for(method: str, released: ReleasedFile, mirror: str | None = None) -> Source:
    """The source of ``released``: the mirror (argument, else ``RELAMA_BENCH_MIRROR``) or the official one."""
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    if mirror:
        relative = f"{method}/{released.name}"
        if re.match(r"^https?://", mirror):
            return Source(HTTP, mirror.rstrip("/") + "/" + urllib.parse.quote(relative), released)
        return Source("directory", str(Path(mirror).expanduser() / relative), released)
    if released.scheme == HTTP:
        return Source(HTTP, released.url, released)
    return Source("gdrive", released.url, released)


def _is_disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _total_from_content_range(header: str | None) -> tuple[int, int | None] | None:
    match = re.match(r"^bytes (\d+)-\d+/(\d+|\*)$", (header or "").strip())
    if match is None:
        return None
    return int(match.group(1)), (None if match.group(2) == "*" else int(match.group(2)))


def _http_attempt(url: str, part: Path, label: str, progress: bool) -> tuple[int, int | None]:
    """One request: append to ``part`` from its current length; return (bytes now in part, declared total)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "relama-bench"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:
            # The range starts at or past the end: the partial file is complete or longer than the file.
            total = _total_from_content_range(error.headers.get("Content-Range"))
            return have, (total[1] if total else None)
        raise
    with response:
        total: int | None
        if have and response.status == 206:
            declared = _total_from_content_range(response.headers.get("Content-Range"))
            if declared is None or declared[0] != have:
                raise DownloadError(f"{url} answered a resume request with an unexpected range "
                                    f"({response.headers.get('Content-Range')!r}); delete {part} and try again")
            total, mode = declared[1], "ab"
        else:
            length = response.headers.get("Content-Length")
            total, mode, have = (int(length) if length and length.isdigit() else None), "wb", 0
        with open(part, mode) as output, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                              unit_divisor=1024, desc=label, disable=not progress,
                                              leave=False) as bar:
            for block in iter(lambda: response.read(_BLOCK), b""):
                output.write(block)
                bar.update(len(block))
    return part.stat().st_size, total


def http_download(url: str, part: Path, *, label: str = "", progress: bool = True,
                  attempts: int = ATTEMPTS) -> Path:
    """Download ``url`` into ``part``, resuming whatever ``part`` already holds.

    A dropped connection (an error, or fewer bytes than the server declared) is retried from where
    it stopped, up to ``attempts`` requests. A body longer than declared is discarded.

    Raises
    ------
    DownloadError
        The server refused, the tries ran out (the partial file is kept, so the next call resumes),
        or the disk is full.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    problem = "no attempt made"
    for _ in range(max(1, attempts)):
        try:
            size, total = _http_attempt(url, part, label, progress)
        except urllib.error.HTTPError as error:
            raise DownloadError(f"{url} answered HTTP {error.code} ({error.reason}); check the URL or the mirror") from None
        except OSError as error:
            if _is_disk_full(error):
                raise DownloadError(f"no space left while writing {part}: free some space and run the command again") from None
            problem = f"{type(error).__name__}: {error}"
            continue
        except http.client.HTTPException as error:
            problem = f"{type(error).__name__}: {error}"
            continue
        if total is None or size == total:
            return part
        if size > total:
            part.unlink()
            problem = f"received {size} bytes but the server declared {total}"
            continue
        problem = f"connection closed after {size} of {total} bytes"
    held = part.stat().st_size if part.exists() else 0
    raise DownloadError(f"downloading {url} failed ({problem}); the {held} bytes received are kept in {part} and "
                        "the next run of the same command resumes from there")


def copy_from_directory(source: Path, part: Path, *, label: str = "", progress: bool = True) -> Path:
    """Copy a mirror directory's file into ``part`` with a progress bar."""
    if not source.is_file():
        raise DownloadError(f"the mirror has no {source}: put the released file there or unset {MIRROR_ENV}")
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(source, "rb") as reader, open(part, "wb") as writer, tqdm(
                total=source.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                disable=not progress, leave=False) as bar:
            for block in iter(lambda: reader.read(_BLOCK), b""):
                writer.write(block)
                bar.update(len(block))
    except OSError as error:
        if _is_disk_full(error):
            raise DownloadError(f"no space left while writing {part}: free some space and run the command again") from None
        raise DownloadError(f"cannot copy {source} from the mirror ({error.strerror or error})") from None
    return part


def gdrive_download(released: ReleasedFile, part: Path, *, progress: bool = True) -> Path:
    """Fetch a Google Drive file, or a named file of a Drive folder, with gdown (confirmation page, resume)."""
    import gdown

    part.parent.mkdir(parents=True, exist_ok=True)
    file_id = released.url
    try:
        if released.scheme == GDRIVE_FOLDER:
            listing = gdown.download_folder(id=released.url, skip_download=True, quiet=True)
            matches = [item for item in listing or [] if Path(item.path).name == released.folder_member]
            if len(matches) != 1:
                raise DownloadError(f"the Google Drive folder {released.official_location()} does not hold exactly one "
                                    f"{released.folder_member}: check the authors' page or use {MIRROR_ENV}")
            file_id = matches[0].id
        elif released.scheme != GDRIVE_FILE:
            raise DownloadError(f"{released.name} is not a Google Drive file")
        result = gdown.download(id=file_id, output=str(part), quiet=not progress, resume=True)
    except DownloadError:
        raise
    except Exception as error:  # gdown raises its own, requests' and OSError subclasses
        raise DownloadError(f"Google Drive download of {released.official_location()} failed "
                            f"({type(error).__name__}: {error}); try again later or use {MIRROR_ENV}") from None
    if result is None or not part.is_file():
        raise DownloadError(f"Google Drive did not deliver {released.official_location()}; try again later or use "
                            f"{MIRROR_ENV}")
    return part


def transfer(source: Source, part: Path, *, progress: bool = True) -> Path:
    """Bring ``source`` into ``part`` by whichever route its kind needs."""
    label = source.released.name
    if source.kind == HTTP:
        return http_download(source.location, part, label=label, progress=progress)
    if source.kind == "directory":
        return copy_from_directory(Path(source.location), part, label=label, progress=progress)
    return gdrive_download(source.released, part, progress=progress)


# ------------------------------------------------------------------------------------------ unpacking

def _safe_relative(name: str, archive: Path) -> Path:
    relative = Path(name)
    if name in (".", "./"):  # the archive's own top folder, as `tar -C dir .` writes it
        return relative
    if (not relative.parts or relative.is_absolute() or name.startswith(("/", "\\")) or ".." in relative.parts
            or ":" in relative.parts[0]):
        raise DownloadError(f"{archive.name} has a member {name!r} that would land outside the target folder; "
                            "refusing to unpack it")
    return relative


def unpack(archive: Path, destination: Path) -> None:
    """Unpack a zip or tar ``archive`` into ``destination``, refusing path traversal and links.

    Raises
    ------
    DownloadError
        Not an archive, a member outside ``destination`` (absolute path, ``..``, link), too large
        in total, or a disk that fills up.
    """
    destination.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as opened:
                members = opened.infolist()
                for member in members:
                    _safe_relative(member.filename, archive)
                    if stat.S_ISLNK(member.external_attr >> 16):
                        raise DownloadError(f"{archive.name} holds a link {member.filename!r}; refusing to unpack it")
                if sum(member.file_size for member in members) > MAX_UNPACKED_BYTES:
                    raise DownloadError(f"{archive.name} would unpack to more than {MAX_UNPACKED_BYTES} bytes; refusing it")
                for member in members:
                    target = destination / _safe_relative(member.filename, archive)
                    if member.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with opened.open(member) as reader, open(target, "wb") as writer:
                        shutil.copyfileobj(reader, writer, _BLOCK)
            return
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as opened:
                members = opened.getmembers()
                for member in members:
                    _safe_relative(member.name, archive)
                    if not (member.isfile() or member.isdir()):
                        raise DownloadError(f"{archive.name} holds {member.name!r}, which is not a regular file or "
                                            "folder; refusing to unpack it")
                if sum(member.size for member in members) > MAX_UNPACKED_BYTES:
                    raise DownloadError(f"{archive.name} would unpack to more than {MAX_UNPACKED_BYTES} bytes; refusing it")
                opened.extractall(destination, filter="data")
            return
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise DownloadRefused(f"{archive.name} is a damaged archive ({error}); it is deleted so the next fetch "
                            "downloads it again") from None
    except OSError as error:
        if _is_disk_full(error):
            raise DownloadError(f"no space left while unpacking {archive.name} into {destination}: free some space "
                                "and run the command again") from None
        raise
    raise DownloadRefused(f"{archive.name} is neither a zip nor a tar archive; it is deleted so the next fetch downloads "
                        "it again")
