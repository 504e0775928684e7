"""Networks that read a composition as the set of its elements, each with its fraction.

Input: (batch, N, 2) rows [Z, x] of :class:`~deepmat.represent.ElementSequence`: atomic
number Z (0 pads a formula with fewer than N elements) and atomic fraction x. Each element
enters as a fixed pretrained embedding e(Z) (a table from ``elementembeddings``, a buffer
saved with the weights) projected to the network's width; the networks are permutation
invariant and see any number of elements up to N.

- :class:`Roost` (Goodall & Lee, Nat. Commun. 11, 6280, 2020): message passing on the dense
  graph of a formula's elements. Layer ℓ updates every element i by attention over all
  elements j (itself included), weighted by their fractions:

      a_ij = x_j^p exp(g(h_i ‖ h_j)) / Σ_k x_k^p exp(g(h_i ‖ h_k))
      h_i ← h_i + mean over heads of Σ_j a_ij m(h_i ‖ h_j)

  with g and m small networks and p a learned power; a readout attention of the same form
  over the elements pools the formula, and a residual network gives the target.
- :class:`CompositionTransformer` (after CrabNet, Wang et al., npj Comput. Mater. 7, 77,
  2021): the projected embedding plus sinusoidal encodings of x and of log₂ x, a transformer
  encoder over the elements (padding masked), and a per-element output gated by a sigmoid,
  averaged over the formula's elements. Columns of padding that no formula of a batch uses
  are cut before the encoder.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

MAX_Z = 118


class _Spec:
    """A network spec as a card stores it: its fields and its ``kind``."""

    kind = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind} | asdict(self)

    @classmethod
    def from_dict(cls, spec: dict):
        fields = {k: v for k, v in spec.items() if k != "kind"}
        return cls(**fields | {"output": tuple(fields.get("output", cls.output))})


@dataclass(frozen=True)
class RoostSpec(_Spec):
    """Roost's sizes (the published ones by default) and its element embedding."""

    kind = "roost"

    embedding: str = "matscholar"
    embedding_dim: int = 200
    width: int = 64
    layers: int = 3
    heads: int = 3
    hidden: int = 256
    readout_heads: int = 3
    output: tuple[int, ...] = (256, 128, 64)
    out_features: int = 1

    def build(self) -> Roost:
        return Roost(self)


@dataclass(frozen=True)
class TransformerSpec(_Spec):
    """The composition transformer's sizes (CrabNet's by default) and embedding."""

    kind = "transformer"

    embedding: str = "mat2vec"
    embedding_dim: int = 200
    width: int = 512
    layers: int = 3
    heads: int = 4
    feedforward: int = 2048
    dropout: float = 0.1
    output: tuple[int, ...] = (1024, 512, 256, 128)
    out_features: int = 1

    def build(self) -> CompositionTransformer:
        return CompositionTransformer(self)


def _network(sizes: list[int]) -> nn.Sequential:
    """Linear layers of ``sizes`` with LeakyReLU between them."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.LeakyReLU()]
    return nn.Sequential(*layers[:-1])


class ResidualNetwork(nn.Module):
    """Roost's and CrabNet's output network: residual LeakyReLU layers, then a linear one."""

    def __init__(self, width: int, hidden: tuple[int, ...], out_features: int):
        super().__init__()
        sizes = [width, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.skips = nn.ModuleList(
            nn.Identity() if a == b else nn.Linear(a, b, bias=False)
            for a, b in itertools.pairwise(sizes)
        )
        self.act = nn.LeakyReLU()
        self.out = nn.Linear(sizes[-1], out_features)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for layer, skip in zip(self.layers, self.skips, strict=True):
            h = self.act(layer(h)) + skip(h)
        return self.out(h)


class ElementEmbedding(nn.Module):
    """e(Z) from a fixed table (rows 0…118, row 0 for padding), projected to ``width``."""

    def __init__(self, embedding_dim: int, width: int):
        super().__init__()
        self.register_buffer("table", torch.zeros(MAX_Z + 1, embedding_dim))
        self.project = nn.Linear(embedding_dim, width)

    def set_table(self, table: torch.Tensor) -> None:
        """Install the pretrained table, (MAX_Z + 1, embedding_dim)."""
        self.table.copy_(torch.as_tensor(table, dtype=self.table.dtype))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.project(self.table[z])


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Atomic numbers (long), fractions and the mask of real elements of [Z, x] rows."""
    z = x[..., 0].round().long()
    return z, x[..., 1], z > 0


