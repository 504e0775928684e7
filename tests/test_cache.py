"""Caches: atomic concurrent writes, the read-only data dir, and `deepmat cache`."""

from __future__ import annotations

import gzip
import hashlib
import multiprocessing
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepmat.cli import app
from deepmat.data import cache_info, clear_cache, registry
from deepmat.errors import ConfigError, DataNotFoundError

CSV = b"formula,target\nFe2O3,-1.5\nNaCl,-2.0\n"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache directory in DEEPMAT_CACHE_DIR, and DEEPMAT_DATA_DIR unset."""
    root = tmp_path / "cache"
    monkeypatch.setenv("DEEPMAT_CACHE_DIR", str(root))
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    registry.verify_checksum.cache_clear()
    yield root
    registry.verify_checksum.cache_clear()


@pytest.fixture
def reference(tmp_path, monkeypatch, cache) -> Path:
    """A read-only DEEPMAT_DATA_DIR holding one file (restored to writable afterwards)."""
    root = tmp_path / "reference"
    (root / "custom").mkdir(parents=True)
    (root / "custom/held.csv").write_bytes(CSV)
    for folder in (root / "custom", root):
        folder.chmod(0o555)
    monkeypatch.setenv(registry.ENV_VAR, str(root))
    yield root
    for folder in (root, root / "custom"):
        folder.chmod(0o755)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
    }


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.part*")]


def custom_dataset(monkeypatch, tmp_path, relpath: str, url: bool = True) -> registry.Dataset:
    """Register a dataset "custom" of one file, downloadable from a file:// URL."""
    source = tmp_path / "source.csv"
    source.write_bytes(CSV)
    entry = registry.DatasetFile(
        relpath, hashlib.sha256(CSV).hexdigest(), source.as_uri() if url else None
    )
    dataset = registry.Dataset(
        name="custom", description="test data", files={"all": entry}, source="a test"
    )
    monkeypatch.setitem(registry.DATASETS, "custom", dataset)
    return dataset


# --- through_cache: unique temporary names, atomic rename --------------------------------


@pytest.mark.parametrize("name", ["entry.npy", "entry"])
def test_concurrent_writers_of_one_entry(cache, name):
    """Both writers compute (neither finds the entry), write slowly at the same time and
    succeed; one valid file remains and no temporary file. np.save appends ``.npy`` to a
    name without it: the entry still lands at its own name."""
    path = cache / "features" / name
    value = np.arange(100_000, dtype=np.float64)
    both_missed = threading.Barrier(2)
    errors: list[BaseException] = []

    def save(array: np.ndarray, target: Path) -> None:
        np.save(target, array)
        time.sleep(0.1)  # hold the temporary file while the other writer writes its own

    def compute() -> np.ndarray:
        both_missed.wait(timeout=10)
        return value

    def worker() -> None:
        try:
            result = registry.through_cache(path, compute, save, np.load)
            np.testing.assert_array_equal(result, value)
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [p.name for p in path.parent.iterdir()] == [name]
    np.testing.assert_array_equal(np.load(path), value)
    assert registry.through_cache(path, pytest.fail, save, np.load).shape == value.shape


