"""Named datasets: where each file comes from, its checksum, and where it is cached.

A dataset file is looked up first in ``$DEEPMAT_DATA_DIR`` when set, a reference folder
that deepmat only reads (it may be shared by several users or checkouts), then in
``<cache dir>/data``. Whatever deepmat writes (downloads, files converted from package
data such as matminer's, parsed caches) goes to the cache directory (``$DEEPMAT_CACHE_DIR``
or the user's cache), never to ``$DEEPMAT_DATA_DIR``. Both folders share the layout of
the project's reference-data folder (``composition/oqmd_dhf/train.csv.gz`` ...), so
``DEEPMAT_DATA_DIR=../shared/data`` serves a checkout with no network. Checksums are
SHA-256 of the *decompressed* bytes, so a file is valid whether it was fetched plain or
gzipped. Every cache write goes to a unique temporary name that is then renamed onto the
final one, so concurrent writers of one entry never see or leave a half-written file.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import platformdirs

from deepmat.data.composition import (
    CompositionTable,
    DuplicatePolicy,
    ErrorPolicy,
    read_composition_csv,
)
from deepmat.errors import DataError, DataNotFoundError

if TYPE_CHECKING:
    from deepmat.data.structures import StructureTable

ENV_VAR = "DEEPMAT_DATA_DIR"

_CRABNET = "https://raw.githubusercontent.com/anthony-wang/CrabNet/master/data"


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset: its place in the cache, checksum and download address."""

    relpath: str
    sha256: str
    url: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A named dataset: files per split, its columns, unit and provenance.

    ``kind`` is "composition" (a CSV with a formula column) or "structure": a CSV whose
    ``cif_column`` holds CIF text, or, with an ``archive`` of ``<id>.cif`` files, a CSV of
    ids and targets (CGCNN's layout). ``id_column`` names the records of a structure CSV.
    """

    name: str
    description: str
    files: dict[str, DatasetFile]
    source: str
    unit: str = ""
    formula_column: str = "formula"
    target_column: str = "target"
    #: what a model trained on it calls its target ("dhf"); the column's name if not given
    quantity: str = ""
    licence: str = "MIT"
    notes: list[str] = field(default_factory=list)
    kind: str = "composition"
    id_column: str | None = None
    cif_column: str = "cif"
    archive: DatasetFile | None = None
    #: a named subset of a structure file: the records containing none of these elements
    without_elements: tuple[str, ...] = ()

    @property
    def all_files(self) -> list[DatasetFile]:
        """Every file the dataset needs: its splits and its archive."""
        return [*self.files.values(), *([self.archive] if self.archive else [])]

    @property
    def splits(self) -> list[str]:
        return list(self.files)

    @property
    def target_name(self) -> str:
        """The name a model trained on this dataset gives its target."""
        return self.quantity or self.target_column


def _matbench(task: str, sha256: str, unit: str, description: str) -> Dataset:
    return Dataset(
        name=f"matbench-{task.replace('_', '-').lower()}",
        description=f"matbench {task} reduced to composition: {description}",
        files={"all": DatasetFile(f"composition/matbench/{task}.csv.gz", sha256)},
        source="matbench tasks as shipped in the crabnet 2.0.8 package data",
        unit=unit,
    )


# Castelli's perovskites as cdvae distributes them: the whole set and its named subsets
PEROVSKITES = {
    "files": {
        "all": DatasetFile(
            "structures/perovskites/perov_5.csv.gz",
            "47e694c90522bf8dbb6eec33c563f675919755eafd3129b90f17558160632eef",
        )
    },
    "source": "txie-93/cdvae (MIT)",
    "unit": "eV/atom",
    "target_column": "heat_ref",
    "kind": "structure",
    "id_column": "material_id",
}

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            name="oqmd-dhf",
            description="OQMD DFT formation enthalpy, the train/val split of the "
            "CrabNet/Roost/ElemNet comparisons",
            files={
                "train": DatasetFile(
                    "composition/oqmd_dhf/train.csv.gz",
                    "0b69cfcbffc31145790e48af13efed4f191e5687e01a19cda5ed7cee43deaf6d",
                    f"{_CRABNET}/benchmark_data/OQMD_Formation_Enthalpy/train.csv",
                ),
                "val": DatasetFile(
                    "composition/oqmd_dhf/val.csv.gz",
                    "af138c2bfed3a8eb8fc2e202690fae94190e0e64258625ce1612df45298193d4",
                    f"{_CRABNET}/benchmark_data/OQMD_Formation_Enthalpy/val.csv",
                ),
            },
            source="CrabNet benchmark data (crabnet 2.0.8 package data)",
            unit="eV/atom",
            quantity="dhf",
        ),
        _matbench(
            "mp_e_form",
            "90e895635c96447c5be4e9070d26f26e1b4d17925102a6597ae3c4d79c32555b",
            "eV/atom",
            "DFT formation energy",
        ),
        _matbench(
            "mp_gap",
            "4084e584467e6f81ec8bf12c438eeb2c049ae39e11401bae694ef6a9983b9d9f",
            "eV",
            "DFT band gap",
        ),
        _matbench(
            "expt_gap",
            "3de82c37f1db3ab9bbd92366c96633f131913ded5db0969eb36216bdd11cef2f",
            "eV",
            "experimental band gap",
        ),
        _matbench(
            "castelli",
            "2aba6ff55450b269056de0e07362bd279d32abc8e4af04ca0100ecbb3e62bb97",
            "eV/atom",
            "perovskite formation energy",
        ),
        _matbench(
            "steels_yield",
            "a4232b4d83185f8c65c02dca6a013b85e220227d212e703d12586a4b5b9e9cf0",
            "MPa",
            "steel yield strength",
        ),
        _matbench(
            "dielectric",
            "6320d3da4c0f68e9248e26c058bf047b71f43ec687a6db6faf4f7bc4f4f21c9e",
            "",
            "refractive index",
        ),
        _matbench(
            "elasticity_log10_G_VRH",
            "6eda504f98a3b98308bb4f1353810f2703475daa85540b15aebe1fedf313304a",
            "log10 GPa",
            "shear modulus",
        ),
        _matbench(
            "elasticity_log10_K_VRH",
            "b4e2620ca797b9eca83a6633d4b94dc3ae047bba3f0eacd5cdb446a75d07d087",
            "log10 GPa",
            "bulk modulus",
        ),
        _matbench(
            "jdft2d",
            "96e89a27ba23662de1fed19faaf577db45fd1a3b160d149b556e9d6a348a3056",
            "meV/atom",
            "2-D exfoliation energy",
        ),
        _matbench(
            "phonons",
            "09108e3cbfead13edc0c18e66ca015cef28f7431fcc822038bc7b5ecc5d6222b",
            "1/cm",
            "last phonon DOS peak",
        ),
        Dataset(
            name="mp-transport",
            description="Materials Project transport properties computed with BoltzTraP "
            "(Ricci et al. 2017): Seebeck coefficients S_p/S_n (uV/K), conductivities, "
            "power factors, effective masses m_p/m_n; shipped inside matminer",
            files={
                "all": DatasetFile(
                    "composition/mp_transport/transport_database.csv.gz",
                    "2cf962a60eaf7c7ba792e84046114a8237f5cd0c3ec409fde3c1db3a16ced42e",
                    "package:matminer/utils/data_files/mp_transport/transport_database.tar.xz",
                )
            },
            source="matminer package data (mp_transport)",
            unit="uV/K",
            formula_column="pretty_formula",
            target_column="S_p",
        ),
        Dataset(
            name="mp-eform",
            description="Materials Project structures with DFT formation energy (the CGCNN "
            "set, 33,064 structures)",
            files={
                "all": DatasetFile(
                    "structures/mp_eform/id_prop.csv",
                    "d668c3395906f2ef01572ca851fb31581b0e4da03243943c25e93e8975dc0040",
                )
            },
            archive=DatasetFile(
                "structures/mp_eform/cifs.tar.gz",
                "ce7badd1eb9609f58cbdf8c3bf21b1e4a89e1d6d2509dea05e2b0c2fe5b31f4b",
            ),
            source="kdmsit/crysxpp (MIT)",
            unit="eV/atom",
            target_column="formation_energy_ev_per_atom",
            kind="structure",
            id_column="material_id",
        ),
        Dataset(
            name="perovskites",
            description="cubic ABX3 perovskites of Castelli et al. with CIFs (5,680); "
            "heat_ref is the formation energy",
            **PEROVSKITES,
        ),
        Dataset(
            name="perovskites-abo3",
            description="the pure oxides ABO3 of the perovskites set (809; mixed anions with "
            "N, S or F left out)",
            **PEROVSKITES,
            without_elements=("N", "S", "F"),
        ),
        Dataset(
            name="ssub-dhf",
            description="experimental formation enthalpies (SSUB); a formula can repeat",
            files={
                "all": DatasetFile(
                    "composition/experimental/ssub_dhf.csv",
                    "71839edd90f7720e165ea09e216d3af78f88a32d207d59b4326b6a96592d5200",
                )
            },
            source="qmpy 1.4.0 package data",
            unit="eV/atom",
            target_column="dhf_expt_ev_per_atom",
            quantity="dhf",
        ),
        Dataset(
            name="mp-non-metals",
            description="DFT (PBE) band gaps of non-metals from Materials Project",
            files={
                "all": DatasetFile(
                    "composition/bandgap/mp-non-metals.csv",
                    "96e84365f7ebd984d5c39501b8be6b988bec694329b5d33415e51b611adddb5a",
                )
            },
            source="CompRhys/roost (MIT)",
            unit="eV",
            target_column="band_gap",
            quantity="gap",
            formula_column="composition",
        ),
        Dataset(
            name="expt-non-metals",
            description="experimental band gaps of non-metals",
            files={
                "all": DatasetFile(
                    "composition/bandgap/expt-non-metals.csv",
                    "be1dc585fa4745d9743f2b7243d3e5749826db2822d8645694c63533e0ba9186",
                )
            },
            source="CompRhys/roost (MIT)",
            unit="eV",
            target_column="Eg",
            quantity="gap",
            formula_column="composition",
        ),
    ]
}


def cache_dir() -> Path:
    """Everything deepmat writes for reuse (downloads under ``data/``, computed features,
    graphs, parsed structures): ``$DEEPMAT_CACHE_DIR`` or the user's cache directory."""
    configured = os.environ.get("DEEPMAT_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("deepmat"))


T = TypeVar("T")


def through_cache(
    path: Path,
    compute: Callable[[], T],
    save: Callable[[T, Path], object],
    load: Callable[[Path], T],
    keep: Callable[[T], bool] | None = None,
) -> T:
    """``load(path)`` when the cache holds it, else ``compute()``, saved at ``path`` (unless
    ``keep`` says no) through :func:`atomic_write`, so neither an interrupted run nor two
    processes computing the same entry leave a half-written file behind."""
    if path.exists():
        return load(path)
    value = compute()
    if keep is None or keep(value):
        with atomic_write(path) as partial:
            save(value, partial)
    return value


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, unique to this writer, renamed onto ``path`` when
    the block succeeds and removed when it fails.

    The name, ``<name>.<pid>-<uuid>.part<suffix>``, keeps the final suffix so writers that
    append one when it is missing (``np.save``, ``np.savez``) write to it as named; a file
    written to the temporary name plus an extension is moved all the same. The rename is
    atomic, so a reader sees the old entry or a whole new one, and the last writer wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex}.part{path.suffix}")
    pattern = glob.escape(partial.name) + "*"
    try:
        yield partial
        written = partial if partial.exists() else next(path.parent.glob(pattern), None)
        if written is None:
            raise FileNotFoundError(f"the writer of {path} wrote no file")
        os.replace(written, path)
    finally:
        for stray in path.parent.glob(pattern):
            stray.unlink(missing_ok=True)


def reference_dir() -> Path | None:
    """``$DEEPMAT_DATA_DIR``, a folder of dataset files that deepmat reads but never
    writes, or None when unset."""
    configured = os.environ.get(ENV_VAR)
    return Path(configured).expanduser() if configured else None


def download_dir() -> Path:
    """Where deepmat writes dataset files it fetches or converts: ``<cache dir>/data``."""
    return cache_dir() / "data"


def data_dir() -> Path:
    """The first folder a dataset file is looked up in: ``$DEEPMAT_DATA_DIR`` (read-only)
    when set, else :func:`download_dir`."""
    return reference_dir() or download_dir()


def dataset_dirs() -> list[Path]:
    """The folders a dataset file is looked up in, in order: ``$DEEPMAT_DATA_DIR``
    (read-only) when set, then :func:`download_dir`."""
    reference = reference_dir()
    return [*([reference] if reference and reference != download_dir() else []), download_dir()]


def find_dataset_file(relpath: str) -> Path | None:
    """The first existing copy of ``relpath`` in :func:`dataset_dirs`, or None."""
    return next((p for p in (d / relpath for d in dataset_dirs()) if p.exists()), None)


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))} "
            "(or pass a CSV file with a formula column)"
        ) from None


