"""Differentiable statistical descriptors of k-phase microstructures, 2-D or 3-D (PyTorch).

A microstructure is held as phase indicators x ∈ [0, 1]^(k × n₁ × … × n_d), one channel
per phase, summing to one at every pixel or voxel: exact 0/1 indicators for a labelled
image (:func:`one_hot`), soft ones while an optimiser reconstructs one. Every descriptor
below is a smooth function of x, so a reconstruction can follow its gradient, and gives
the textbook value for 0/1 indicators:

* :func:`volume_fractions`: φ_i = ⟨x_i⟩.
* :func:`two_point`: S₂ⁱ(r) = ⟨x_i(p) x_i(p + r)⟩ over positions p, for every vector r
  with |r_j| ≤ r_max (by FFT). Periodic images wrap around; otherwise the average runs
  over the pairs inside the image only (zero padding, divided by the overlap count).
* :func:`lineal_path`: Lⁱ(l) = ⟨∏_{s=0}^{l} x_i(p + s e)⟩, the probability that a
  segment of l + 1 pixels along axis e lies in phase i (Torquato's lineal path);
  the product makes it exact for 0/1 indicators and differentiable in between.
* :func:`total_variation`: ⟨|x(p + e) − x(p)|⟩ summed over axes: the interface density.
* :func:`gram_matrices`: Gatys' texture descriptor, G_l = F_l F_lᵀ / (C_l M_l) of the
  activations F_l (C_l channels × M_l positions) of VGG-19 layers for an RGB image.

:func:`cluster_sizes` (connected components, not differentiable) is for evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from deepmat.errors import DataError


def one_hot(labels: np.ndarray | torch.Tensor, n_phases: int | None = None) -> torch.Tensor:
    """Indicators (k, *shape) float32 of a label image or volume of phases 0 … k − 1."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if labels.ndim not in (2, 3) or labels.numel() == 0:
        raise DataError(f"a phase map is a 2-D or 3-D array, got shape {tuple(labels.shape)}")
    if int(labels.min()) < 0:
        raise DataError(f"phase labels are 0, 1, …; found {int(labels.min())}")
    n_phases = n_phases or int(labels.max()) + 1
    if int(labels.max()) >= n_phases:
        raise DataError(f"phase label {int(labels.max())} for {n_phases} phases")
    return torch.movedim(torch.nn.functional.one_hot(labels, n_phases), -1, 0).float()


def _spatial(x: torch.Tensor) -> tuple[int, ...]:
    if x.ndim not in (3, 4):
        raise DataError(f"phase indicators are (phases, n1, n2[, n3]), got shape {tuple(x.shape)}")
    return tuple(range(1, x.ndim))


def volume_fractions(x: torch.Tensor) -> torch.Tensor:
    """φ (k,): the mean of each phase's indicator."""
    return x.mean(dim=_spatial(x))


def two_point(x: torch.Tensor, r_max: int, periodic: bool = True) -> torch.Tensor:
    """S₂ (k, 2r_max + 1, …) of every phase, r = 0 at the centre of each axis."""
    axes = _spatial(x)
    shape = x.shape[1:]
    if not 0 <= r_max <= min(shape) // 2 - (1 if periodic else 0):
        raise DataError(f"r_max {r_max} does not fit a {'×'.join(map(str, shape))} image")
    if periodic:
        spectrum = torch.fft.rfftn(x, dim=axes)
        s2 = torch.fft.irfftn(spectrum.abs() ** 2, s=shape, dim=axes) / float(np.prod(shape))
    else:
        padded = [2 * n for n in shape]
        spectrum = torch.fft.rfftn(x, s=padded, dim=axes)
        products = torch.fft.irfftn(spectrum.abs() ** 2, s=padded, dim=axes)
        ones = torch.fft.rfftn(torch.ones(shape, dtype=x.dtype), s=padded)
        pairs = torch.fft.irfftn(ones.abs() ** 2, s=padded).round().clamp(min=1)
        s2 = products / pairs
    s2 = torch.fft.fftshift(s2, dim=axes)
    centre = [n // 2 for n in s2.shape[1:]]
    window = tuple(slice(c - r_max, c + r_max + 1) for c in centre)
    return s2[(slice(None), *window)]


def lineal_path(x: torch.Tensor, max_length: int, periodic: bool = True) -> torch.Tensor:
    """L (k, d, max_length + 1): the lineal path of every phase along each of the d axes,
    segments of 1 … max_length + 1 pixels."""
    axes = _spatial(x)
    if not 0 <= max_length < min(x.shape[1:]):
        raise DataError(f"segments of {max_length + 1} px do not fit shape {tuple(x.shape[1:])}")
    out = []
    for axis in axes:
        segment, curve = x, [x.mean(dim=axes)]
        for step in range(1, max_length + 1):
            if periodic:
                segment = segment * torch.roll(x, -step, dims=axis)
            else:
                n = segment.shape[axis]
                segment = segment.narrow(axis, 0, n - 1) * x.narrow(axis, step, n - 1)
            curve.append(segment.mean(dim=axes))
        out.append(torch.stack(curve, dim=-1))
    return torch.stack(out, dim=1)


def total_variation(x: torch.Tensor, periodic: bool = True) -> torch.Tensor:
    """(k,): the mean absolute difference between neighbours, summed over the axes."""
    axes = _spatial(x)
    total = 0.0
    for axis in axes:
        difference = torch.roll(x, -1, dims=axis) - x if periodic else torch.diff(x, dim=axis)
        total = total + difference.abs().mean(dim=axes)
    return total


def gram_matrices(
    features: dict[str, torch.Tensor], layers: Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """G_l (B, C_l, C_l) of VGG-19 activations ``features`` (layer → (B, C_l, H, W)), for
    ``layers`` (default: all given)."""
    grams = {}
    for name in layers or list(features):
        f = features[name].flatten(2)
        grams[name] = f @ f.transpose(1, 2) / (f.shape[1] * f.shape[2])
    return grams


def cluster_sizes(labels: np.ndarray, phase: int) -> np.ndarray:
    """The sizes (pixels or voxels) of the connected clusters of ``phase`` (faces touching;
    not wrapped around)."""
    components, n = ndimage.label(np.asarray(labels) == phase)
    return np.bincount(components.ravel(), minlength=n + 1)[1:]