def segment_softmax(score: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of ``score`` within each group of equal ``index`` (``n`` groups)."""
    top = score.new_full((n,), float("-inf"))
    top = top.scatter_reduce(0, index, score.detach(), "amax", include_self=True)
    e = torch.exp(score - top[index])
    return e / e.new_zeros(n).index_add_(0, index, e)[index]


class WeightedAttention(nn.Module):
    """Fraction-weighted soft attention over sets (one Roost head family): for the members j
    of each set i, a_ij = x_j^p exp(g_ij) / Σ_k x_k^p exp(g_ik), output Σ_j a_ij m_ij,
    averaged over the heads."""

    def __init__(self, in_features: int, hidden: int, out_features: int, heads: int):
        super().__init__()
        self.gates = nn.ModuleList(_network([in_features, hidden, 1]) for _ in range(heads))
        self.messages = nn.ModuleList(
            _network([in_features, hidden, out_features]) for _ in range(heads)
        )
        self.power = nn.Parameter(torch.ones(heads))

    def forward(
        self, members: torch.Tensor, weights: torch.Tensor, index: torch.Tensor, n: int
    ) -> torch.Tensor:
        """(n, out_features): ``members`` (M, F) with ``weights`` (M,), in the sets ``index``."""
        log_weights = torch.log(weights.clamp_min(1e-12))
        out = 0
        for head, (gate, message) in enumerate(zip(self.gates, self.messages, strict=True)):
            score = gate(members).squeeze(-1) + self.power[head] * log_weights
            attention = segment_softmax(score, index, n).unsqueeze(-1)
            weighted = attention * message(members)
            out = out + weighted.new_zeros(n, weighted.shape[1]).index_add_(0, index, weighted)
        return out / len(self.gates)


def formula_graphs(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dense graph of each formula's real elements (``mask``, (batch, N)): the formula of
    every element, in ``mask``'s row-major order, and the ordered pairs (i, j) of elements
    of the same formula, self pairs included."""
    node = torch.full(mask.shape, -1, dtype=torch.long, device=mask.device)
    node[mask] = torch.arange(int(mask.sum()), device=mask.device)
    formula, i, j = (mask.unsqueeze(2) & mask.unsqueeze(1)).nonzero(as_tuple=True)
    return mask.nonzero(as_tuple=True)[0], node[formula, i], node[formula, j]


class Roost(nn.Module):
    """Roost on [Z, x] rows (module docstring); returns (batch, out_features). Messages pass
    only between a formula's real elements, never through padding."""

    def __init__(self, spec: RoostSpec):
        super().__init__()
        self.spec = spec
        self.embed = ElementEmbedding(spec.embedding_dim, spec.width - 1)
        self.layers = nn.ModuleList(
            WeightedAttention(2 * spec.width, spec.hidden, spec.width, spec.heads)
            for _ in range(spec.layers)
        )
        self.readout = WeightedAttention(spec.width, spec.hidden, spec.width, spec.readout_heads)
        self.head = ResidualNetwork(spec.width, spec.output, spec.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, fractions, mask = _split(x)
        formula, i, j = formula_graphs(mask)
        fractions = fractions[mask]
        h = torch.cat([self.embed(z[mask]), fractions.unsqueeze(-1)], dim=-1)
        for layer in self.layers:
            h = h + layer(torch.cat([h[i], h[j]], dim=-1), fractions[j], i, len(h))
        return self.head(self.readout(h, fractions, formula, len(x)))


def fraction_encoding(x: torch.Tensor, width: int, resolution: float = 5000.0) -> torch.Tensor:
    """Sinusoidal encoding of fractions in [0, 1] (``width`` channels, sin and cos at
    geometric frequencies), as a transformer encodes positions."""
    k = torch.arange(width // 2, device=x.device, dtype=x.dtype)
    angle = (x * resolution).unsqueeze(-1) / torch.pow(resolution, 2 * k / width)
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class CompositionTransformer(nn.Module):
    """The CrabNet-style transformer on [Z, x] rows (module docstring); (batch, out)."""

    def __init__(self, spec: TransformerSpec):
        super().__init__()
        self.spec = spec
        self.embed = ElementEmbedding(spec.embedding_dim, spec.width)
        self.scales = nn.Parameter(torch.ones(3))  # embedding, x, log₂ x encodings
        layer = nn.TransformerEncoderLayer(
            spec.width, spec.heads, spec.feedforward, spec.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, spec.layers, enable_nested_tensor=False)
        self.head = ResidualNetwork(spec.width, spec.output, 2 * spec.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, fractions, mask = _split(x)
        last = int(mask.any(0).nonzero().max()) + 1 if mask.any() else 1
        z, fractions, mask = z[:, :last], fractions[:, :last], mask[:, :last]
        half = self.spec.width // 2
        log_scale = (0.0025 * torch.log2(fractions.clamp_min(1e-12)) ** 2).clamp(max=1.0)
        encoding = torch.cat(
            [
                self.scales[1] * fraction_encoding(fractions, half),
                self.scales[2] * fraction_encoding(log_scale, self.spec.width - half),
            ],
            dim=-1,
        )
        h = self.scales[0] * self.embed(z) * math.sqrt(self.spec.width) + encoding
        h = self.encoder(h, src_key_padding_mask=~mask)
        value, gate = self.head(h).chunk(2, dim=-1)
        value = value * torch.sigmoid(gate) * mask.unsqueeze(-1)
        return value.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
