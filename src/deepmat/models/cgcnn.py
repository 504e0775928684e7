"""The crystal graph convolutional neural network (CGCNN) of Xie and Grossman.

Each atom i starts from an embedding v_i of its element's one-hot properties
(:mod:`deepmat.represent.atom_features`); each edge (i, j) carries its length expanded in
Gaussians, u_ij,k = exp(-(d_ij - μ_k)² / σ²) with μ_k = 0, σ, 2σ, … up to the cutoff.
``n_conv`` graph convolutions update the atoms, and a pooling step turns the atoms into
one prediction per crystal:

* ``pooling="mean"``: the mean of the atom vectors, then fully connected layers (the
  accurate model);
* ``pooling="linear"``: each atom's vector mapped linearly to one number, the site's
  contribution c_i, and the prediction is their mean (the interpretable model: the
  contributions are a decomposition of the prediction over sites).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from deepmat.errors import ConfigError
from deepmat.represent.atom_features import atom_feature_table
from deepmat.represent.crystal_graph import GraphBatch

CONVOLUTIONS = ("gated", "shared")
POOLINGS = ("mean", "linear")


@dataclass
class CGCNNSpec:
    """Architecture of a :class:`CGCNN` (defaults: the published model, 3 gated
    convolutions of 64 features, one hidden layer of 128)."""

    conv: str = "gated"
    pooling: str = "mean"
    atom_features: int = 64
    n_conv: int = 3
    hidden: tuple[int, ...] = field(default=(128,))
    cutoff: float = 8.0
    gaussian_width: float = 0.2
    #: 2 for a heteroscedastic network (μ and ln σ); mean pooling only
    out_features: int = 1

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        if self.conv not in CONVOLUTIONS:
            raise ConfigError(f"convolution {self.conv!r} is not one of {CONVOLUTIONS}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling {self.pooling!r} is not one of {POOLINGS}")
        if self.atom_features < 1 or self.n_conv < 1 or self.gaussian_width <= 0:
            raise ConfigError(
                "a CGCNN needs atom_features >= 1, n_conv >= 1 and gaussian_width > 0"
            )
        if self.out_features not in (1, 2) or (self.pooling == "linear" and self.out_features != 1):
            raise ConfigError(
                f"out_features={self.out_features}: a CGCNN has 1 output, or 2 (μ, ln σ) with "
                "mean pooling"
            )

    @property
    def n_gaussians(self) -> int:
        return round(self.cutoff / self.gaussian_width) + 1

    def to_dict(self) -> dict:
        return asdict(self) | {"hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, spec: dict) -> CGCNNSpec:
        return cls(**spec)


class GaussianDistance(nn.Module):
    """u_k(d) = exp(-(d - μ_k)² / σ²), μ_k = kσ for k = 0 … cutoff/σ.

    Values below e^-80 are set to zero: subnormal floats would slow every product with
    the expansion several times over on x86 CPUs.
    """

    def __init__(self, cutoff: float, width: float):
        super().__init__()
        n = round(cutoff / width) + 1
        self.register_buffer("centers", torch.arange(n, dtype=torch.float32) * width)
        self.width = width

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        exponent = ((distances[:, None] - self.centers) / self.width) ** 2
        return torch.exp(-exponent.clamp(max=80.0)).masked_fill(exponent > 80.0, 0.0)


class GatedConv(nn.Module):
    """Edge-gated convolution (Xie and Grossman, eq. 5):

    v_i ← g(v_i + BN(Σ_j σ(z_ij W_f + b_f) ⊙ g(z_ij W_s + b_s))),  z_ij = v_i ⊕ v_j ⊕ u_ij,

    with g the softplus: a learned gate weighs each neighbour's message. The products
    with z_ij are split into atom terms (computed once per atom) and an edge term.
    """

    def __init__(self, features: int, edge_features: int):
        super().__init__()
        self.center = nn.Linear(features, 2 * features)
        self.neighbor = nn.Linear(features, 2 * features, bias=False)
        self.edge = nn.Parameter(torch.empty(edge_features, 2 * features))
        nn.init.kaiming_uniform_(self.edge.T, a=5**0.5)
        self.edge_norm = nn.BatchNorm1d(2 * features)
        self.sum_norm = nn.BatchNorm1d(features)

    def forward(self, v: torch.Tensor, edge_index: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        i, j = edge_index
        z = self.center(v).index_select(0, i) + self.neighbor(v).index_select(0, j) + u @ self.edge
        gate, core = self.edge_norm(z).chunk(2, dim=1)
        messages = torch.sigmoid(gate) * F.softplus(core)
        summed = torch.zeros_like(v).index_add_(0, i, messages)
        return F.softplus(v + self.sum_norm(summed))


class SharedConv(nn.Module):
    """Convolution with one weight matrix shared by all neighbours (Xie and Grossman, eq. 4):

    v_i ← g(BN((Σ_j v_j ⊕ u_ij) W_c + v_i W_s + b)),

    so every neighbour at a given distance speaks with the same strength.
    """

    def __init__(self, features: int, edge_features: int):
        super().__init__()
        self.neighbors = nn.Linear(features + edge_features, features, bias=False)
        self.center = nn.Linear(features, features)
        self.norm = nn.BatchNorm1d(features)

    def forward(self, v: torch.Tensor, edge_index: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        i, j = edge_index
        pairs = torch.cat([v.index_select(0, j), u], dim=1)
        summed = pairs.new_zeros(len(v), pairs.shape[1]).index_add_(0, i, pairs)
        return F.softplus(self.norm(self.neighbors(summed) + self.center(v)))


class CGCNN(nn.Module):
    """Crystal graph CNN: :class:`GraphBatch` in, (graphs, 1) predictions out."""

    def __init__(self, spec: CGCNNSpec | None = None):
        super().__init__()
        self.spec = spec = spec or CGCNNSpec()
        table = torch.from_numpy(atom_feature_table())
        self.register_buffer("element_features", table)
        self.embed = nn.Linear(table.shape[1], spec.atom_features)
        self.expand = GaussianDistance(spec.cutoff, spec.gaussian_width)
        conv = GatedConv if spec.conv == "gated" else SharedConv
        self.convs = nn.ModuleList(
            conv(spec.atom_features, spec.n_gaussians) for _ in range(spec.n_conv)
        )
        if spec.pooling == "linear":
            self.site = nn.Linear(spec.atom_features, 1)
        else:
            widths = (spec.atom_features, *spec.hidden)
            self.head = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
            self.out = nn.Linear(widths[-1], spec.out_features)

    def atoms(self, batch: GraphBatch) -> torch.Tensor:
        """The atom vectors after the convolutions, (atoms, atom_features)."""
        v = self.embed(self.element_features[batch.atomic_numbers])
        u = self.expand(batch.distances)
        for conv in self.convs:
            v = conv(v, batch.edge_index, u)
        return v

    def site_contributions(self, batch: GraphBatch) -> torch.Tensor:
        """Each site's contribution c_i (atoms,); the prediction is their mean per graph.
        Only the linear-pooling model has them."""
        if self.spec.pooling != "linear":
            raise ConfigError("site contributions need a CGCNN with pooling='linear'")
        return self.site(self.atoms(batch)).squeeze(1)

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        counts = torch.bincount(batch.graph, minlength=batch.n_graphs).clamp(min=1)
        if self.spec.pooling == "linear":
            per_site = self.site_contributions(batch)[:, None]
            return _graph_sum(per_site, batch) / counts[:, None]
        h = _graph_sum(self.atoms(batch), batch) / counts[:, None]
        for layer in self.head:
            h = F.softplus(layer(h))
        return self.out(h)


def _graph_sum(values: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
    """Per-graph sums of per-atom ``values`` (atoms, k) -> (graphs, k)."""
    return values.new_zeros(batch.n_graphs, values.shape[1]).index_add_(0, batch.graph, values)
