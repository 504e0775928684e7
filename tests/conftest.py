"""Shared fixtures: CSV writing, the reference-data folder and a small learnable table."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from deepmat.data.composition import CompositionTable, composition_table
from deepmat.data.registry import data_dir

# The networks in these tests are tiny: one thread is much faster than several threads
# contending with whatever else runs on the machine (the other test worker, the benchmarks'
# subprocesses, which read OMP_NUM_THREADS).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

METALS = (
    "Li", "Na", "K", "Mg", "Ca", "Sr", "Ba", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni",
    "Cu", "Zn", "Y", "Zr", "Nb", "Mo", "Al", "Ga", "In", "Sn", "La", "Ce", "Hf", "Ta", "W",
)  # fmt: skip
BINARY_FORMS = ("{a}O", "{a}2O3", "{a}O2", "{a}3O4")
TERNARY_FORMS = ("{a}{b}O3", "{a}2{b}O4")
N_TERNARY = 180


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test starts on one thread, whatever an earlier test in this process set: two
    threads whose partner the OS has descheduled spin at every barrier, and on a busy
    machine a one-second test then takes minutes."""
    torch.set_num_threads(1)


@pytest.fixture
def write_csv(tmp_path):
    """``write_csv(text, name="data.csv")`` writes ``text`` under tmp_path, returns the path."""

    def write(text: str, name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def shared_data() -> Path:
    """The dataset cache when it holds the OQMD reference data; skip otherwise."""
    root = data_dir()
    if not (root / "composition/oqmd_dhf/val.csv.gz").exists():
        pytest.skip(
            "reference data not found: set DEEPMAT_DATA_DIR to a folder holding "
            "composition/oqmd_dhf (e.g. ../shared/data)"
        )
    return root


def small_formulas() -> list[str]:
    """300 distinct binary and ternary oxide formulas."""
    binaries = [form.format(a=m) for m in METALS for form in BINARY_FORMS]
    pairs = list(itertools.combinations(METALS, 2))
    rng = np.random.default_rng(1)
    chosen = rng.choice(len(pairs), size=N_TERNARY, replace=False)
    ternaries = [
        TERNARY_FORMS[k % 2].format(a=pairs[i][0], b=pairs[i][1]) for k, i in enumerate(chosen)
    ]
    return binaries + ternaries


def synthetic_target(table: CompositionTable) -> np.ndarray:
    """A fixed random number per element, averaged by atomic fraction: learnable."""
    rng = np.random.default_rng(0)
    value = dict(zip((*METALS, "O"), rng.normal(0.0, 1.0, len(METALS) + 1), strict=True))
    out = []
    for comp in table.compositions:
        fractions = comp.fractional_composition.get_el_amt_dict()
        out.append(sum(value[el] * x for el, x in fractions.items()))
    return np.array(out)


@pytest.fixture(scope="session")
def small_table() -> CompositionTable:
    """~300 oxides with a synthetic target (session-wide: do not mutate it)."""
    formulas = small_formulas()
    table = composition_table(formulas, source="small")
    targets = synthetic_target(table)
    return composition_table(formulas, targets, source="small", duplicates="error")


def pytest_configure(config):
    """Each pytest-xdist worker keeps its own Numba cache (under .pytest_cache). Numba's
    cache is not safe for two processes compiling the same function at once: a gufunc's
    kernel and wrapper written by different processes crash every later process that loads
    them (numba/numba#10128), and orix compiles its gufuncs on first use, at collection."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        cache = config.rootpath / ".pytest_cache" / "numba" / worker
        os.environ.setdefault("NUMBA_CACHE_DIR", str(cache))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    """With pytest-xdist's ``--dist loadgroup`` (``make test``), each test file runs on one
    worker, so its module-scoped fixtures are built once; the quick benchmark runs, the
    slowest tests of the suite, spread over the workers one by one, and go first, so that
    none of them is left running alone at the end. Everything that runs kikuchipy's and
    orix's Numba code shares one worker, which compiles it once."""
    items.sort(key=lambda item: item.path.name != "test_benchmarks.py")  # stable: order kept
    for item in items:
        if item.path.name == "test_benchmarks.py":
            group = "ebsd" if "[ebsd" in item.name else None  # ebsd, ebsd_search
        else:
            numba = item.path.stem.startswith("test_ebsd") or item.path.stem == "test_orientations"
            group = "ebsd" if numba else item.path.stem
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
