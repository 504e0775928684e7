"""Crystal graphs: atoms as nodes, bonds to their nearest periodic neighbours as edges.

Following Xie and Grossman, each atom is joined to at most ``max_neighbors`` of its
nearest neighbours within ``cutoff`` ångström, periodic images included (an atom may be
its own neighbour through the cell boundary). A whole dataset of graphs is held as a few
flat arrays (CSR-style: the atoms and edges of graph g lie between ``atom_ptr[g]`` and
``atom_ptr[g + 1]``, ``edge_ptr`` likewise), so a training batch of any graphs is a few
NumPy gathers, with no Python loop over atoms or structures, and the whole set caches
as one ``.npz`` file.

Neighbours come from pymatgen's ``Structure.get_neighbor_list`` (a compiled cell-list
search); keeping the ``max_neighbors`` nearest per atom is one ``lexsort`` per structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Structure
from rich.progress import track

from deepmat.data.registry import cache_dir, through_cache
from deepmat.data.structures import structures_digest
from deepmat.errors import DataError
from deepmat.represent.atom_features import MAX_Z

CACHE_MIN = 1000  # sets smaller than this are built, not cached
CACHE_VERSION = 1


@dataclass(frozen=True)
class GraphSettings:
    """Which neighbours become edges (CGCNN: 8 Å, 12 neighbours)."""

    cutoff: float = 8.0
    max_neighbors: int = 12

    def __post_init__(self) -> None:
        if self.cutoff <= 0 or self.max_neighbors < 1:
            raise DataError(
                f"graph settings need cutoff > 0 and max_neighbors >= 1, got {self.cutoff} "
                f"and {self.max_neighbors}"
            )

    def to_dict(self) -> dict:
        return {"cutoff": self.cutoff, "max_neighbors": self.max_neighbors}


@dataclass
class GraphBatch:
    """Graphs joined into one disconnected graph, as the networks take them.

    ``atomic_numbers`` (atoms,), ``edge_index`` (2, edges) with rows centre and neighbour,
    ``distances`` (edges,) in ångström and ``graph`` (atoms,), the graph of each atom.
    """

    atomic_numbers: torch.Tensor
    edge_index: torch.Tensor
    distances: torch.Tensor
    graph: torch.Tensor
    n_graphs: int

    def to(self, device: torch.device | str) -> GraphBatch:
        return GraphBatch(
            self.atomic_numbers.to(device),
            self.edge_index.to(device),
            self.distances.to(device),
            self.graph.to(device),
            self.n_graphs,
        )


@dataclass
class CrystalGraphs:
    """The graphs of a whole set of structures in flat arrays (see the module docstring)."""

    atomic_numbers: np.ndarray  # (atoms,) int16
    atom_ptr: np.ndarray  # (graphs + 1,) int64
    centers: np.ndarray  # (edges,) int32, atom index within its graph
    neighbors: np.ndarray  # (edges,) int32, atom index within its graph
    distances: np.ndarray  # (edges,) float32
    edge_ptr: np.ndarray  # (graphs + 1,) int64
    settings: GraphSettings

    def __len__(self) -> int:
        return len(self.atom_ptr) - 1

    @property
    def n_atoms(self) -> np.ndarray:
        return np.diff(self.atom_ptr)

    @property
    def atom_graph(self) -> np.ndarray:
        """(atoms,) the index of the structure each atom belongs to."""
        return np.repeat(np.arange(len(self)), self.n_atoms)

    def batch(self, index: Sequence[int] | np.ndarray) -> GraphBatch:
        """Graphs ``index`` as one :class:`GraphBatch`, atoms renumbered from zero."""
        index = np.asarray(index, dtype=np.int64)
        atoms, atom_counts = _ragged(self.atom_ptr, index)
        edges, edge_counts = _ragged(self.edge_ptr, index)
        first_atom = np.cumsum(atom_counts) - atom_counts
        shift = np.repeat(first_atom, edge_counts)
        edge_index = np.stack([self.centers[edges] + shift, self.neighbors[edges] + shift])
        return GraphBatch(
            atomic_numbers=torch.from_numpy(self.atomic_numbers[atoms].astype(np.int64)),
            edge_index=torch.from_numpy(edge_index.astype(np.int64)),
            distances=torch.from_numpy(self.distances[edges]),
            graph=torch.from_numpy(np.repeat(np.arange(len(index)), atom_counts)),
            n_graphs=len(index),
        )

    def save(self, path) -> None:
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        np.savez(path, **arrays, **{f"setting_{k}": v for k, v in self.settings.to_dict().items()})

    @classmethod
    def load(cls, path) -> CrystalGraphs:
        with np.load(path) as stored:
            settings = GraphSettings(
                float(stored["setting_cutoff"]), int(stored["setting_max_neighbors"])
            )
            return cls(**{k: stored[k] for k in _ARRAYS}, settings=settings)


_ARRAYS = ("atomic_numbers", "atom_ptr", "centers", "neighbors", "distances", "edge_ptr")


def _ragged(ptr: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions ``ptr[i]:ptr[i + 1]`` for every i in ``index``, concatenated, and the
    length of each run."""
    starts, counts = ptr[index], ptr[index + 1] - ptr[index]
    run_start = np.cumsum(counts) - counts
    positions = np.arange(counts.sum()) + np.repeat(starts - run_start, counts)
    return positions, counts


