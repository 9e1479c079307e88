"""The deep methods' released weights in the suite's cache: fetch once, verify on every use.

``relama-bench weights fetch METHOD`` downloads the released files named by the ``release`` of the
method's weights record (`methods.weights_record`, `methods.releases`) into
``<cache>/methods/<method>/`` (the cache is ``RELAMA_CACHE_DIR``, default ``~/.cache/relama-bench``),
unpacks archives, and accepts them only when

* each download is as long as the server declared (and as published, where a size is published),
  and matches the published sha256 where there is one;
* the files the method needs are there; and
* the method's loader reads them strictly (every key and shape).

It then records each file's size and sha256 in ``<cache>/methods/<method>/fetched.json``. Every
later use (`fetched_weights`, which ``relama-bench run`` calls for a method given no ``--weights``)
hashes the files again and refuses them when anything changed. A download that fails a check is
deleted and fetched once more before the command gives up.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from bench.metrics.backbones import WeightsLocations, file_sha256
from bench.run.download import DownloadError, DownloadRefused, source_for, transfer, unpack
from methods.registry import create_method, get_method_class, list_methods
from methods.releases import Release
from methods.weights_record import WeightsRecord

#: Name of the record written beside a method's fetched files.
RECORD_NAME = "fetched.json"
#: How often a download that fails its checks is fetched again from scratch.
REFETCHES = 1

LoaderCheck = Callable[[str, Path], None]


class FetchedWeightsChanged(RuntimeError):
    """Fetched files differ from what was recorded when they were fetched; the message says the fix."""


def methods_cache(cache_dir: Path | None = None) -> Path:
    """``<cache>/methods``: where fetched method weights live."""
    return (cache_dir or WeightsLocations.from_environment().cache_dir) / "methods"


def fetchable() -> dict[str, WeightsRecord]:
    """Registered methods whose weights record has a release, by name, in registry order."""
    records = {name: get_method_class(name).weights_record for name in list_methods()}
    return {name: record for name, record in records.items() if record is not None and record.release is not None}


def get_record(method: str) -> WeightsRecord:
    """The weights record of ``method``; ``KeyError`` names the methods that have a release."""
    records = fetchable()
    try:
        return records[method]
    except KeyError:
        raise KeyError(f"{method!r} has no released weights to fetch; methods with one: {', '.join(records)}") from None


def fetch_command(method: str) -> str:
    return f"relama-bench weights fetch {method}"


@dataclass(frozen=True)
class FetchedState:
    """What the cache holds for one method.

    ``state`` is ``fetched`` (record present; with ``verified`` the files were hashed and match),
    ``missing`` (nothing fetched) or ``changed`` (a recorded file is gone or differs; ``detail`` says which).
    """

    method: str
    state: str
    folder: Path
    weights: Path | None
    files: dict[str, dict]
    detail: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(int(item["size"]) for item in self.files.values())


_hash_memo: dict[tuple[str, int, int, int], str] = {}


def cached_file_sha256(path: Path) -> str:
    """sha256 of ``path``, memoised for this process by (path, size, mtime, ctime)."""
    info = path.stat()
    key = (str(path.resolve()), info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    if key not in _hash_memo:
        _hash_memo[key] = file_sha256(path)
    return _hash_memo[key]


def read_state(method: str, cache_dir: Path | None = None, *, verify: bool = True) -> FetchedState:
    """The cache's state for ``method``; with ``verify`` every recorded file's size and sha256 is checked."""
    release = get_record(method).release
    folder = methods_cache(cache_dir) / method
    record_path = folder / RECORD_NAME
    if not record_path.is_file():
        return FetchedState(method, "missing", folder, None, {})
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        files = {str(name): dict(item) for name, item in record["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return FetchedState(method, "changed", folder, None, {}, f"{record_path} is unreadable")
    weights = folder / release.weights
    for name, item in files.items():
        path = folder / name
        if not path.is_file():
            return FetchedState(method, "changed", folder, weights, files, f"{path} is gone")
        if path.stat().st_size != int(item["size"]):
            return FetchedState(method, "changed", folder, weights, files,
                                f"{path} is {path.stat().st_size} bytes, {item['size']} when fetched")
        if verify and cached_file_sha256(path) != item["sha256"]:
            return FetchedState(method, "changed", folder, weights, files,
                                f"{path} no longer has the sha256 recorded when it was fetched")
    return FetchedState(method, "fetched", folder, weights, files)


def fetched_weights(method: str, cache_dir: Path | None = None) -> Path | None:
    """What ``--weights method=...`` would take from the cache, verified; None when nothing is fetched.

    Raises
    ------
    FetchedWeightsChanged
        The fetched files changed since they were fetched (the message names the file and the fix).
    """
    if method not in fetchable():
        return None
    state = read_state(method, cache_dir)
    if state.state == "missing":
        return None
    if state.state == "changed":
        raise FetchedWeightsChanged(f"the fetched {method} weights changed since they were fetched ({state.detail}): "
                                    f"run `{fetch_command(method)}` to fetch them again")
    return state.weights


def registered_loader_check(method: str, weights: Path) -> None:
    """Build ``method`` from ``weights`` with its strict loader (every key and shape must match)."""
    create_method(method, weights)


def _clear(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _download_all(method: str, release: Release, staging: Path, *, mirror: str | None, progress: bool,
                  log: Callable[[str], None]) -> Path:
    """Download every file of ``release`` into ``staging/downloads`` and unpack into ``staging/tree``."""
    downloads, tree = staging / "downloads", staging / "tree"
    _clear(tree)
    for released in release.files:
        source = source_for(method, released, mirror)
        part = downloads / (released.name + ".part")
        log(f"{method}: fetching {released.name} from {source.describe()}")
        transfer(source, part, progress=progress)
        size = part.stat().st_size
        if released.size is not None and size != released.size:
            part.unlink()
            raise DownloadRefused(f"{released.name} is {size} bytes, the authors publish {released.size}; it was deleted")
        if released.sha256 is not None:
            actual = file_sha256(part)
            if actual != released.sha256:
                part.unlink()
                raise DownloadRefused(f"{released.name} has sha256 {actual}, the authors publish {released.sha256}; "
                                    "it was deleted")
        if released.unpack:
            try:
                unpack(part, tree)
            except DownloadError:
                part.unlink()
                raise
            part.unlink()
        else:
            target = tree / released.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, target)
    missing = [name for name in release.expected if not (tree / name).is_file()]
    if missing:
        raise DownloadRefused(f"the {method} download lacks {', '.join(missing)}; the source may have changed "
                              "its layout")
    return tree


def _record(method: str, record: WeightsRecord, tree: Path, mirror: str | None) -> dict:
    files = {}
    for path in sorted(item for item in tree.rglob("*") if item.is_file()):
        files[path.relative_to(tree).as_posix()] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    return {
        "method": method,
        "weights": record.release.weights,
        "page": record.files[0].source,
        "licence": record.files[0].licence,
        "sources": [source_for(method, released, mirror).describe() for released in record.release.files],
        "fetched": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }


def fetch_method(method: str, cache_dir: Path | None = None, *, mirror: str | None = None, force: bool = False,
                 progress: bool = True, loader_check: LoaderCheck | None = None,
                 log: Callable[[str], None] = lambda message: None) -> FetchedState:
    """Fetch ``method``'s released weights into the cache unless they are there and unchanged.

    Parameters
    ----------
    method : str
        A registered method whose weights record has a release (`fetchable`).
    cache_dir : Path, optional
        The suite's cache (default: ``RELAMA_CACHE_DIR`` or ``~/.cache/relama-bench``).
    mirror : str, optional
        Base URL or directory replacing the official sources (default: ``RELAMA_BENCH_MIRROR``).
    force : bool
        Fetch again even when the cached files are intact.
    loader_check : callable, optional
        ``loader_check(method, weights_path)`` raises when the files do not load strictly (default:
        `registered_loader_check`).

    Raises
    ------
    DownloadError
        A transfer failed, or the download failed its checks twice; one sentence says why.
    """
    record = get_record(method)
    release = record.release
    loader_check = loader_check or registered_loader_check
    root = methods_cache(cache_dir)
    state = read_state(method, cache_dir)
    if state.state == "fetched" and not force:
        log(f"{method}: present in {state.folder} (sha256 verified)")
        return state
    if state.state == "changed":
        log(f"{method}: cached files changed since they were fetched ({state.detail}); fetching them again")
    staging = root / f".{method}.partial"
    for attempt in range(REFETCHES + 1):
        try:
            tree = _download_all(method, release, staging, mirror=mirror, progress=progress, log=log)
            try:
                loader_check(method, tree / release.weights)
            except Exception as error:  # any loader failure means the files are not the release
                raise DownloadRefused(f"the downloaded {method} weights do not load ({error})") from None
        except DownloadRefused as error:
            # A completed download that failed a check has been deleted and is fetched once more from
            # scratch; a transfer error (DownloadError) keeps its partial file for the next run to resume.
            if attempt < REFETCHES:
                log(f"{method}: {error}; fetching it again")
                _clear(staging / "tree")
                continue
            raise
        break
    written = _record(method, record, tree, mirror)
    (tree / RECORD_NAME).write_text(json.dumps(written, indent=2, sort_keys=True), encoding="utf-8")
    target = root / method
    _clear(target)
    os.replace(tree, target)
    _clear(staging)
    fetched = read_state(method, cache_dir)
    log(f"{method}: {len(written['files'])} file(s), {fetched.total_bytes} bytes, verified and cached in {target}")
    return fetched