def dataset_path(name: str, split: str | None = None, *, download: bool = True) -> Path:
    """The verified local path of one split of a named dataset, fetching it if allowed."""
    dataset = get_dataset(name)
    split = split or dataset.splits[0]
    if split not in dataset.files:
        raise DataError(f"dataset {name!r} has splits {dataset.splits}, not {split!r}")
    return _local_file(dataset, dataset.files[split], download)


def _local_file(dataset: Dataset, entry: DatasetFile, download: bool) -> Path:
    """The verified local copy of ``entry``: from ``$DEEPMAT_DATA_DIR``, else from the
    cache, else fetched into the cache when missing and allowed."""
    path = find_dataset_file(entry.relpath)
    if path is None:
        path = download_dir() / entry.relpath
        if not (download and entry.url):
            raise DataNotFoundError(_missing_message(dataset, entry, path))
        _download(entry, path, dataset)
    stat = path.stat()
    verify_checksum(path, entry.sha256, stat.st_mtime_ns, stat.st_size)
    return path


def load_dataset(
    name: str,
    split: str | None = None,
    *,
    target: str | None = None,
    formula_column: str | None = None,
    duplicates: DuplicatePolicy = "mean",
    on_error: ErrorPolicy = "raise",
) -> CompositionTable:
    """Read one split of a named dataset as a validated :class:`CompositionTable`;
    ``target`` and ``formula_column`` override the dataset's own columns."""
    dataset = get_dataset(name)
    if dataset.kind != "composition":
        raise DataError(
            f"dataset {name!r} holds crystal structures, not a composition table: read it "
            "with deepmat.data.registry.load_structure_dataset"
        )
    return read_composition_csv(
        dataset_path(name, split),
        target or dataset.target_column,
        formula_column=formula_column or dataset.formula_column,
        duplicates=duplicates,
        on_error=on_error,
    )