def keep_nearest(
    centers: np.ndarray, neighbors: np.ndarray, distances: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` nearest of each centre's neighbour pairs, ordered by centre, then distance."""
    order = np.lexsort((distances, centers))
    centers, neighbors, distances = centers[order], neighbors[order], distances[order]
    first = np.searchsorted(centers, centers, side="left")
    keep = np.arange(len(centers)) - first < k
    return centers[keep], neighbors[keep], distances[keep]


def nearest_neighbors(
    structure: Structure, settings: GraphSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centres, neighbours, distances) of the ``max_neighbors`` nearest neighbours of each
    site within the cutoff, ordered by centre, then distance."""
    centers, neighbors, _, distances = structure.get_neighbor_list(settings.cutoff)
    return keep_nearest(centers, neighbors, distances, settings.max_neighbors)


def build_graphs(
    structures: Sequence[Structure],
    settings: GraphSettings | None = None,
    ids: Sequence[str] | None = None,
    progress: bool = False,
) -> CrystalGraphs:
    """The crystal graphs of ``structures`` (see :func:`cached_graphs` for the disk cache).

    A structure with an element heavier than Z = 100 (no atom features) is an error
    naming its record (``ids``, else its position).
    """
    settings = settings or GraphSettings()
    numbers, centers, neighbors, distances = [], [], [], []
    atom_counts = np.zeros(len(structures), dtype=np.int64)
    edge_counts = np.zeros(len(structures), dtype=np.int64)
    items = track(structures, "crystal graphs") if progress else structures
    for i, structure in enumerate(items):
        z = np.asarray(structure.atomic_numbers)
        if z.max(initial=0) > MAX_Z or z.min(initial=1) < 1:
            name = ids[i] if ids is not None else f"structure {i}"
            raise DataError(
                f"{name}: element Z={int(z.max())} has no atom features (Z must be 1 to {MAX_Z})"
            )
        c, n, d = nearest_neighbors(structure, settings)
        numbers.append(z)
        centers.append(c)
        neighbors.append(n)
        distances.append(d)
        atom_counts[i], edge_counts[i] = len(z), len(c)

    def join(parts: list, dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return CrystalGraphs(
        atomic_numbers=join(numbers, np.int16),
        atom_ptr=np.concatenate([[0], np.cumsum(atom_counts)]),
        centers=join(centers, np.int32),
        neighbors=join(neighbors, np.int32),
        distances=join(distances, np.float32),
        edge_ptr=np.concatenate([[0], np.cumsum(edge_counts)]),
        settings=settings,
    )


def cached_graphs(
    structures: Sequence[Structure],
    settings: GraphSettings | None = None,
    ids: Sequence[str] | None = None,
    progress: bool = False,
) -> CrystalGraphs:
    """:func:`build_graphs` through a disk cache (``<cache dir>/graphs/``) keyed by the
    structures and the settings: a second run on the same data reads one file."""
    settings = settings or GraphSettings()
    if len(structures) < CACHE_MIN:
        return build_graphs(structures, settings, ids, progress)
    digest = structures_digest(structures, f"graphs v{CACHE_VERSION} {settings.to_dict()}")
    return through_cache(
        cache_dir() / "graphs" / f"{digest}.npz",
        lambda: build_graphs(structures, settings, ids, progress),
        CrystalGraphs.save,
        CrystalGraphs.load,
    )
