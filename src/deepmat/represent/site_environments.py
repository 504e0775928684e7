"""Site environments: what a crystallographic site looks like with its own element hidden.

The element-likelihood model of crystal structure prediction (Ryan, Lengyel & Shatruk,
JACS 140, 10158, 2018) asks, for each site, which element fits its local geometry and
topology. The inputs here come from the crystal graph's neighbour lists
(:mod:`deepmat.represent.crystal_graph`: the ``K`` nearest neighbours of each site within
the cutoff) and never carry the site's own element. For site i with neighbour distances
:math:`d_{i1} \\le \\dots \\le d_{iK}`:

* **scale-free geometry**: :math:`d_{ik}/\\bar d` with :math:`\\bar d` the mean over the
  structure's sites of their nearest-neighbour distance (the site's size relative to the
  others: invariant to a uniform rescaling of the cell, which candidate structures get), and
  the shell shape :math:`d_{ik}/d_{i1}`;
* **coordination**: the fraction of the K neighbours within :math:`(1 + t)\\,d_{i1}` for
  each tolerance t in :data:`SHELL_TOLERANCES`;
* **topology from the anonymous formula**: whether neighbour k is of the site's own species
  (the same element, whichever it is), the share of the cell's sites held by the site's
  species and by each neighbour's, and the number of species (one-hot, 1 to 4 or more).
  These are known for a template before any element is assigned to it;
* unless ``mask_neighbors`` (the default shows them), the neighbours' elements: the CGCNN
  atom features (:mod:`deepmat.represent.atom_features`) of the nearest neighbour and their
  :math:`1/d^2`-weighted mean over the K neighbours.

With masked neighbours (Ryan's geometry-only setting) a site's input does not depend on which
elements are assigned to a template, only on which sites share one, so a template's site
likelihoods are computed once for all its candidates; with visible neighbours they are
computed per candidate, and a candidate's summed log-likelihood is a pseudo-likelihood (each
site conditioned on its neighbours' elements). Missing neighbours (fewer than K within the
cutoff) are padded with the cutoff distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepmat.represent.atom_features import atom_feature_table
from deepmat.represent.crystal_graph import CrystalGraphs, GraphSettings

SHELL_TOLERANCES = (0.05, 0.1, 0.2, 0.3, 0.5)
MAX_SPECIES_ONE_HOT = 4


@dataclass(frozen=True)
class SiteSettings:
    """Which neighbours describe a site and whether their elements are hidden too."""

    cutoff: float = 6.0
    max_neighbors: int = 12
    mask_neighbors: bool = False

    @property
    def graph(self) -> GraphSettings:
        """The crystal-graph settings whose neighbour lists the environments are read from."""
        return GraphSettings(cutoff=self.cutoff, max_neighbors=self.max_neighbors)

    @property
    def n_features(self) -> int:
        k = self.max_neighbors
        fixed = 2 * k + len(SHELL_TOLERANCES) + k + 1 + k + MAX_SPECIES_ONE_HOT
        return fixed if self.mask_neighbors else fixed + 2 * atom_feature_table().shape[1]

    def to_dict(self) -> dict:
        return {
            "cutoff": self.cutoff,
            "max_neighbors": self.max_neighbors,
            "mask_neighbors": self.mask_neighbors,
        }


def _padded(graphs: CrystalGraphs, k: int, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """(atoms, k) neighbour distances, padded with ``cutoff``, and global neighbour indices,
    padded with -1 (edges are ordered by centre, then distance)."""
    n_atoms = int(graphs.atom_ptr[-1])
    edge_graph = np.repeat(np.arange(len(graphs)), np.diff(graphs.edge_ptr))
    first_atom = graphs.atom_ptr[:-1][edge_graph]
    centre = graphs.centers.astype(np.int64) + first_atom
    neighbour = graphs.neighbors.astype(np.int64) + first_atom
    start = np.searchsorted(centre, centre, side="left")
    slot = np.arange(len(centre)) - start
    keep = slot < k
    distances = np.full((n_atoms, k), cutoff, dtype=np.float64)
    index = np.full((n_atoms, k), -1, dtype=np.int64)
    distances[centre[keep], slot[keep]] = graphs.distances[keep]
    index[centre[keep], slot[keep]] = neighbour[keep]
    return distances, index


def _species_shares(graphs: CrystalGraphs, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per atom: the share of its structure's sites held by its species, and the number of
    species in its structure."""
    atom_graph = graphs.atom_graph
    pairs = atom_graph * 256 + numbers
    unique, inverse, counts = np.unique(pairs, return_inverse=True, return_counts=True)
    share = counts[inverse] / graphs.n_atoms[atom_graph]
    species_per_graph = np.bincount(unique // 256, minlength=len(graphs))
    return share, species_per_graph[atom_graph]


def site_features(
    graphs: CrystalGraphs, settings: SiteSettings, numbers: np.ndarray | None = None
) -> np.ndarray:
    """(atoms, ``settings.n_features``) float32 inputs of every site of ``graphs`` (see the
    module docstring); ``numbers`` replaces the graphs' atomic numbers (a candidate's
    elements on its template's sites), read only for which sites share a species and, with
    unmasked neighbours, for the neighbours' features."""
    numbers = graphs.atomic_numbers.astype(np.int64) if numbers is None else np.asarray(numbers)
    k = settings.max_neighbors
    distances, index = _padded(graphs, k, settings.cutoff)
    atom_graph = graphs.atom_graph
    nearest = distances[:, 0]
    mean_nearest = np.bincount(atom_graph, nearest, len(graphs)) / np.maximum(graphs.n_atoms, 1)
    relative = distances / mean_nearest[atom_graph][:, None]
    shell = distances / nearest[:, None]
    coordination = np.stack([(shell <= 1 + t).mean(axis=1) for t in SHELL_TOLERANCES], axis=1)
    present = index >= 0
    safe = np.where(present, index, 0)
    same = (numbers[safe] == numbers[:, None]) & present
    share, n_species = _species_shares(graphs, numbers)
    neighbour_share = np.where(present, share[safe], 0.0)
    species = np.zeros((len(numbers), MAX_SPECIES_ONE_HOT))
    species[np.arange(len(numbers)), np.clip(n_species, 1, MAX_SPECIES_ONE_HOT) - 1] = 1
    parts = [relative, shell, coordination, same, share[:, None], neighbour_share, species]
    if not settings.mask_neighbors:
        table = atom_feature_table()
        element = np.where(present, numbers[safe], 0)
        weight = np.where(present, 1 / distances**2, 0.0)
        weight /= np.maximum(weight.sum(axis=1, keepdims=True), 1e-12)
        mean = np.zeros((len(numbers), table.shape[1]), dtype=np.float64)
        for k in range(element.shape[1]):  # a (sites, K, features) array would not fit
            mean += weight[:, k, None] * table[element[:, k]]
        parts += [table[element[:, 0]], mean]
    return np.concatenate(parts, axis=1).astype(np.float32)