def load_structure_dataset(
    name: str,
    split: str | None = None,
    *,
    target: str | None = None,
    on_error: ErrorPolicy = "raise",
    limit: int | None = None,
) -> StructureTable:
    """Read one split of a named structure dataset as a validated
    :class:`~deepmat.data.structures.StructureTable`; ``target`` overrides its column and
    ``limit`` reads only its first records (a quick look at a large set).

    The parsed structures are cached (``<cache dir>/structures/``), keyed by the files'
    checksums and these arguments: parsing mp-eform's 33k CIFs takes minutes, reading the
    cache seconds.
    """
    from deepmat.data.structures import (
        load_structure_table,
        read_cif_folder,
        read_structure_csv,
        save_structure_table,
    )

    dataset = get_dataset(name)
    if dataset.kind != "structure":
        raise DataError(f"dataset {name!r} is a composition table; read it with load_dataset")
    table = dataset_path(name, split)
    archive = _local_file(dataset, dataset.archive, True) if dataset.archive else None
    if archive is not None and target not in (None, dataset.target_column):
        raise DataError(f"dataset {name!r} has one target, {dataset.target_column!r}")
    key = hashlib.sha256(
        json.dumps([[f.sha256 for f in dataset.all_files], split, target, on_error, limit]).encode()
    ).hexdigest()[:24]

    def read() -> StructureTable:
        if archive is not None:
            whole = read_cif_folder(archive, table, on_error=on_error, limit=limit)
        else:
            whole = read_structure_csv(
                table,
                target or dataset.target_column,
                cif_column=dataset.cif_column,
                id_column=dataset.id_column,
                on_error=on_error,
                limit=limit,
            )
        return without_elements(whole, dataset) if dataset.without_elements else whole

    return through_cache(
        cache_dir() / "structures" / f"{name}-{key}.npz",
        read,
        save_structure_table,
        load_structure_table,
        keep=lambda read_table: all(s.is_ordered for s in read_table.structures),
    )


