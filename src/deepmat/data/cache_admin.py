"""What deepmat's cache directory holds, and clearing it.

Everything deepmat writes for reuse lives in one folder per kind under
:func:`~deepmat.data.registry.cache_dir` (``data`` for downloaded and converted dataset
files, ``features``, ``graphs``, ``structures``, ``structure-keys`` for derived ones,
``weights`` for pretrained weights read out of registry packages).
Every entry can be rebuilt, so any kind can be cleared; ``$DEEPMAT_DATA_DIR``, the
read-only reference folder, is reported but never cleared.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from deepmat.data.registry import ENV_VAR, cache_dir, reference_dir
from deepmat.errors import ConfigError

KINDS = ("data", "features", "graphs", "structure-keys", "structures", "weights")
"""The kinds deepmat writes; others found under the cache directory are listed too."""


@dataclass(frozen=True)
class CacheEntry:
    """One folder of the cache: its kind, place, number of files and their total bytes."""

    name: str
    path: Path
    n_files: int
    n_bytes: int


def _entry(name: str, path: Path) -> CacheEntry:
    """Count the files under ``path`` (symbolic links are counted, never followed; a file
    that a concurrent writer renames away meanwhile is skipped)."""
    n_files = n_bytes = 0
    for folder, _, files in os.walk(path):
        for file in files:
            try:
                n_bytes += (Path(folder) / file).lstat().st_size
            except FileNotFoundError:
                continue
            n_files += 1
    return CacheEntry(name, path, n_files, n_bytes)


def cache_info() -> list[CacheEntry]:
    """One entry per kind under the cache directory: the known kinds (empty when absent)
    and any other folder found there, sorted by name."""
    root = cache_dir()
    found = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    return [_entry(name, root / name) for name in sorted(found | set(KINDS))]


def data_dir_info() -> CacheEntry | None:
    """The read-only ``$DEEPMAT_DATA_DIR`` as an entry, or None when it is unset."""
    reference = reference_dir()
    return None if reference is None else _entry(f"{ENV_VAR} (read-only)", reference)


def clear_cache(kind: str | None = None, *, dry_run: bool = False) -> int:
    """Delete the cached files of ``kind``, or of every kind; return the bytes freed (or,
    with ``dry_run``, that would be freed).

    Raises :class:`~deepmat.errors.ConfigError`, before deleting anything, for an unknown
    kind or for a folder that is not inside the cache directory or overlaps
    ``$DEEPMAT_DATA_DIR`` (say ``DEEPMAT_DATA_DIR`` is ``<cache dir>/data``).
    """
    entries = {entry.name: entry for entry in cache_info()}
    if kind is not None and kind not in entries:
        raise ConfigError(f"unknown cache kind {kind!r}; kinds: {', '.join(entries)}")
    chosen = [entries[kind]] if kind is not None else list(entries.values())
    for entry in chosen:
        _check_removable(entry.path)
    if not dry_run:
        for entry in chosen:
            if entry.path.is_dir():
                shutil.rmtree(entry.path)
    return sum(entry.n_bytes for entry in chosen)


def _check_removable(path: Path) -> None:
    """Refuse a folder outside the cache directory, a link, or one overlapping the
    read-only ``$DEEPMAT_DATA_DIR``."""
    root = cache_dir().resolve()
    target = path.resolve()
    if path.is_symlink() or target == root or not target.is_relative_to(root):
        raise ConfigError(f"refusing to clear {path}: it is not a folder inside {root}")
    reference = reference_dir()
    if reference is not None:
        held = reference.resolve()
        if held.is_relative_to(target) or target.is_relative_to(held):
            raise ConfigError(
                f"refusing to clear {path}: it overlaps {ENV_VAR} ({held}), which deepmat "
                "never modifies"
            )
