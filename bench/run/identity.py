"""Content identity of cached artefacts: a cached result is valid only for what it was computed from.

A job's key (`JobIdentity.key`) is the SHA-256 of everything that can change its result: the
prepared image's pixels, the hole mask's pixels, the method, its options, the content of its weights,
the device kind it runs on, the job seed, the number of samples and the versions of the libraries
that compute it. A finished job's record stores its key, and a rerun reuses the record only when the
key is unchanged; so a changed input recomputes exactly the jobs it feeds, and an unchanged one
recomputes nothing.

Weights files can be large, so `ContentDigests` confirms their content with SHA-256 only when a
cheap pre-check (size, modification and change times, inode) differs from the last time it looked;
the pre-check results are kept in the run directory, and digests are memoised for the process.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: Bumped when the meaning of a key changes, so that older records are recomputed.
IDENTITY_VERSION = 1
_CHUNK = 1 << 20


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and values (hex)."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode("ascii"))
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_signature(path: Path) -> list[int]:
    status = path.stat()
    # The change time cannot be set back by cp -p or touch -r, so it catches a replaced file whose size
    # and modification time were preserved.
    return [status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino]


class ContentDigests:
    """SHA-256 of files and folders, with a stat pre-check persisted in ``store``.

    Parameters
    ----------
    store : Path
        JSON file mapping an absolute path to ``[stat signature, sha256]``; read if present, rewritten
        by `save`.
    write : callable, optional
        ``write(path, payload)`` used by `save` (the run directory's atomic JSON writer).
    """

    def __init__(self, store: Path, write: Callable[[Path, Any], None] | None = None) -> None:
        self.store = store
        self._write = write
        self._known: dict[str, list] = {}
        if store.is_file():
            try:
                loaded = json.loads(store.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                loaded = {}
            if isinstance(loaded, dict):
                self._known = loaded
        self._memo: dict[str, str] = {}
        self._changed = False

    def file(self, path: Path | str) -> str:
        """SHA-256 of one file's bytes (hex)."""
        absolute = str(Path(path).absolute())
        if absolute in self._memo:
            return self._memo[absolute]
        signature = _stat_signature(Path(absolute))
        known = self._known.get(absolute)
        if isinstance(known, list) and len(known) == 2 and known[0] == signature:
            sha = known[1]
        else:
            sha = _file_sha256(Path(absolute))
            self._known[absolute] = [signature, sha]
            self._changed = True
        self._memo[absolute] = sha
        return sha

    def path(self, path: Path | str) -> str:
        """SHA-256 of a file, or of a folder's regular files (relative names and contents, sorted)."""
        path = Path(path)
        if not path.is_dir():
            return self.file(path)
        digest = hashlib.sha256()
        for root, folders, files in os.walk(path, followlinks=True):
            folders.sort()
            for name in sorted(files):
                member = Path(root) / name
                if member.is_file():
                    digest.update(f"{member.relative_to(path).as_posix()}\0{self.file(member)}\n".encode("utf-8"))
        return digest.hexdigest()

    def save(self) -> None:
        """Persist the pre-check table when it changed."""
        if self._changed and self._write is not None:
            self._write(self.store, self._known)
            self._changed = False


@dataclass(frozen=True)
class JobIdentity:
    """Everything that determines one job's result; `key` is its content address.

    ``image`` and ``mask`` are `array_digest` values of the prepared image and hole mask;
    ``weights`` the digest of the weights the method loads (``None`` when it loads none);
    ``device`` the kind of device the method computes on; ``software`` the versions of the
    packages that compute it; ``ssim`` the SSIM convention the record's scores use.
    """

    method: str
    case: str
    image_id: str
    image: str
    mask: str
    weights: str | None
    device: str
    seed: int
    samples: int
    options: dict[str, Any] = field(default_factory=dict)
    software: dict[str, str] = field(default_factory=dict)
    ssim: str = "lama"

    def key(self) -> str:
        """SHA-256 (hex) of the identity, stable across processes and machines."""
        payload = {"version": IDENTITY_VERSION, **asdict(self)}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=repr)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