def without_elements(table: StructureTable, dataset: Dataset) -> StructureTable:
    """The records of ``table`` in the subset ``dataset`` names; the others are counted in
    the load report as left out, with the reason."""
    excluded = set(dataset.without_elements)
    keep = [
        i
        for i, structure in enumerate(table.structures)
        if not excluded & {e.symbol for e in structure.composition.elements}
    ]
    report = copy.deepcopy(table.report)
    if len(keep) < len(table):
        reason = f"not in {dataset.name}: contains {' or '.join(dataset.without_elements)}"
        report.dropped[reason] += len(table) - len(keep)
    return dataclasses.replace(table.subset(keep), report=report)


@cache
def verify_checksum(path: Path, expected: str, mtime_ns: int = 0, size: int = 0) -> None:
    """Raise unless the content of ``path`` has SHA-256 ``expected``; cached per
    (path, modification time, size) so a replaced file is checked again."""
    digest = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise DataError(
            f"{path}: checksum mismatch (sha256 of the content is {digest.hexdigest()}, "
            f"expected {expected}); delete the file to fetch it again"
        )


def _missing_message(dataset: Dataset, entry: DatasetFile, path: Path) -> str:
    """Name the missing file and both places it is looked up in; ``path`` is its place
    in the cache."""
    where = f"download {entry.url}" if entry.url else f"obtain it from {dataset.source}"
    reference = reference_dir()
    if reference is None:
        return (
            f"dataset {dataset.name!r} needs the file {entry.relpath}, which is not in the "
            f"cache. Place it at {path} ({where}; gzipped or plain), or set {ENV_VAR} to a "
            f"folder that holds {entry.relpath}."
        )
    return (
        f"dataset {dataset.name!r} needs the file {entry.relpath}, which is neither in "
        f"{ENV_VAR} nor in the cache. Place it at {reference / entry.relpath} (the read-only "
        f"{ENV_VAR}) or at {path} (the cache) ({where}; gzipped or plain)."
    )