def _write_entry_in_process(path: str, start: float) -> None:
    """Run by each of two processes: compute the same entry and write it at ``start``."""

    def compute() -> np.ndarray:
        time.sleep(max(0.0, start - time.time()))
        return np.arange(50_000, dtype=np.float64)

    def save(array: np.ndarray, target: Path) -> None:
        np.save(target, array)
        time.sleep(0.1)

    registry.through_cache(Path(path), compute, save, np.load)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_concurrent_processes_write_one_entry(cache):
    path = cache / "features" / "entry.npy"
    context = multiprocessing.get_context("fork")  # spawn would re-import deepmat: slow
    start = time.time() + 0.5  # both processes miss the entry, then write together
    workers = [
        context.Process(target=_write_entry_in_process, args=(str(path), start)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert [p.name for p in path.parent.iterdir()] == ["entry.npy"]
    np.testing.assert_array_equal(np.load(path), np.arange(50_000, dtype=np.float64))


def test_failing_writer_leaves_no_temporary_file(cache):
    path = cache / "graphs" / "entry.npz"

    def save(_: object, target: Path) -> None:
        target.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        registry.through_cache(path, lambda: 1, save, np.load)
    assert list(path.parent.iterdir()) == []


def test_writer_that_writes_nothing_is_an_error(cache):
    path = cache / "features" / "entry.json"
    with pytest.raises(FileNotFoundError, match="wrote no file"):
        registry.through_cache(path, lambda: 1, lambda value, target: None, Path.read_text)
    assert list(path.parent.iterdir()) == []


# --- the read-only DEEPMAT_DATA_DIR ------------------------------------------------------


def test_download_goes_to_cache_not_data_dir(tmp_path, monkeypatch, reference, cache):
    custom_dataset(monkeypatch, tmp_path, "custom/fetched.csv.gz")
    before = snapshot(reference)
    path = registry.dataset_path("custom")
    assert path == cache / "data/custom/fetched.csv.gz"
    assert gzip.decompress(path.read_bytes()) == CSV
    assert snapshot(reference) == before
    assert registry.dataset_path("custom") == path  # found in the cache the second time
    assert leftovers(cache) == []


def test_data_dir_is_read_first(tmp_path, monkeypatch, reference, cache):
    custom_dataset(monkeypatch, tmp_path, "custom/held.csv")
    cached = cache / "data/custom/held.csv"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a stale copy")
    assert registry.dataset_path("custom") == reference / "custom/held.csv"
    assert registry.data_dir() == reference
    assert registry.dataset_dirs() == [reference, cache / "data"]


def test_missing_file_names_both_places(tmp_path, monkeypatch, reference, cache):
    custom_dataset(monkeypatch, tmp_path, "custom/absent.csv", url=False)
    with pytest.raises(DataNotFoundError) as info:
        registry.dataset_path("custom")
    message = str(info.value)
    assert str(reference / "custom/absent.csv") in message
    assert str(cache / "data/custom/absent.csv") in message
    assert "obtain it from a test" in message


def test_without_data_dir_files_live_in_the_cache(cache):
    assert registry.data_dir() == registry.download_dir() == cache / "data"
    assert registry.reference_dir() is None


# --- cache_info / clear_cache ------------------------------------------------------------


def fill(cache: Path) -> None:
    (cache / "features").mkdir(parents=True)
    (cache / "features/a.npy").write_bytes(b"x" * 100)
    (cache / "features/b.npy").write_bytes(b"x" * 20)
    (cache / "graphs/sub").mkdir(parents=True)
    (cache / "graphs/sub/c.npz").write_bytes(b"x" * 7)
    (cache / "extra").mkdir()
    (cache / "extra/d").write_bytes(b"x")


def test_cache_info_counts_each_kind(cache):
    assert {e.name: e.n_files for e in cache_info()}["features"] == 0  # no cache folder yet
    fill(cache)
    info = {e.name: e for e in cache_info()}
    assert {"data", "features", "graphs", "structures", "extra"} <= set(info)
    assert (info["features"].n_files, info["features"].n_bytes) == (2, 120)
    assert (info["graphs"].n_files, info["graphs"].n_bytes) == (1, 7)
    assert info["graphs"].path == cache / "graphs"
    assert info["structures"].n_files == 0


def test_clear_one_kind_then_all(cache):
    fill(cache)
    assert clear_cache("features", dry_run=True) == 120
    assert (cache / "features/a.npy").exists()
    assert clear_cache("features") == 120
    assert not (cache / "features").exists()
    assert (cache / "graphs/sub/c.npz").exists()
    assert clear_cache("features") == 0
    assert clear_cache() == 8
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_clear_unknown_kind_lists_kinds(cache):
    fill(cache)
    with pytest.raises(ConfigError, match=r"unknown cache kind 'feature'; kinds: .*features"):
        clear_cache("feature")
    with pytest.raises(ConfigError, match="unknown cache kind"):
        clear_cache("../cache")
    assert (cache / "features/a.npy").exists()


def test_clear_never_touches_data_dir_inside_cache(cache, monkeypatch):
    fill(cache)
    held = cache / "data" / "composition"
    held.mkdir(parents=True)
    (held / "x.csv").write_bytes(CSV)
    monkeypatch.setenv(registry.ENV_VAR, str(cache / "data"))
    for kind in ("data", None):
        with pytest.raises(ConfigError, match="DEEPMAT_DATA_DIR"):
            clear_cache(kind)
    assert (held / "x.csv").exists()
    assert (cache / "features/a.npy").exists()  # refused before deleting anything
    assert clear_cache("features") == 120


def test_clear_refuses_links_out_of_the_cache(cache, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep").write_bytes(b"x")
    cache.mkdir()
    os.symlink(outside, cache / "linked", target_is_directory=True)
    with pytest.raises(ConfigError, match="refusing to clear"):
        clear_cache("linked")
    assert (outside / "keep").exists()


# --- the CLI -----------------------------------------------------------------------------

WIDE = {"COLUMNS": "300"}  # rich would otherwise wrap the long tmp_path paths


def test_cli_cache_info(cache, reference):
    fill(cache)
    result = CliRunner().invoke(app, ["cache", "info"], env=WIDE)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if " features " in line)
    assert "2" in line.split() and str(cache / "features") in line
    assert "DEEPMAT_DATA_DIR (read-only)" in result.output
    assert str(reference) in result.output


def test_cli_cache_clear_asks_first(cache):
    fill(cache)
    runner = CliRunner()
    result = runner.invoke(app, ["cache", "clear", "features"], input="n\n", env=WIDE)
    assert result.exit_code == 1
    assert (cache / "features/a.npy").exists()
    result = runner.invoke(app, ["cache", "clear", "features"], input="y\n", env=WIDE)
    assert result.exit_code == 0, result.output
    assert "freed 120 bytes" in result.output
    assert not (cache / "features").exists()
    result = runner.invoke(app, ["cache", "clear", "--yes"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert not (cache / "graphs").exists()


def test_cli_cache_clear_unknown_kind(cache):
    result = CliRunner().invoke(app, ["cache", "clear", "nonsense", "--yes"], env=WIDE)
    assert result.exit_code == 2
    assert "unknown cache kind 'nonsense'" in result.output
    assert "features" in result.output
