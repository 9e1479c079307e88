"""One record per method's weights, in the spirit of timm's ``PretrainedCfg``.

A record says what a user passes to ``--weights METHOD=...`` (a file or a folder), the files it must
hold and where each comes from (the authors' page or URL, licence, published size and sha256 when
they publish one), and how the suite checks them. ``relama-bench list``, ``run``, ``weights`` and
``perf`` read it; `WeightsRecord.unavailable_reason` is the one place that decides whether a
method's weights are there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from methods.releases import Release

#: Folder of the weights that ship with the package (and their model cards).
SHIPPED_DIR = Path(__file__).resolve().parent / "data"

#: Written where the authors publish no size or digest.
NOT_PUBLISHED = "not published"


@dataclass(frozen=True)
class WeightsFile:
    """One file of a method's weights.

    Parameters
    ----------
    path : str
        Where the file sits inside the folder passed with ``--weights`` (``{variant}`` stands for a
        variant name); empty when ``--weights`` names the file itself.
    source : str
        The official place to get it: the authors' repository or download page.
    licence : str
        The licence the authors state for it, or that they state none.
    size : str
        Published size, or `NOT_PUBLISHED`.
    sha256 : str
        Published or pinned sha256, or `NOT_PUBLISHED`.
    """

    path: str
    source: str
    licence: str
    size: str = NOT_PUBLISHED
    sha256: str = NOT_PUBLISHED


@dataclass(frozen=True)
class WeightsRecord:
    """What a method's weights are and how ``--weights`` names them.

    Parameters
    ----------
    takes : {"file", "folder"}
        What ``--weights METHOD=...`` names.
    what : str
        One line a user recognises the weights by.
    files : tuple of WeightsFile
        The files; for a folder, paths relative to it.
    verification : str
        How the suite checks them when it loads them.
    variants : tuple of str
        Alternative file sets of a folder (``{variant}`` in the paths); one complete variant suffices.
    nested_folder : str
        A folder holding a sub-folder of this name is accepted in its place (the archive's top folder).
    shipped : str
        File name under `SHIPPED_DIR` used when ``--weights`` is not given; empty when nothing ships.
    release : Release, optional
        Where ``relama-bench weights fetch METHOD`` downloads the released files and how it lays them
        out; None when there is nothing published to fetch.
    """

    takes: str
    what: str
    files: tuple[WeightsFile, ...]
    verification: str
    variants: tuple[str, ...] = ()
    nested_folder: str = ""
    shipped: str = ""
    release: Release | None = None

    def __post_init__(self) -> None:
        if self.takes not in ("file", "folder"):
            raise ValueError(f"WeightsRecord.takes must be 'file' or 'folder', got {self.takes!r}")
        if not self.files:
            raise ValueError("a WeightsRecord lists at least one file")

    def default_path(self) -> Path | None:
        """The shipped file used without ``--weights``, or None when the method ships none."""
        return SHIPPED_DIR / self.shipped if self.shipped else None

    def root(self, folder: Path) -> Path:
        """The folder the file paths are relative to: ``folder`` or its `nested_folder` sub-folder."""
        nested = folder / self.nested_folder if self.nested_folder else None
        return nested if nested is not None and nested.is_dir() else folder

    def complete_variants(self, folder: Path) -> list[str]:
        """Variants (in declared order) whose every file is under ``folder``; ``[""]`` when the record
        has no variants and every file is there."""
        root = self.root(Path(folder))
        return [variant for variant in (self.variants or ("",))
                if all((root / file.path.format(variant=variant)).is_file() for file in self.files)]

    def expected_files(self) -> str:
        """The folder layout in words: ``a and b`` or ``a and b for one of X, Y``."""
        paths = " and ".join(file.path for file in self.files)
        return f"{paths} for one of {', '.join(self.variants)}" if self.variants else paths

    def unavailable_reason(self, method: str, weights: Path | None) -> str | None:
        """Why ``method`` cannot run with ``weights`` (None: the default), or None when it can."""
        if weights is None:
            weights = self.default_path()
            if weights is None:
                return f"weights missing: pass --weights {method}=PATH ({self.what})"
            if not weights.is_file():
                return f"weights file {weights} is missing; reinstall relama-bench (the package ships it)"
            return None
        weights = Path(weights)
        if self.takes == "file":
            if weights.is_dir():
                return (f"weights {weights} is a folder, not a file: pass --weights {method}=FILE, the checkpoint "
                        f"file itself ({self.what})")
            if not weights.is_file():
                return f"weights not found at {weights}: pass --weights {method}=FILE to an existing file ({self.what})"
            return None
        if not weights.is_dir():
            return (f"weights not found: {weights} is not a folder; pass --weights {method}=DIR, the folder "
                    f"holding {self.expected_files()}")
        if self.complete_variants(weights):
            return None
        root = self.root(weights)
        if not self.variants:
            missing = [file.path for file in self.files if not (root / file.path).is_file()]
            return (f"weights incomplete: {weights} has no {' and no '.join(missing)}; pass --weights {method}=DIR "
                    f"with {self.expected_files()}")
        for variant in self.variants:
            paths = [file.path.format(variant=variant) for file in self.files]
            present = [path for path in paths if (root / path).is_file()]
            if present:
                missing = [path for path in paths if path not in present]
                return (f"weights incomplete: {root} holds {' and '.join(present)} but no file "
                        f"{' and no file '.join(missing)}; add it")
        return f"weights incomplete: {weights} does not hold {self.expected_files()}"
