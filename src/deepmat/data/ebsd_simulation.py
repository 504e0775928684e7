"""Simulated EBSD patterns: the physics of the training data and of indexing dictionaries.

The orientation CNN (after Jha et al. 2018: 60×60 patterns of nickel, cubic m-3m) learns from
patterns projected from a dynamical master pattern, and is compared with dictionary indexing
against the same simulations. kikuchipy does the physics (master pattern, detector geometry,
projection) and orix the orientations; pattern files are :mod:`deepmat.data.ebsd`.

- :func:`master_pattern`: kikuchipy's shipped EMsoft nickel master pattern (20 kV, square
  Lambert projection, both hemispheres; offline) or a master pattern file.
- :class:`DetectorSpec`: the detector and its geometry, a JSON-friendly record of a
  :class:`kikuchipy.detectors.EBSDDetector`. The projection centre is in kikuchipy's default
  (Bruker) convention; the default is that of ``kikuchipy.data.nickel_ebsd_small()``.
- :func:`sample_orientations`: an equispaced grid over the fundamental zone (orix) or seeded
  uniformly random orientations reduced into it.
- :func:`simulate_patterns`: float32 patterns (n, height, width), rows top to bottom, in the
  master pattern's own intensity units (0–255 for the shipped one; not rescaled per pattern).
- :class:`NoiseSpec`: the earlier, fixed degradation (a centred background hump, shot and
  read-out noise, output), kept because pattern files and model cards record it; it is the
  camera spec :meth:`NoiseSpec.to_camera` (every range a single value, the hump centred
  with standard deviation 0.5) and gives bit for bit the same patterns.
- :func:`apply_noise`: patterns already projected, degraded by a :class:`NoiseSpec` or by a
  camera spec without geometry effects; :func:`simulate_patterns` applies a whole camera spec.

The camera model for domain randomisation (CameraSpec) is :mod:`deepmat.data.ebsd_camera`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kikuchipy as kp
import numpy as np
import orix.crystal_map
import orix.quaternion
import orix.sampling

from deepmat.data.ebsd_camera import (
    _BACKGROUND_SIGMA,
    NOISE_OUTPUTS,
    CameraDraw,
    CameraSpec,
    _finite_floats,
    camera_draws,
    expose,
    positive_ints,
)
from deepmat.data.microstructures import chunked
from deepmat.errors import ConfigError, DataError
from deepmat.physics.orientations import point_group_symmetry
from deepmat.specs import JsonSpec

if TYPE_CHECKING:
    from kikuchipy.detectors import EBSDDetector
    from kikuchipy.signals import EBSDMasterPattern
    from orix.quaternion import Rotation
    from orix.quaternion.symmetry import Symmetry

SHIPPED_MASTER = "kikuchipy.data.nickel_ebsd_master_pattern_small"


DEFAULT_PC = (0.425, 0.213, 0.501)


_TILT_AXIS = (0.0, 1.0, 0.0)  # kikuchipy's sample and detector tilts both turn about it
#: patterns projected at once by :func:`simulate_patterns`
SIMULATION_CHUNK = 1024


def master_pattern(path: str | Path | None = None) -> EBSDMasterPattern:
    """An EBSD master pattern in the square Lambert projection, both hemispheres.

    ``None`` gives kikuchipy's shipped nickel master pattern (EMsoft, 20 kV, 401×401, uint8),
    which needs no download. A path is read with :func:`kikuchipy.load`; a file that is not
    a master pattern (an EBSD pattern file, another HDF5 file) is a :class:`DataError`.
    """
    if path is None:
        return kp.data.nickel_ebsd_master_pattern_small(projection="lambert", hemisphere="both")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        signal = kp.load(path, projection="lambert", hemisphere="both")
    except TypeError:  # the reader of this format takes no projection: not a master pattern
        signal = _load_any(path)
    except Exception as exc:  # kikuchipy's readers raise many kinds of errors
        raise DataError(f"{path}: kikuchipy cannot read it as a master pattern: {exc}") from None
    return _checked_master(signal, str(path))


def _load_any(path: Path) -> Any:
    try:
        return kp.load(path, lazy=True)
    except Exception as exc:
        raise DataError(f"{path}: kikuchipy cannot read it: {exc}") from None


def _checked_master(signal: Any, where: str) -> EBSDMasterPattern:
    if not isinstance(signal, kp.signals.EBSDMasterPattern):
        kind = type(signal).__name__.removeprefix("Lazy")
        raise DataError(
            f"{where}: holds {kind}, not an EBSD master pattern "
            "(an EMsoft EBSD master pattern file is expected)"
        )
    if signal.projection != "lambert":
        raise DataError(
            f"{where}: the master pattern is in the {signal.projection} projection; "
            "projecting patterns needs the square Lambert projection"
        )
    return signal


@lru_cache(maxsize=4)
def loaded_master(path: str | None) -> EBSDMasterPattern:
    """The master pattern of ``path`` ready to project, loaded once per process."""
    return _float32_master(master_pattern(path))


def _float32_master(master: EBSDMasterPattern) -> EBSDMasterPattern:
    """float32 intensities, so kikuchipy projects them as they are instead of rescaling."""
    if master.data.dtype == np.float32:
        return master
    master = master.deepcopy()
    master.change_dtype("float32")
    return master


def _projection_master(master: EBSDMasterPattern | str | Path | None) -> EBSDMasterPattern:
    if master is None or isinstance(master, str | Path):
        return loaded_master(None if master is None else str(master))
    return _float32_master(_checked_master(master, "master"))


def describe_master(master: EBSDMasterPattern, source: str, energy: float | None) -> dict[str, Any]:
    """The root attribute ``master``: where the patterns came from."""
    return {
        "source": source,
        "title": master.metadata.General.title,
        "phase": master.phase.name,
        "point_group": master.phase.point_group.name,
        "hemisphere": master.hemisphere,
        "energy_kv": _master_energy(master, energy),
    }


def _master_energy(master: EBSDMasterPattern, energy: float | None) -> float | None:
    """The energy projected: the one asked for, the highest of several, or EMsoft's beam energy.

    A master pattern of one energy has no energy axis; its energy is then taken from the
    EMsoft Monte Carlo settings (``EkeV``) when the file records them, else None.
    """
    names = [axis.name for axis in master.axes_manager.navigation_axes]
    if "energy" in names:
        axis = master.axes_manager["energy"].axis
        return float(axis[-1] if energy is None else axis[np.abs(axis - energy).argmin()])
    recorded = master.original_metadata.get_item("MCCLNameList.EkeV")
    return None if recorded is None else float(recorded)


@dataclass(frozen=True)
class DetectorSpec(JsonSpec):
    """An EBSD detector and its geometry; :meth:`detector` makes the kikuchipy detector.

    ``shape``: pattern (height, width) in pixels. ``pc``: projection centre (PCx, PCy, PCz)
    in kikuchipy's default Bruker convention (fractions of the detector width, height and
    height from the top-left corner). ``sample_tilt`` and ``tilt`` (camera tilt) in degrees.
    ``binning`` and ``px_size`` (µm, unbinned) describe the camera; the projection itself
    depends only on the shape, PC and tilts.
    """

    what = "detector spec"

    shape: tuple[int, int] = (60, 60)
    pc: tuple[float, float, float] = DEFAULT_PC
    sample_tilt: float = 70.0
    tilt: float = 0.0
    binning: int = 8
    px_size: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", positive_ints(self.shape, 2, "detector shape"))
        pc = _finite_floats(self.pc, 3, "projection centre pc")
        if pc[2] <= 0:
            raise ConfigError(f"the projection centre's PCz must be positive, got {pc[2]}")
        object.__setattr__(self, "pc", pc)
        for name in ("sample_tilt", "tilt"):
            object.__setattr__(self, name, _finite_floats([getattr(self, name)], 1, name)[0])
        (binning,) = positive_ints([self.binning], 1, "binning")
        object.__setattr__(self, "binning", binning)
        (px_size,) = _finite_floats([self.px_size], 1, "px_size")
        if px_size <= 0:
            raise ConfigError(f"px_size must be positive, got {px_size}")
        object.__setattr__(self, "px_size", px_size)

    def detector(self) -> EBSDDetector:
        """The :class:`kikuchipy.detectors.EBSDDetector` with this geometry."""
        return kp.detectors.EBSDDetector(
            shape=self.shape,
            pc=self.pc,
            sample_tilt=self.sample_tilt,
            tilt=self.tilt,
            binning=self.binning,
            px_size=self.px_size,
        )


@dataclass(frozen=True)
class NoiseSpec(JsonSpec):
    """How clean simulations are degraded: a fixed camera (the model is
    :mod:`deepmat.data.ebsd_camera`'s, steps 2, 5, 7 and 10).

    ``counts``: expected electrons at the brightest clean pixel (Poisson shot noise), None
    for none. ``gaussian_sigma``: read-out noise, a fraction of the brightest clean pixel.
    ``background``: amplitude of the smooth background hump, same unit. ``output``:
    ``"float"`` (float32) or ``"uint8"`` (each pattern stretched onto 0–255).
    """

    what = "noise spec"

    counts: float | None = None
    gaussian_sigma: float = 0.0
    background: float = 0.0
    output: str = "float"

    def __post_init__(self) -> None:
        if self.counts is not None:
            (counts,) = _finite_floats([self.counts], 1, "counts")
            if counts <= 0:
                raise ConfigError(f"counts must be positive (or None for no shot noise): {counts}")
            object.__setattr__(self, "counts", counts)
        for name in ("gaussian_sigma", "background"):
            (value,) = _finite_floats([getattr(self, name)], 1, name)
            if value < 0:
                raise ConfigError(f"{name} must not be negative, got {value}")
            object.__setattr__(self, name, value)
        if self.output not in NOISE_OUTPUTS:
            raise ConfigError(
                f"output must be one of {', '.join(NOISE_OUTPUTS)}, got {self.output!r}"
            )

    @property
    def is_identity(self) -> bool:
        """Whether applying this spec changes nothing."""
        return (
            self.counts is None
            and self.gaussian_sigma == 0
            and self.background == 0
            and self.output == "float"
        )

    @property
    def dtype(self) -> np.dtype:
        """The dtype of degraded patterns."""
        return self.to_camera().dtype

    def to_camera(self) -> CameraSpec:
        """The :class:`CameraSpec` that degrades patterns exactly as this spec does: every
        range a single value, the background hump centred, of standard deviation 0.5."""
        return CameraSpec(
            background=self.background,
            background_width=_BACKGROUND_SIGMA,
            counts=self.counts,
            read_noise=self.gaussian_sigma,
            output=self.output,
        )


def sample_orientations(
    resolution_deg: float | None = None,
    n: int | None = None,
    symmetry: str | Symmetry = "m-3m",
    seed: int = 0,
) -> Rotation:
    """Orientations in the fundamental zone of ``symmetry`` (a point group name or orix group).

    Exactly one of ``resolution_deg`` (an equispaced cubochoric grid with that spacing, from
    :func:`orix.sampling.get_sample_fundamental`) and ``n`` (that many rotations drawn
    uniformly from SO(3) with ``seed``, then reduced into the zone, so uniform over it).
    """
    if (resolution_deg is None) == (n is None):
        raise ConfigError("give exactly one of resolution_deg (a grid) and n (random rotations)")
    point_group = point_group_symmetry(symmetry)
    if resolution_deg is not None:
        (resolution,) = _finite_floats([resolution_deg], 1, "resolution_deg")
        if resolution <= 0:
            raise ConfigError(f"resolution_deg must be positive, got {resolution_deg}")
        return orix.sampling.get_sample_fundamental(resolution, point_group=point_group)
    (count,) = positive_ints([n], 1, "n")
    quaternions = np.random.default_rng(check_seed(seed)).standard_normal((count, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    reduced = orix.quaternion.Orientation(quaternions, symmetry=point_group).reduce()
    return orix.quaternion.Rotation(reduced.data)


Degradation = NoiseSpec | CameraSpec | None


def as_camera(noise: Degradation) -> CameraSpec | None:
    """``noise`` as a camera spec (a :class:`NoiseSpec` converted exactly), or None."""
    return noise.to_camera() if isinstance(noise, NoiseSpec) else noise


def apply_noise(patterns: np.ndarray, noise: Degradation, seed: int = 0) -> np.ndarray:
    """``patterns`` (n, height, width) degraded by ``noise`` (the camera model of
    :mod:`deepmat.data.ebsd_camera`).

    Pattern i draws from ``np.random.SeedSequence(seed).spawn(n)[i]``. ``None`` or a spec with
    everything off returns the patterns as float32, unchanged. A camera spec with effects on
    the geometry (projection-centre or tilt jitter, binning) needs the projection: use
    :func:`simulate_patterns`.
    """
    return degrade(pattern_batch(patterns, "patterns"), noise, check_seed(seed), 0)


def degrade(patterns: np.ndarray, noise: Degradation, seed: int, start: int) -> np.ndarray:
    """Patterns start, start + 1, ... of a set seeded with ``seed``, degraded."""
    camera = as_camera(noise)
    if camera is None or camera.is_identity:
        return patterns.astype(np.float32, copy=False)
    if camera.has_geometry:
        raise ConfigError(
            "this camera spec moves the projection (pc_jitter, tilt_jitter or binning): "
            "apply it while simulating (simulate_patterns, write_pattern_dataset), not to "
            "patterns already projected"
        )
    return expose(patterns, camera, camera_draws(camera, len(patterns), seed, start), seed, start)


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def simulate_patterns(
    rotations: Rotation,
    detector_spec: DetectorSpec | None = None,
    master: EBSDMasterPattern | str | Path | None = None,
    noise: Degradation = None,
    seed: int = 0,
    *,
    energy: float | None = None,
) -> np.ndarray:
    """EBSD patterns (n, height, width) of ``rotations`` (flattened) on the detector.

    Projected by :meth:`kikuchipy.signals.EBSDMasterPattern.get_patterns` from ``master`` (a
    signal, a file, or None for the shipped nickel one) at ``energy`` (kV; None: the highest,
    or the only one), then degraded by ``noise`` (a :class:`CameraSpec`, whose geometry
    acts on the projection, or a :class:`NoiseSpec`) with ``seed``. Clean patterns are
    float32 in the master pattern's intensity units; degraded ones have the spec's dtype.
    """
    rotations = rotation_batch(rotations)
    spec = detector_spec or DetectorSpec()
    master = _projection_master(master)
    seed = check_seed(seed)
    patterns = [
        render(master, rotations[r.start : r.stop], spec, noise, seed, r.start, energy, "threads")
        for r in chunked(range(rotations.size), SIMULATION_CHUNK)
    ]
    return np.concatenate(patterns)


def render(
    master: EBSDMasterPattern,
    rotations: Rotation,
    spec: DetectorSpec,
    noise: Degradation,
    seed: int,
    start: int,
    energy: float | None,
    scheduler: str,
) -> np.ndarray:
    """Patterns start, start + 1, ... of a set seeded with ``seed``: projected (with the
    camera's geometry, if any) and degraded."""
    camera = as_camera(noise)
    if camera is None or camera.is_identity:
        return project(master, rotations, spec, energy, scheduler)
    draws = camera_draws(camera, rotations.size, seed, start)
    clean = project_camera(master, rotations, spec, camera, draws, energy, scheduler)
    return expose(clean, camera, draws, seed, start)


def project(
    master: EBSDMasterPattern,
    rotations: Rotation,
    spec: DetectorSpec | EBSDDetector,
    energy: float | None,
    scheduler: str,
) -> np.ndarray:
    """Clean float32 patterns; ``scheduler`` runs kikuchipy's Dask graph."""
    detector = spec.detector() if isinstance(spec, DetectorSpec) else spec
    lazy = master.get_patterns(
        rotations, detector, energy=energy, dtype_out="float32", compute=False
    )
    return np.asarray(lazy.data.compute(scheduler=scheduler))


def project_camera(
    master: EBSDMasterPattern,
    rotations: Rotation,
    spec: DetectorSpec,
    camera: CameraSpec,
    draws: list[CameraDraw],
    energy: float | None,
    scheduler: str,
) -> np.ndarray:
    """Clean patterns with the camera's geometry (step 1 of the model in
    :mod:`deepmat.data.ebsd_camera`): each pattern's tilt as a rotation of its crystal, its
    projection centre on a kikuchipy detector with one PC per pattern, projected ``binning``
    times finer and averaged down."""
    if camera.tilt_jitter:
        tilts = np.radians([draw.tilt for draw in draws])
        rotations = rotations * orix.quaternion.Rotation.from_axes_angles(_TILT_AXIS, tilts)
    height, width = spec.shape
    binning = camera.binning
    fine = replace(spec, shape=(height * binning, width * binning))
    detector: DetectorSpec | EBSDDetector = fine
    if any(camera.pc_jitter):
        pcs = np.asarray(spec.pc) + np.array([draw.pc_shift for draw in draws])
        if (pcs[:, 2] <= 0).any():
            raise ConfigError(
                f"pc_jitter {camera.pc_jitter} moves PCz {spec.pc[2]} to zero or below"
            )
        detector = kp.detectors.EBSDDetector(
            shape=fine.shape,
            pc=pcs,
            sample_tilt=spec.sample_tilt,
            tilt=spec.tilt,
            binning=spec.binning,
            px_size=spec.px_size,
        )
    patterns = project(master, rotations, detector, energy, scheduler)
    if binning > 1:
        blocks = patterns.reshape(len(patterns), height, binning, width, binning)
        patterns = blocks.mean(axis=(2, 4), dtype=np.float64).astype(np.float32)
    return patterns


def rotation_batch(rotations: Rotation) -> Rotation:
    if not isinstance(rotations, orix.quaternion.Rotation):
        raise DataError(f"rotations must be an orix Rotation, got {type(rotations).__name__}")
    if rotations.size == 0:
        raise DataError("rotations is empty: there is nothing to simulate")
    return rotations.flatten()


def pattern_batch(patterns: np.ndarray, what: str) -> np.ndarray:
    """``patterns`` as a checked non-empty (n, height, width) array of finite numbers."""
    array = np.asarray(patterns)
    if array.ndim != 3 or 0 in array.shape:
        raise DataError(f"{what} must be a non-empty (n, height, width) array, got {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise DataError(f"{what} must be numbers, got dtype {array.dtype}")
    check_finite(what, array, "pattern")
    return array


def check_finite(where: Path | str, patterns: np.ndarray, what: str) -> None:
    """A DataError naming the first pattern with NaN or infinite pixels, if any."""
    if not np.issubdtype(patterns.dtype, np.floating):
        return
    bad = ~np.isfinite(patterns.reshape(len(patterns), -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"{where}: {what} {int(np.argmax(bad))} holds NaN or infinite pixels "
            f"({int(bad.sum())} {what}(s) in all)"
        )
