"""Where a method's released weights are published, and how they are laid out once fetched.

A `Release` is the ``release`` field of a method's weights record (`methods.weights_record`): the
files its authors publish (official URL or Google Drive id, published size and sha256 when there is
one), how a download is unpacked, and which path of the fetched folder ``--weights METHOD=...``
takes. ``relama-bench weights fetch METHOD`` reads it; the download itself lives in the harness
(``bench/run/fetch.py``), so this module holds data types only.

None of today's authors publishes a size or a digest for their files. A fetched file is therefore
verified by the declared length of its download and the loader's strict key/shape check, and its
sha256 is recorded at that moment and checked on every later use.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Schemes of `ReleasedFile.url`.
HTTP = "http"
GDRIVE_FILE = "gdrive-file"
GDRIVE_FOLDER = "gdrive-folder"


@dataclass(frozen=True)
class ReleasedFile:
    """One published download.

    Parameters
    ----------
    name : str
        The download's file name, and its path under ``<mirror>/<method>/`` when a mirror replaces
        the official sources (may contain ``/`` to keep a folder layout).
    scheme : {"http", "gdrive-file", "gdrive-folder"}
        ``http``: ``url`` is fetched directly (resumable with HTTP Range). ``gdrive-file``: ``url`` is a
        Google Drive file id. ``gdrive-folder``: ``url`` is a Google Drive folder id and the file called
        ``folder_member`` inside it is fetched.
    url : str
        The official URL or Drive id.
    unpack : bool
        The download is a zip or tar archive, unpacked into the method's folder and then deleted.
    folder_member : str
        With ``gdrive-folder``: the file's name inside the Drive folder.
    size : int or None
        Published size in bytes; None when the authors publish none.
    sha256 : str or None
        Published sha256; None when the authors publish none.
    """

    name: str
    scheme: str
    url: str
    unpack: bool = False
    folder_member: str = ""
    size: int | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.scheme not in (HTTP, GDRIVE_FILE, GDRIVE_FOLDER):
            raise ValueError(f"unknown download scheme {self.scheme!r}")
        if (self.scheme == GDRIVE_FOLDER) != bool(self.folder_member):
            raise ValueError("folder_member is set exactly for gdrive-folder downloads")

    def official_location(self) -> str:
        """The official source as a URL a person can open."""
        if self.scheme == GDRIVE_FILE:
            return f"https://drive.google.com/file/d/{self.url}"
        if self.scheme == GDRIVE_FOLDER:
            return f"https://drive.google.com/drive/folders/{self.url} ({self.folder_member})"
        return self.url


@dataclass(frozen=True)
class Release:
    """A method's released weights as the suite fetches them.

    The authors' page and the licence are the weights record's (`WeightsFile.source`, ``licence``).

    Parameters
    ----------
    files : tuple of ReleasedFile
        Downloads, in order.
    weights : str
        Path, relative to the method's fetched folder, that ``--weights METHOD=...`` takes.
    expected : tuple of str
        Paths, relative to the fetched folder, that must exist after downloading and unpacking; only
        these are kept and recorded.
    """

    files: tuple[ReleasedFile, ...]
    weights: str
    expected: tuple[str, ...]
