"""Named datasets: the cache folder, checksums, downloads and helpful errors."""

from __future__ import annotations

import gzip
import hashlib
import re

import pytest

from deepmat.data import registry
from deepmat.errors import DataError, DataNotFoundError

CSV = b"formula,target\nFe2O3,-1.5\nNaCl,-2.0\nFe4O6,-2.5\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty read-only data dir in DEEPMAT_DATA_DIR and an empty DEEPMAT_CACHE_DIR."""
    root = tmp_path / "cache"
    monkeypatch.setenv(registry.ENV_VAR, str(root))
    monkeypatch.setenv("DEEPMAT_CACHE_DIR", str(tmp_path / "user-cache"))
    registry.verify_checksum.cache_clear()
    yield root
    registry.verify_checksum.cache_clear()


def local_dataset(source_path, sha256: str, relpath: str = "custom/data.csv.gz"):
    entry = registry.DatasetFile(relpath, sha256, source_path.as_uri())
    dataset = registry.Dataset(
        name="custom", description="test data", files={"all": entry}, source="a test"
    )
    return entry, dataset


def test_data_dir_follows_environment(cache):
    assert registry.data_dir() == cache


def test_data_dir_default_is_user_cache(monkeypatch):
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    monkeypatch.delenv("DEEPMAT_CACHE_DIR", raising=False)
    assert registry.data_dir().parts[-2:] == ("deepmat", "data")


def test_missing_file_without_download(cache):
    with pytest.raises(DataNotFoundError) as info:
        registry.dataset_path("oqmd-dhf", "train", download=False)
    message = str(info.value)
    assert "composition/oqmd_dhf/train.csv.gz" in message
    assert "DEEPMAT_DATA_DIR" in message
    assert str(cache / "composition/oqmd_dhf/train.csv.gz") in message
    assert "https://" in message  # where to download it
    assert isinstance(info.value, FileNotFoundError)


def test_missing_file_without_url_names_source(cache):
    with pytest.raises(DataNotFoundError, match=r"obtain it from qmpy 1\.4\.0 package data"):
        registry.dataset_path("ssub-dhf")


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DataError, match=r"unknown dataset 'oqmd'; known: ") as info:
        registry.dataset_path("oqmd")
    for name in ("oqmd-dhf", "mp-transport", "matbench-mp-gap", "ssub-dhf"):
        assert name in str(info.value)


def test_unknown_split():
    with pytest.raises(DataError, match=r"dataset 'oqmd-dhf' has splits \['train', 'val'\]"):
        registry.dataset_path("oqmd-dhf", "test")


def test_checksum_mismatch(cache):
    path = cache / "composition/oqmd_dhf/val.csv.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wb") as handle:
        handle.write(CSV)
    wrong = hashlib.sha256(CSV).hexdigest()
    with pytest.raises(DataError, match=f"checksum mismatch \\(sha256 of the content is {wrong}"):
        registry.dataset_path("oqmd-dhf", "val", download=False)
    with pytest.raises(DataError, match="delete the file to fetch it again"):
        registry.load_dataset("oqmd-dhf", "val")


def test_checksum_is_of_decompressed_bytes(tmp_path):
    registry.verify_checksum.cache_clear()
    plain, packed = tmp_path / "a.csv", tmp_path / "a.csv.gz"
    plain.write_bytes(CSV)
    packed.write_bytes(gzip.compress(CSV))
    sha = hashlib.sha256(CSV).hexdigest()
    registry.verify_checksum(plain, sha)
    registry.verify_checksum(packed, sha)
    with pytest.raises(DataError, match="checksum mismatch"):
        registry.verify_checksum(plain, "0" * 64)


def test_download_from_file_url(tmp_path, cache):
    source = tmp_path / "source.csv"
    source.write_bytes(CSV)
    sha = hashlib.sha256(CSV).hexdigest()
    entry, dataset = local_dataset(source, sha)
    target = cache / entry.relpath
    registry._download(entry, target, dataset)
    assert target.exists()
    assert not target.with_name(target.name + ".part").exists()
    assert gzip.decompress(target.read_bytes()) == CSV  # stored gzipped, as named
    registry.verify_checksum(target, sha)


def test_download_of_gzipped_url_to_plain_name(tmp_path, cache):
    source = tmp_path / "source.csv.gz"
    source.write_bytes(gzip.compress(CSV))
    sha = hashlib.sha256(CSV).hexdigest()
    entry, dataset = local_dataset(source, sha, relpath="custom/data.csv")
    target = cache / entry.relpath
    registry._download(entry, target, dataset)
    assert target.read_bytes() == CSV
    registry.verify_checksum(target, sha)


def test_failed_download_leaves_nothing(tmp_path, cache):
    entry, dataset = local_dataset(tmp_path / "absent.csv", "0" * 64)
    target = cache / entry.relpath
    with pytest.raises(DataNotFoundError, match="fetch failed"):
        registry._download(entry, target, dataset)
    assert list(target.parent.iterdir()) == []


def test_named_dataset_downloads_and_loads(tmp_path, cache, monkeypatch):
    source = tmp_path / "source.csv"
    source.write_bytes(CSV)
    _, dataset = local_dataset(source, hashlib.sha256(CSV).hexdigest())
    monkeypatch.setitem(registry.DATASETS, "custom", dataset)
    with pytest.raises(DataNotFoundError):
        registry.dataset_path("custom", download=False)
    table = registry.load_dataset("custom")
    assert (registry.download_dir() / "custom/data.csv.gz").exists()  # not in the data dir
    assert not (cache / "custom/data.csv.gz").exists()
    assert table.formulas == ["Fe2O3", "NaCl"]
    assert table.targets.tolist() == [-2.0, -2.0]
    assert table.report.duplicates_merged == 1
    assert len(registry.load_dataset("custom", duplicates="keep")) == 3


def test_mp_transport_from_matminer_package(cache):
    path = registry.dataset_path("mp-transport")
    assert path == registry.download_dir() / "composition/mp_transport/transport_database.csv.gz"
    table = registry.load_dataset("mp-transport")
    assert len(table) > 30_000
    assert table.report.duplicates_merged > 0
    assert table.report.rows_kept == len(table)
    assert re.search(
        r"\d+ rows read, \d+ kept, \d+ duplicate rows averaged", table.report.summary()
    )


def test_oqmd_val_from_shared_data(shared_data):
    table = registry.load_dataset("oqmd-dhf", "val")
    assert len(table) == 51255
    assert table.report.rows_read == 51255
    assert not table.report.dropped


def test_oqmd_train_path_from_shared_data(shared_data):
    path = registry.dataset_path("oqmd-dhf", "train", download=False)
    assert path == shared_data / "composition/oqmd_dhf/train.csv.gz"
