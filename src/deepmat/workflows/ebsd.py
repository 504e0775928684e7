"""EBSD jobs: simulated pattern files, the orientation CNN trained on them, and the indexing of
pattern files by a saved CNN or by a dictionary of simulated patterns.

Patterns to index come from a deepmat pattern set (``deepmat ebsd simulate``,
:func:`~deepmat.data.ebsd.write_pattern_dataset`) or from any file kikuchipy loads as EBSD
(kikuchipy h5ebsd, EDAX/Bruker/Oxford h5ebsd, NORDIF, EMsoft, ...); :func:`read_scan` turns
either into a :class:`Scan`, which holds the patterns as stored and the file's static
background, if any. Experimental patterns sit on a smooth backscatter background that
clean simulations lack: on kikuchipy's nickel scan (``kikuchipy.data.nickel_ebsd_small()``),
dictionary indexing of the raw patterns misses the stored orientations by about 27°, while
after kikuchipy's static background removal (with the background stored in the file) and
dynamic background removal every pattern is found to the dictionary's resolution.

Every pattern goes through one preprocessing, a
:class:`~deepmat.represent.patterns.PreprocessSpec` (:func:`prepare_scan`): an orientation
model whose card has one that removes backgrounds gets a scan's raw patterns and its static
background and prepares them itself, exactly as its (camera-model) training patterns were;
for dictionaries and for models that only standardise (those trained on clean simulations,
and every model saved before the spec existed) the patterns of files kikuchipy reads are
first corrected by :data:`~deepmat.represent.patterns.BACKGROUND_CORRECTION` (static, then
dynamic background subtraction) unless told not to, and simulated sets are indexed as made.
Before that, the patterns of a map can be averaged with their neighbours (NLPAR,
:func:`average_scan`), which lifts noisy patterns for every indexer: on the nickel scan it
takes the shipped CNN from 2.6° to 1.2° off the stored orientations.

A model or dictionary applies only to patterns of its detector: the pattern shape must match
(an error otherwise) and a projection centre more than :data:`PC_TOLERANCE` away is reported
as a note, since the bands then fall elsewhere on the detector than in training.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import kikuchipy as kp
import numpy as np
import pandas as pd
from orix.quaternion import Orientation, Rotation

from deepmat.data.ebsd import (
    FORMAT,
    PatternDataset,
    PatternReport,
    combine_pattern_sets,
    degradation_attrs,
    read_pattern_dataset,
    size_text,
    write_pattern_dataset,
)
from deepmat.data.ebsd_simulation import (
    Degradation,
    DetectorSpec,
    master_pattern,
    sample_orientations,
)
from deepmat.data.voxels import decode_attr
from deepmat.errors import ConfigError, DataError, ModelFormatError
from deepmat.models.ebsd import ORIENTATION_CNN_SMALL, OrientationCNNSpec
from deepmat.physics.cubic_embedding import supports_cubic_embedding
from deepmat.physics.orientations import disorientation_angle, point_group_symmetry
from deepmat.represent.pattern_averaging import NeighbourAveraging, average_neighbours
from deepmat.represent.patterns import BACKGROUND_CORRECTION, PreprocessSpec
from deepmat.train.config import TrainConfig
from deepmat.train.dictionary import dictionary_index
from deepmat.train.ebsd import OrientationCNNRegressor, orientation_metrics
from deepmat.train.saved import save_model

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from rich.console import Console

# Largest difference of any projection centre coordinate (fractions of the detector) between
# the patterns and the model's or dictionary's detector that is not reported.
PC_TOLERANCE = 0.01


def simulate_pattern_file(
    out: str | Path,
    *,
    resolution: float | None = None,
    n: int | None = None,
    detector: DetectorSpec | None = None,
    noise: Degradation = None,
    master: str | Path | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> PatternReport:
    """Simulate patterns at a fundamental-zone grid (``resolution``, degrees) or at ``n``
    random orientations (drawn with ``seed``) and write them to ``out``.

    The fundamental zone is that of the master pattern's point group (the shipped nickel
    one's is m-3m); ``noise`` (a :class:`~deepmat.data.ebsd_camera.CameraSpec`, such as
    ``CameraSpec.preset("realistic")``, or a
    :class:`~deepmat.data.ebsd_simulation.NoiseSpec`) None or all off writes clean float32
    patterns.
    """
    if (resolution is None) == (n is None):
        raise ConfigError(
            "give exactly one of --resolution (a grid over the fundamental zone) and "
            "--n (random orientations)"
        )
    symmetry = master_pattern(master).phase.point_group if master is not None else "m-3m"
    rotations = sample_orientations(resolution, n, symmetry, seed)
    return write_pattern_dataset(
        out,
        rotations,
        detector,
        None if noise is None or noise.is_identity else noise,
        master=master,
        seed=seed,
        workers=workers,
        progress=progress,
        console=console,
    )


def train_ebsd(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    val: str | Path | None = None,
    preset: str = "default",
    overrides: dict | None = None,
    val_fraction: float = 0.1,
    resume: bool = True,
    preprocess: PreprocessSpec | None = None,
) -> OrientationCNNRegressor:
    """Train the orientation CNN of ``preset`` (``overrides`` replace single training
    options of it) on the pattern file ``data``, or on several files of one
    detector together (a dictionary and noisy random patterns, say; see
    :func:`~deepmat.data.ebsd.combine_pattern_sets`), as :func:`fit_orientation_cnn` does
    (``preprocess``: the model's preprocessing, None for standardisation alone), and save it
    to ``out`` with the files it learned from in its card."""
    paths = [data] if isinstance(data, str | Path) else list(data)
    train = combine_pattern_sets([read_pattern_dataset(p) for p in paths], [str(p) for p in paths])
    validation = None if val is None else read_pattern_dataset(val)
    if validation is not None and validation.detector.shape != train.detector.shape:
        raise DataError(
            f"{val}: patterns are {size_text(validation.detector.shape)} but the training "
            f"patterns of {paths[0]} are {size_text(train.detector.shape)}"
        )
    arguments = OrientationCNNRegressor.preset_arguments(preset, overrides)
    regressor = fit_orientation_cnn(
        train,
        out,
        val=validation,
        spec=arguments.get("spec", ORIENTATION_CNN_SMALL),
        config=arguments["config"],
        val_fraction=val_fraction,
        resume=resume,
        preprocess=preprocess,
    )
    regressor.training["files"] = {
        "train": [str(p) for p in paths] if len(paths) > 1 else str(paths[0]),
        "val": None if val is None else str(val),
    }
    save_model(regressor, out)
    return regressor


def fit_orientation_cnn(
    train: PatternDataset,
    workdir: str | Path,
    *,
    val: PatternDataset | None = None,
    spec: OrientationCNNSpec = ORIENTATION_CNN_SMALL,
    config: TrainConfig | None = None,
    val_fraction: float = 0.1,
    resume: bool = True,
    preprocess: PreprocessSpec | None = None,
) -> OrientationCNNRegressor:
    """An orientation CNN of ``spec`` (at the pattern shape of ``train``) fitted on ``train``,
    its patterns prepared by ``preprocess`` (None: standardisation alone).

    Early stopping and the best epoch use ``val`` or, without it, a random ``val_fraction``
    of ``train``; checkpoints go to ``workdir``. The loss and metrics use the point group of
    the data's master pattern; a cubic-embedding spec becomes a quaternion one for a phase
    that is not cubic (the embedding describes only 432's rotations). The card records the
    detector and the noise or camera of ``train`` (``training.noise``, ``training.camera``),
    so that indexing can check the geometry of the patterns it is given, and the
    preprocessing (``preprocess``), which prediction applies.
    """
    regressor = orientation_estimator(train, spec, config, val_fraction, preprocess)
    return fit_on_patterns(regressor, train, val, workdir, resume)


def fit_on_patterns(
    regressor: OrientationCNNRegressor,
    train: PatternDataset,
    val: PatternDataset | None,
    workdir: str | Path,
    resume: bool = True,
) -> OrientationCNNRegressor:
    """``regressor`` fitted on ``train`` (best epoch on ``val``, or on a held-out part of
    ``train`` without it), its card recording the detector and the noise or camera of
    ``train``."""
    regressor.fit(
        train.patterns,
        train.rotations,
        val=None if val is None else (val.patterns, val.rotations),
        workdir=workdir,
        resume=resume,
    )
    regressor.training |= {"detector": train.detector.to_dict(), **degradation_attrs(train.noise)}
    return regressor


def orientation_estimator(
    train: PatternDataset,
    spec: OrientationCNNSpec = ORIENTATION_CNN_SMALL,
    config: TrainConfig | None = None,
    val_fraction: float = 0.1,
    preprocess: PreprocessSpec | None = None,
) -> OrientationCNNRegressor:
    """An untrained orientation CNN of ``spec`` for the patterns of ``train``: their pattern
    shape, and the loss and metrics of their point group (a cubic-embedding spec becomes a
    quaternion one for a phase that is not cubic)."""
    point_group = _point_group(train)
    output = spec.output if supports_cubic_embedding(point_group) else "quaternion"
    spec = replace(spec, pattern_shape=train.detector.shape, output=output)
    return OrientationCNNRegressor(
        spec, config, point_group=point_group, val_fraction=val_fraction, preprocess=preprocess
    )


def _point_group(dataset: PatternDataset) -> str:
    return str(dataset.attrs.get("symmetry") or "m-3m")


@dataclass
class Scan:
    """Patterns to index, (n, height, width) as stored, with where they came from.

    ``scan_shape`` is (rows, columns) for a map and (n,) for a set or a line; ``reference``
    holds the orientations the file records (a simulated set's truth, or a kikuchipy file's
    crystal map), if any; ``static_background`` the file's static background (height,
    width), if any; ``experimental`` whether the patterns come from a camera (a file
    kikuchipy reads) rather than a simulation; ``correct_background`` whether such patterns
    are background-corrected for dictionaries and models that do not do it themselves (see
    :func:`prepare_scan`); ``corrections`` what the last indexing did to the patterns;
    ``phase`` the name of the phase the file records (its master pattern's, or its crystal
    map's when that has one phase), if any; ``averaging`` what :func:`average_scan` did to
    the patterns as read, if it was applied.
    """

    patterns: np.ndarray
    source: str
    scan_shape: tuple[int, ...]
    detector: DetectorSpec
    reference: Rotation | None = None
    corrections: list[str] = field(default_factory=list)
    static_background: np.ndarray | None = None
    experimental: bool = False
    correct_background: bool = True
    phase: str | None = None
    averaging: str | None = None

    def __len__(self) -> int:
        return len(self.patterns)


def read_scan(path: str | Path, correct_background: bool = True) -> Scan:
    """The patterns of a deepmat pattern set or of any file kikuchipy loads as EBSD.

    A kikuchipy file's patterns are kept as stored, with its static background; they are
    background-corrected when indexed (:func:`prepare_scan`) unless ``correct_background``
    is False. Anything else is a :class:`DataError` that says what the file is not.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if _is_pattern_set(path):
        dataset = read_pattern_dataset(path)
        return Scan(
            dataset.patterns,
            str(path),
            (len(dataset),),
            dataset.detector,
            dataset.rotations,
            phase=(dataset.attrs.get("master") or {}).get("phase"),
        )
    try:
        signal = kp.load(path)
    except Exception as exc:  # kikuchipy's readers raise many kinds of errors
        raise DataError(
            f"{path}: not an EBSD pattern file: neither a deepmat pattern set "
            f"(`deepmat ebsd simulate`) nor a file kikuchipy reads ({exc})"
        ) from None
    if isinstance(signal, list):
        raise DataError(f"{path}: holds {len(signal)} scans; save the one to index on its own")
    if not isinstance(signal, kp.signals.EBSD):
        raise DataError(
            f"{path}: holds {type(signal).__name__}, not EBSD patterns "
            "(a deepmat pattern set or an EBSD scan is expected)"
        )
    return scan_from_signal(signal, str(path), correct_background)


def _is_pattern_set(path: Path) -> bool:
    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as file:
        return decode_attr(file.attrs.get("format")) == FORMAT


def scan_from_signal(signal: kp.signals.EBSD, source: str, correct_background: bool = True) -> Scan:
    """A :class:`Scan` of the patterns of a kikuchipy EBSD signal, as they are, with its
    static background (``correct_background``: see :class:`Scan`).

    The detector is the signal's, with its average projection centre; the reference
    orientations are those of its crystal map (the best of each point) when it has one
    point per pattern.
    """
    shape = signal.data.shape[:-2] or (1,)
    patterns = np.asarray(signal.data).reshape(-1, *signal.data.shape[-2:])
    static = signal.static_background
    return Scan(
        patterns,
        source,
        tuple(int(s) for s in shape),
        _detector_spec(signal.detector, source),
        _reference(signal.xmap, len(patterns)),
        static_background=None if static is None else np.asarray(static),
        experimental=True,
        correct_background=correct_background,
        phase=_phase_name(signal.xmap),
    )


#: where :func:`nickel_scan` comes from
NICKEL_SCAN = "kikuchipy.data.nickel_ebsd_small()"


def nickel_scan() -> Scan:
    """kikuchipy's real 3×3 nickel scan, which ships inside its package: 60×60 patterns as
    stored, its static background and its crystal map's orientations (see
    :func:`scan_from_signal`); real patterns to index and score offline."""
    return scan_from_signal(kp.data.nickel_ebsd_small(), NICKEL_SCAN)


def remove_background(signal: kp.signals.EBSD) -> list[str]:
    """Correct the patterns of ``signal`` in place by
    :data:`~deepmat.represent.patterns.BACKGROUND_CORRECTION` (its static background, when it
    stores one, then the dynamic one; float32, each at zero mean and unit standard
    deviation), as kikuchipy's indexing tutorials do; returns what was done."""
    static = signal.static_background
    static = None if static is None else np.asarray(static)
    shape = signal.data.shape
    flat = np.asarray(signal.data).reshape(-1, *shape[-2:])
    signal.data = BACKGROUND_CORRECTION.apply(flat, static).reshape(shape)
    return BACKGROUND_CORRECTION.steps(static is not None)


def prepare_scan(
    scan: Scan, preprocess: PreprocessSpec | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`scan_input`, recording the steps it takes in ``scan.corrections`` (after the
    neighbour averaging, when the scan had it)."""
    patterns, static, steps = scan_input(scan, preprocess)
    scan.corrections = [scan.averaging, *steps] if scan.averaging else steps
    return patterns, static


def average_scan(scan: Scan, spec: NeighbourAveraging | None = None) -> Scan:
    """``scan`` with each pattern averaged with the neighbours that show the same crystal
    (NLPAR, :mod:`deepmat.represent.pattern_averaging`): noisy maps index better, by any
    method. Neighbours are compared after :data:`BACKGROUND_CORRECTION` (a background that
    varies over the map is not a difference of bands) and the patterns as read are averaged,
    so that every indexer prepares them as before. The scan must be a map."""
    spec = spec or NeighbourAveraging()
    start = time.perf_counter()
    averaged = average_neighbours(
        scan.patterns,
        scan.scan_shape,
        spec,
        scan.source,
        compare=lambda patterns: BACKGROUND_CORRECTION.apply(patterns, scan.static_background),
    )
    seconds = time.perf_counter() - start
    described = f"{averaged.description()} in {seconds:.2f} s"
    return replace(scan, patterns=averaged.patterns, averaging=described)


def scan_input(
    scan: Scan, preprocess: PreprocessSpec | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The patterns of ``scan`` to give a model whose preprocessing is ``preprocess`` (None
    for a dictionary), the static background to give with them, and what is done to them.

    A preprocessing that removes backgrounds gets the raw patterns and the static
    background, so that every pattern is prepared as the model's training patterns were.
    Otherwise the patterns of a camera (``scan.experimental``) are corrected here by
    :data:`~deepmat.represent.patterns.BACKGROUND_CORRECTION` first, as simulations on
    which such models and dictionaries are made have no background, unless
    ``scan.correct_background`` is False; simulated sets are given as they are.
    """
    has_static = scan.static_background is not None
    if preprocess is not None and preprocess.removes_background:
        return scan.patterns, scan.static_background, preprocess.steps(has_static)
    if scan.experimental and scan.correct_background:
        patterns = BACKGROUND_CORRECTION.apply(scan.patterns, scan.static_background)
        return patterns, None, BACKGROUND_CORRECTION.steps(has_static)
    return scan.patterns, None, [] if preprocess is None else preprocess.steps(False)


def _detector_spec(detector: Any, source: str) -> DetectorSpec:
    try:
        return DetectorSpec(
            shape=tuple(int(s) for s in detector.shape),
            pc=tuple(float(v) for v in detector.pc_average),
            sample_tilt=float(detector.sample_tilt),
            tilt=float(detector.tilt),
            binning=int(detector.binning),
            px_size=float(detector.px_size),
        )
    except ConfigError as exc:
        raise DataError(f"{source}: unusable detector geometry: {exc}") from None


def _phase_name(xmap: Any) -> str | None:
    """The name of a crystal map's one phase (None without a map, a name, or with several)."""
    if xmap is None:
        return None
    names = [phase.name for _, phase in xmap.phases_in_data] if xmap.size else []
    return names[0] if len(names) == 1 and names[0] else None


def _reference(xmap: Any, n: int) -> Rotation | None:
    if xmap is None:
        return None
    rotations = xmap.rotations
    if rotations.ndim == 2:
        rotations = rotations[:, 0]
    return Rotation(rotations.data) if rotations.size == n else None


@dataclass(eq=False)
class Indexed:
    """Orientations found for a scan, (n,), in the fundamental zone of ``point_group``.

    ``method`` is "cnn" or "dictionary", with "_refined" after refinement against the
    master pattern (:mod:`deepmat.workflows.ebsd_refinement`); ``scores`` (n,) are the NCC
    scores of the dictionary's best matches or of the refined orientations (None for a
    CNN); ``seconds`` the wall time of the indexing (and refinement); ``notes`` warnings
    about the detector geometry.
    """

    orientations: Orientation
    method: str
    point_group: str
    seconds: float
    scores: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def patterns_per_second(self) -> float:
        """The indexing speed."""
        return self.orientations.size / self.seconds if self.seconds > 0 else float("inf")


def index_file(
    path: str | Path,
    *,
    model: str | Path | None = None,
    dictionary: str | Path | None = None,
    correct_background: bool = True,
    average: NeighbourAveraging | None = None,
) -> tuple[Scan, Indexed]:
    """The patterns of the file ``path`` (see :func:`read_scan`) indexed by the orientation
    model ``model`` (a saved-model directory or a shipped model's name) or against the
    pattern set ``dictionary``: exactly one of the two. ``correct_background`` False leaves
    a camera's patterns uncorrected for a dictionary or a model that only standardises; a
    model whose preprocessing removes backgrounds always applies it (see
    :func:`prepare_scan`). ``average``: first average each pattern with its neighbours
    (:func:`average_scan`; the file must hold a map)."""
    if (model is None) == (dictionary is None):
        raise ConfigError(
            "give exactly one of --model (a saved orientation model) and --dictionary "
            "(a simulated pattern set to index against)"
        )
    if model is not None:
        import deepmat

        network = deepmat.load(model)
        if network.input_kind != "ebsd-pattern":
            raise ModelFormatError(f"{model}: {network.name} is not an orientation model")
        scan = _read_averaged(path, correct_background, average)
        return scan, index_with_model(network, scan)
    reference = read_pattern_dataset(dictionary)
    scan = _read_averaged(path, correct_background, average)
    return scan, index_with_dictionary(reference, scan, f"the dictionary {dictionary}")


def _read_averaged(
    path: str | Path, correct_background: bool, average: NeighbourAveraging | None
) -> Scan:
    scan = read_scan(path, correct_background)
    return scan if average is None else average_scan(scan, average)


def index_with_model(model: OrientationCNNRegressor, scan: Scan) -> Indexed:
    """Orientations of ``scan`` predicted by an orientation CNN."""
    _check_shape(scan, model.pattern_shape, f"the model {model.name}")
    notes = _geometry_notes(scan, model.training.get("detector"), f"the model {model.name}")
    start = time.perf_counter()
    patterns, static = prepare_scan(scan, model.preprocess)
    orientations = model.predict(patterns, static_background=static)
    seconds = time.perf_counter() - start
    return Indexed(orientations, "cnn", model.point_group, seconds, notes=notes)


def index_with_dictionary(
    dictionary: PatternDataset,
    scan: Scan,
    name: str = "the dictionary",
    n_per_iteration: int | None = None,
) -> Indexed:
    """Orientations of ``scan`` by dictionary indexing (NCC) against a simulated set, called
    ``name`` in messages; ``n_per_iteration`` bounds the memory (see
    :func:`~deepmat.train.dictionary.dictionary_index`)."""
    _check_shape(scan, dictionary.detector.shape, name)
    notes = _geometry_notes(scan, dictionary.detector.to_dict(), name)
    start = time.perf_counter()
    patterns, _ = prepare_scan(scan)
    result = dictionary_index(patterns, dictionary, n_per_iteration=n_per_iteration)
    seconds = time.perf_counter() - start
    point_group = _point_group(dictionary)
    orientations = Orientation(
        result.best.data, symmetry=point_group_symmetry(point_group)
    ).reduce()
    return Indexed(orientations, "dictionary", point_group, seconds, result.scores[:, 0], notes)


def _check_shape(scan: Scan, shape: tuple[int, int], what: str) -> None:
    found = scan.patterns.shape[1:]
    if tuple(found) != tuple(shape):
        raise DataError(
            f"{scan.source}: patterns are {size_text(found)} pixels but {what} takes "
            f"{size_text(shape)}: index patterns of the detector it was made for"
        )


def _geometry_notes(scan: Scan, trained: dict | None, what: str) -> list[str]:
    if not trained:
        return []
    expected = np.asarray(trained["pc"], dtype=float)
    found = np.asarray(scan.detector.pc)
    if np.abs(found - expected).max() <= PC_TOLERANCE:
        return []
    return [
        f"{scan.source}: projection centre {np.round(found, 4).tolist()} differs from that of "
        f"{what} {np.round(expected, 4).tolist()}: orientations may be off"
    ]


def indexing_metrics(indexed: Indexed, scan: Scan) -> dict[str, float] | None:
    """:func:`orientation_metrics` against the scan's reference orientations, if it has any."""
    if scan.reference is None:
        return None
    return orientation_metrics(scan.reference, indexed.orientations, indexed.point_group)


def orientation_table(indexed: Indexed, scan: Scan) -> pd.DataFrame:
    """One row per pattern: ``index`` (and ``row``, ``column`` of a map), Bunge Euler angles
    ``phi1``, ``Phi``, ``phi2`` in degrees, the quaternion ``qw`` (≥ 0), ``qx``, ``qy``, ``qz``,
    the dictionary's ``score`` and, when the scan has references, ``disorientation_deg``."""
    n = indexed.orientations.size
    columns: dict[str, Any] = {"index": np.arange(n)}
    if len(scan.scan_shape) == 2:
        columns["row"], columns["column"] = np.unravel_index(np.arange(n), scan.scan_shape)
    euler = np.degrees(indexed.orientations.to_euler())
    columns |= dict(zip(("phi1", "Phi", "phi2"), euler.T, strict=True))
    quaternions = indexed.orientations.data  # q and -q are one rotation: written with w >= 0
    quaternions = quaternions * np.where(quaternions[:, :1] < 0, -1.0, 1.0)
    columns |= dict(zip(("qw", "qx", "qy", "qz"), quaternions.T, strict=True))
    if indexed.scores is not None:
        columns["score"] = indexed.scores
    if scan.reference is not None:
        angles = disorientation_angle(scan.reference, indexed.orientations, indexed.point_group)
        columns["disorientation_deg"] = np.degrees(angles)
    return pd.DataFrame(columns)


def evaluate_pattern_file(model: OrientationCNNRegressor, path: str | Path) -> dict[str, float]:
    """:func:`orientation_metrics` of ``model`` on a pattern file with reference orientations."""
    scan = read_scan(path)
    _check_shape(scan, model.pattern_shape, f"the model {model.name}")
    if scan.reference is None:
        raise DataError(f"{path}: holds no reference orientations to evaluate against")
    patterns, static = prepare_scan(scan, model.preprocess)
    return model.evaluate(patterns, scan.reference, static_background=static)


def predict_pattern_files(
    model: OrientationCNNRegressor, inputs: Sequence[str | Path], return_std: bool = False
) -> pd.DataFrame:
    """The orientation table of every input file, with a ``file`` column first
    (``return_std``: the model's spread, an error for a network that has none)."""
    if return_std:
        raise model.no_uncertainty(
            "orientation networks give no standard deviation "
            "(and ensembles average values, not orientations)"
        )
    frames = []
    for item in inputs:
        scan = read_scan(item)
        table = orientation_table(index_with_model(model, scan), scan)
        table.insert(0, "file", str(item))
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def ipf_image(orientations: Orientation, scan_shape: tuple[int, ...]) -> np.ndarray:
    """IPF-Z colours (orix TSL key) as an RGB image: (rows, columns, 3) for a map, a strip
    (1, n, 3) otherwise."""
    from orix.plot import IPFColorKeyTSL

    rgb = IPFColorKeyTSL(orientations.symmetry).orientation2color(orientations)
    shape = scan_shape if len(scan_shape) == 2 else (1, orientations.size)
    return rgb.reshape(*shape, 3)


def draw_ipf_map(ax: Axes, orientations: Orientation, scan_shape: tuple[int, ...]) -> None:
    """The IPF-Z map of ``orientations`` on ``ax``, one square per pattern."""
    ax.imshow(ipf_image(orientations, scan_shape), interpolation="nearest")
    ax.set(xticks=[], yticks=[])


def draw_ipf_key(fig: Figure, position: Any, orientations: Orientation) -> None:
    """orix's IPF colour key of the Laue group of ``orientations`` as a subplot of ``fig``
    (``position`` a subplot spec or three-digit code)."""
    symmetry = orientations.symmetry.laue
    ax = fig.add_subplot(position, projection="ipf", symmetry=symmetry)
    ax.plot_ipf_color_key()
    ax.set_title("IPF-Z key", fontsize=9)


def ipf_plot(indexed: Indexed, scan: Scan, path: str | Path) -> Path:
    """A PNG of the scan's IPF-Z colour map (see :func:`ipf_image`) beside the colour key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(9, 4), dpi=120)
    grid = fig.add_gridspec(1, 2, width_ratios=(2, 1))
    ax = fig.add_subplot(grid[0])
    draw_ipf_map(ax, indexed.orientations, scan.scan_shape)
    ax.set_title(f"{Path(scan.source).name}: {indexed.method} indexing", fontsize=9)
    draw_ipf_key(fig, grid[1], indexed.orientations)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
