"""The segmentation estimator: micrographs in, a class per pixel out.

:class:`SegmentationModel` trains a :class:`~deepmat.models.segmentation.VGGUNet` or a
:class:`~deepmat.models.segmentation.HypercolumnNet` on labelled
:class:`~deepmat.data.micrographs.Micrograph` s. Training cuts every image into tiles of
``spec.tile`` pixels (half-overlapping; smaller images padded by reflection, their padding
unlabelled) after resizing it by ``spec.scale`` (a coarser pixel for large images: the same
network then sees more of the micrograph for less compute), and augments each tile
(:mod:`deepmat.train.segmentation_augment`).
PixelNet trains on ``spec.pixels`` pixels drawn per tile, as its authors did. The best epoch
is the one with the lowest loss on the validation tiles. Prediction runs the network on
overlapping tiles of any image size and blends them (:mod:`deepmat.train.tiling`), and
brings the class scores back to the image's own pixels;
evaluation scores the whole validation images (:mod:`deepmat.train.segmentation_metrics`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deepmat.data.micrographs import ClassMap, Micrograph
from deepmat.errors import ConfigError, DataError
from deepmat.models.segmentation import HypercolumnNet, VGGUNet, vgg19_encoder
from deepmat.models.vgg import VGG19_WIDTHS
from deepmat.train.config import FitResult, TargetScaler, TrainConfig
from deepmat.train.estimator import Estimator
from deepmat.train.search_space import (
    Choice,
    FloatRange,
    IntRange,
    SearchSpace,
    split_values,
)
from deepmat.train.segmentation_augment import MicrographAugment
from deepmat.train.segmentation_curve import ValidationCurve
from deepmat.train.segmentation_losses import IGNORE, SegmentationLoss, inverse_frequency_weights
from deepmat.train.segmentation_metrics import segmentation_metrics
from deepmat.train.tiling import predict_tiled, window_starts
from deepmat.train.weights import load_weights, save_weights

KINDS = ("unet", "pixelnet")
SEGMENTATION_CONFIG = {
    "batch_size": 4,
    "lr": 1e-3,
    "schedule": "onecycle",
    "loss": "l1",
    "precision": "bf16-mixed",
}

#: what a search varies in a segmentation network: U-Net or PixelNet, the VGG-19 blocks of
#: the encoder, the U-Net decoder's narrowest width (doubling towards the encoder, 4 widths),
#: PixelNet's hidden width, the tile the network sees, and the training rate and batch
SEGMENTATION_SEARCH_SPACE = SearchSpace(
    {
        "kind": Choice(KINDS),
        "depth": IntRange(2, 5),
        "decoder_width": IntRange(8, 64, log=True),
        "hidden": IntRange(128, 1024, log=True),
        "tile": Choice((128, 192, 256)),
        "lr": FloatRange(3e-4, 3e-3, log=True),
        "batch_size": Choice((2, 4, 8)),
    }
)


@dataclass(frozen=True)
class SegmentationSpec:
    """The network: ``kind`` (``unet`` or ``pixelnet``), an ImageNet (``pretrained``) or
    random VGG-19 encoder of its first ``depth`` blocks (2–5: fewer is faster and smaller,
    with a narrower field of view), the U-Net's decoder widths (the last depth − 1 are
    used) or PixelNet's hidden width and pixels drawn per training tile, the tile size, the
    factor images are resized by before the network (``scale`` ≤ 1; labels and scores stay
    at the image's own pixels), the image channels (1 grey, 3 RGB) and the encoder blocks'
    channels (VGG-19's; read from the weights when pretrained)."""

    kind: str = "unet"
    pretrained: bool = True
    depth: int = 3
    decoder: tuple[int, int, int, int] = (256, 128, 64, 32)
    hidden: int = 1024
    pixels: int = 2048
    tile: int = 256
    scale: float = 1.0
    channels: int = 1
    widths: tuple[int, ...] = VGG19_WIDTHS

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"segmentation network {self.kind!r} is not one of {KINDS}")
        if self.depth not in range(2, len(VGG19_WIDTHS) + 1):
            raise ConfigError(f"the encoder has 2 to 5 VGG-19 blocks, not {self.depth!r}")
        if not 0.1 <= self.scale <= 1.0:
            raise ConfigError(f"images are resized by a scale in [0.1, 1], not {self.scale!r}")
        if self.tile < 32 or self.tile % 16:
            raise ConfigError(f"tiles are a multiple of 16 pixels, at least 32; got {self.tile}")

    def build(self, n_classes: int) -> nn.Module:
        encoder = vgg19_encoder(self.pretrained, self.widths, blocks=self.depth)
        if self.kind == "unet":
            return VGGUNet(n_classes, encoder, self.decoder)
        return HypercolumnNet(n_classes, encoder, self.hidden)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SegmentationSpec:
        return cls(**(data | {k: tuple(data[k]) for k in ("decoder", "widths")}))


class SampledPixels(nn.Module):
    """PixelNet in training: logits at ``pixels`` random positions of each tile, with those
    positions, so that :class:`SampledLoss` scores the same pixels' labels."""

    def __init__(self, net: HypercolumnNet, pixels: int):
        super().__init__()
        self.net, self.pixels = net, pixels

    def forward(self, x: torch.Tensor):
        generator = None if self.training else torch.Generator().manual_seed(0)
        b, _, h, w = x.shape
        flat = torch.randint(0, h * w, (b, self.pixels), generator=generator)
        points = torch.stack([flat // w, flat % w], dim=-1).to(x.device)
        return self.net(x, pixels=points), points


class SampledLoss(nn.Module):
    """A segmentation loss on PixelNet's sampled logits (B, P, K) and their positions."""

    def __init__(self, loss: SegmentationLoss):
        super().__init__()
        self.loss = loss

    def forward(self, prediction, labels: torch.Tensor) -> torch.Tensor:
        logits, points = prediction
        picked = labels[torch.arange(len(labels))[:, None], points[..., 0], points[..., 1]]
        return self.loss(logits.transpose(1, 2), picked)


class SegmentationModel(Estimator):
    """A U-Net or PixelNet on VGG-19 that labels each pixel of a micrograph.

    ``class_map`` names the classes (and how masks encode them; kept in the card), ``loss``
    is ``focal`` (α from the training pixels' inverse class frequencies), ``dice_ce`` or
    ``ce``. Presets: ``default`` the ImageNet U-Net on three VGG-19 blocks with the focal
    loss, one-cycle Adam 1e-3, batch 4, 40 epochs, bfloat16 mixed precision; ``paper``
    PixelNet with the focal loss as DeCost et al.; ``benchmark`` the U-Net with Dice +
    cross-entropy. No standard deviations.
    """

    family = "segmentation-network"
    search_space: ClassVar[SearchSpace] = SEGMENTATION_SEARCH_SPACE
    search_start: ClassVar[dict] = {
        "kind": "unet",
        "depth": 3,
        "decoder_width": 32,
        "hidden": 1024,
        "tile": 256,
        "lr": 1e-3,
        "batch_size": 4,
    }
    input_kind: ClassVar[str] = "micrograph"
    output_kind: ClassVar[str] = "labels"
    presets: ClassVar[dict] = {
        "default": {"config": SEGMENTATION_CONFIG | {"epochs": 40, "patience": 40}},
        "paper": {
            "spec": SegmentationSpec(kind="pixelnet"),
            "config": SEGMENTATION_CONFIG | {"epochs": 40, "patience": 40},
        },
        "benchmark": {
            "loss": "dice_ce",
            "config": SEGMENTATION_CONFIG | {"epochs": 40, "patience": 40},
        },
    }

    def __init__(
        self,
        class_map: ClassMap,
        spec: SegmentationSpec | None = None,
        config: TrainConfig | None = None,
        loss: str = "focal",
        name: str = "segmentation",
        class_weights: list[float] | None = None,
    ):
        self.class_map, self.spec = class_map, spec or SegmentationSpec()
        self.loss_name, self.name, self.class_weights = loss, name, class_weights
        SegmentationLoss(loss)  # refuses an unknown loss now, not after loading the data
        self.config = config or TrainConfig(**self.presets["default"]["config"])
        torch.manual_seed(self.config.seed)
        self.net = self.spec.build(len(class_map.names))
        self.spec = dataclasses.replace(self.spec, widths=tuple(self.net.encoder.widths))
        self.fit_result = FitResult()
        self.training: dict = {}
        self.metrics: dict = {}

    def searched(self, values: Mapping[str, Any]) -> Self:
        """A new, untrained network like this one (classes, encoder weights, channels, loss,
        scale, training options) at ``values`` of :data:`SEGMENTATION_SEARCH_SPACE`; the
        focal loss's class weights are found again from the training labels."""
        architecture, training = split_values(values)
        a = architecture
        spec = dataclasses.replace(
            self.spec,
            kind=a["kind"],
            depth=a["depth"],
            decoder=tuple(a["decoder_width"] * 2**i for i in (3, 2, 1, 0)),
            hidden=a["hidden"],
            tile=a["tile"],
        )
        config = dataclasses.replace(self.config, **training)
        return type(self)(self.class_map, spec, config, self.loss_name, self.name)

    @property
    def n_classes(self) -> int:
        return len(self.class_map.names)

    def fit(
        self,
        X: list[Micrograph],
        y=None,
        *,
        val: list[Micrograph] | None = None,
        workdir: str | Path | None = None,
        resume: bool = True,
        curve_points: int = 10,
    ) -> SegmentationModel:
        """Train on labelled micrographs ``X``, picking the best epoch on ``val`` (the
        labelled validation micrographs, required: a few images cannot spare a random
        part); checkpoints go to ``workdir``. The whole validation images are scored at
        ``curve_points`` evenly spaced epochs (0: none), the learning curve kept in
        ``training["curve"]``."""
        from deepmat.train.trainer import fit_network, training_callbacks

        start = time.perf_counter()
        self._check_labelled(X, "training")
        if not val:
            raise DataError("segmentation training needs labelled validation micrographs")
        self._check_labelled(val, "validation")
        x, labels = self.tiles(X)
        x_val, labels_val = self.tiles(val, stride=self.spec.tile)
        if self.loss_name == "focal" and self.class_weights is None:
            weights = inverse_frequency_weights([m.labels for m in X], self.n_classes)
            self.class_weights = weights.tolist()
        loss = SegmentationLoss(self.loss_name, self.class_weights)
        net, task_loss = self.net, loss
        if self.spec.kind == "pixelnet":
            net, task_loss = SampledPixels(self.net, self.spec.pixels), SampledLoss(loss)
        self.warm_start()
        curve = ValidationCurve(self, val, curve_points)
        with (
            tempfile.TemporaryDirectory(prefix="deepmat-seg-") as scratch,
            training_callbacks(curve),
        ):
            self.fit_result = fit_network(
                net,
                x,
                labels,
                x_val,
                labels_val,
                self.config,
                workdir if workdir is not None else scratch,
                TargetScaler(),
                resume,
                augment=MicrographAugment(self.config.seed),
                val_batch_size=self.config.batch_size,
                loss=task_loss,
            )
        self.metrics["val"] = self.evaluate(val)
        self.training = self.fit_result.record(self.config) | {
            "seconds": round(time.perf_counter() - start, 2),
            "n_train_images": len(X),
            "n_val_images": len(val),
            "n_train_tiles": len(x),
            "class_weights": self.class_weights,
            "curve": curve.points,
        }
        return self

    def predict(self, X, return_std: bool = False) -> list[np.ndarray]:
        """A label image (uint8, the image's height × width) for each micrograph (or
        image array in [0, 1]) of ``X``."""
        if return_std:
            raise self.no_uncertainty("segmentation networks give class labels")
        return [scores.argmax(0).numpy().astype(np.uint8) for scores in self.predict_scores(X)]

    def predict_scores(self, X) -> list[torch.Tensor]:
        """Class probabilities (K, H, W) for each image of ``X``."""
        net, tile, out = self.net.eval(), self.spec.tile, []
        for m in self._images(X):
            image = self._channels_first(m)
            logits = predict_tiled(net, self._scaled(image), tile, tile // 4)
            if logits.shape[-2:] != image.shape[-2:]:
                logits = F.interpolate(logits[None], size=image.shape[-2:], mode="bilinear")[0]
            out.append(torch.softmax(logits, dim=0))
        return out

    def evaluate(self, X: list[Micrograph], y=None) -> dict:
        """:func:`~deepmat.train.segmentation_metrics.segmentation_metrics` on the labelled
        micrographs ``X``, whole images."""
        return self.score_labels(X, self.predict(X))

    def score_labels(self, X: list[Micrograph], predictions: list[np.ndarray]) -> dict:
        """The metrics of :meth:`evaluate` for label images already predicted for ``X``."""
        self._check_labelled(X, "evaluation")
        return segmentation_metrics([m.labels for m in X], predictions, self.class_map.names)

    def tiles(self, micrographs: list[Micrograph], stride: int | None = None):
        """(N, C, tile, tile) float32 images and (N, tile, tile) uint8 labels cut from the
        micrographs with ``stride`` (half a tile by default)."""
        tile = self.spec.tile
        stride = stride or tile // 2
        images, labels = [], []
        for m in micrographs:
            x, lab = self._scaled(self._channels_first(m), m.labels)
            pad_h, pad_w = max(tile - x.shape[1], 0), max(tile - x.shape[2], 0)
            if pad_h or pad_w:
                x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
                lab = np.pad(lab, ((0, pad_h), (0, pad_w)), constant_values=IGNORE)
            for top in window_starts(x.shape[1], tile, tile - stride):
                for left in window_starts(x.shape[2], tile, tile - stride):
                    images.append(x[:, top : top + tile, left : left + tile])
                    labels.append(lab[top : top + tile, left : left + tile])
        return np.stack(images).astype(np.float32), np.stack(labels).astype(np.uint8)

    def card(self) -> dict:
        return {
            "family": self.family,
            "model": self.name,
            "input": self.input_kind,
            "output": "labels",
            "classes": self.class_map.to_dict(),
            "architecture": self.spec.to_dict(),
            "loss": {"name": self.loss_name, "class_weights": self.class_weights},
            "training": self.training,
            "metrics": self.metrics,
        }

    def save_state(self, path: Path) -> None:
        save_weights(self.net, path)

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> SegmentationModel:
        spec = dataclasses.replace(
            SegmentationSpec.from_dict(card["architecture"]), pretrained=False
        )  # the saved weights replace the encoder's: no need to install ImageNet's
        model = cls(
            ClassMap.from_dict(card["classes"]),
            spec,
            cls.saved_config(card),
            loss=card["loss"]["name"],
            name=card["model"],
            class_weights=card["loss"]["class_weights"],
        )
        model.spec = SegmentationSpec.from_dict(card["architecture"])
        load_weights(model.net, path)
        model.restore_record(card)
        return model

    def _channels_first(self, m: Micrograph | np.ndarray) -> np.ndarray:
        image = m.image if isinstance(m, Micrograph) else np.asarray(m, dtype=np.float32)
        if image.ndim == 2:
            image = image[None]
        elif image.ndim == 3 and image.shape[-1] == 3:
            image = np.moveaxis(image, -1, 0)
        else:
            raise DataError(
                f"{getattr(m, 'source', 'an image')}: expected (H, W) grey or (H, W, 3) RGB, "
                f"got {image.shape}"
            )
        if image.shape[0] != self.spec.channels:
            image = image.mean(0, keepdims=True) if self.spec.channels == 1 else image.repeat(3, 0)
        return image

    def _scaled(self, image: np.ndarray, labels: np.ndarray | None = None):
        """A (C, H, W) image resized by ``spec.scale`` (area averaging), and its labels
        (nearest pixel) when given."""
        if self.spec.scale == 1.0:
            return image if labels is None else (image, labels)
        size = [max(round(n * self.spec.scale), 1) for n in image.shape[-2:]]
        small = F.interpolate(torch.from_numpy(image)[None], size=size, mode="area")[0].numpy()
        if labels is None:
            return small
        lab = torch.from_numpy(labels.astype(np.int64))[None, None].float()
        lab = F.interpolate(lab, size=size, mode="nearest-exact")[0, 0].numpy().astype(np.uint8)
        return small, lab

    def _images(self, X) -> list:
        if isinstance(X, (Micrograph, np.ndarray)):
            X = [X]
        if not len(X):
            raise DataError("no images to segment")
        return list(X)

    def _check_labelled(self, micrographs: list[Micrograph], what: str) -> None:
        if not micrographs:
            raise DataError(f"no {what} micrographs")
        for m in micrographs:
            if m.labels is None:
                raise DataError(f"{m.source or m.name}: {what} needs its mask")
            if m.labels.shape != m.shape:
                raise DataError(
                    f"{m.source or m.name}: image {m.shape} but labels {m.labels.shape}"
                )
            known = m.labels[m.labels != IGNORE]
            if known.size and known.max() >= self.n_classes:
                raise DataError(
                    f"{m.source or m.name}: label {int(known.max())} for "
                    f"{self.n_classes} classes ({self.class_map.describe()})"
                )