def _download(entry: DatasetFile, path: Path, dataset: Dataset) -> None:
    """Fetch ``entry`` into ``path`` in the cache (gzipped when its name ends in .gz),
    through :func:`atomic_write`."""
    try:
        with (
            atomic_write(path) as tmp,
            _open_source(entry.url) as source,
            open(tmp, "wb") as raw,
        ):
            sink = gzip.GzipFile(fileobj=raw, mode="wb") if path.suffix == ".gz" else raw
            with sink:
                shutil.copyfileobj(source, sink)
    except OSError as exc:
        message = _missing_message(dataset, entry, path)
        raise DataNotFoundError(f"{message} (fetch failed: {exc})") from None


@contextmanager
def _open_source(url: str) -> Iterator[BinaryIO]:
    """A readable stream of the plain bytes behind ``url``.

    ``package:PKG/inner/path.tar.xz`` reads the single file inside an archive shipped by
    an installed package; ``.gz`` sources are decompressed; anything else goes to urllib.
    """
    if url.startswith("package:"):
        package, _, inner = url.removeprefix("package:").partition("/")
        with tarfile.open(str(resources.files(package).joinpath(inner))) as archive:
            member = next(m for m in archive.getmembers() if m.isfile())
            yield archive.extractfile(member)
        return
    with urllib.request.urlopen(url, timeout=30) as stream:
        yield gzip.GzipFile(fileobj=stream) if url.endswith(".gz") else stream
