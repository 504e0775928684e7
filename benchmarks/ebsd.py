"""EBSD orientation indexing of nickel (Jha et al. 2018): a CNN against dictionary indexing
with the same simulated dictionary.

Makes its own data from kikuchipy's dynamical nickel master pattern (EMsoft, 20 kV) on the
detector of kikuchipy's nickel scan: a dictionary of patterns on an equispaced grid over the
m-3m fundamental zone (--resolution); the CNN's training set, which is that dictionary, as
Jha et al. trained on theirs, plus --extra patterns at uniformly random orientations from the
same simulator, pattern i at noise level i mod the number of levels (the dictionary alone
gives the network only noise-free patterns on a grid), and --camera-extra more through the
two camera models, alternately (:data:`CAMERAS`): the realistic camera
(:data:`~deepmat.data.ebsd_camera.REALISTIC_CAMERA`: backgrounds, blur, gain, noise, PC
jitter, 8 bits, as kikuchipy's real nickel scan) and the same camera once a scan's static
background is removed (:data:`~deepmat.data.ebsd_camera.REALISTIC_CORRECTED_CAMERA`, with
the correlated texture and noise level of that scan's corrected patterns), as a user's scan
reaches an indexer without or with its static background; a validation set at random
orientations, its noise levels and the cameras cycling alike, that picks the CNN's best
epoch; and a test set of --test-n uniformly random orientations, off the grid, simulated once
per noise level (--noise-levels: none, or Poisson shot noise of C electrons at the brightest
pixel) and once through each camera, each with the same test orientations. Training,
validation and test orientations are drawn with their own seeds. The CNN (--output: by
default the cubic embedding of :mod:`deepmat.physics.cubic_embedding`; "quaternion" trains
Jha et al.'s disorientation loss) prepares its patterns by --preprocess (by default
:data:`~deepmat.represent.patterns.BACKGROUND_CORRECTION`, static then dynamic background
removal) in training and indexing alike. The CNN and dictionary indexing (NCC) index every
test set, and kikuchipy's refinement against the master pattern polishes the first
--refine-n orientations of each (``cnn_refined``, ``dictionary_refined``); then all four
index the 9 raw experimental patterns of ``kikuchipy.data.nickel_ebsd_small()`` (binned
with their static background by block means to the detector's shape if it is smaller),
each method preparing them by its own preprocessing (the dictionary by static and dynamic
background removal: without it, it misses by ~27°), and are compared with the orientations
stored in its crystal map; every method indexes that scan also after neighbour averaging
(NLPAR, :func:`~deepmat.workflows.ebsd.average_scan`), and the CNN and the dictionary a
simulated map of grains (--map-shape, --map-grains, --map-spread; through the
realistic-corrected camera) as simulated and averaged, whose truth is known.
PyEBSDIndex's Hough/Radon indexing (``pyebsdindex`` from PyPI, in its own environment
under ``benchmarks/.peers``, run by ``peers/pyebsdindex_hough.py``) indexes the same test
sets and real patterns, as dictionary indexing is given them; with
--quick it runs only if that environment exists, and what fails to install or run is its
result.

    python benchmarks/ebsd.py --out runs/ebsd                  # full
    python benchmarks/ebsd.py --out /tmp/q --quick              # seconds

The CNN is saved as ``OUT/cnn/`` and the pattern sets (test, validation, dictionaries) as
``OUT/data/*.h5`` (``deepmat ebsd index OUT/data/test_counts_100.h5 --model OUT/cnn``). Results:
``benchmarks/results/ebsd.{json,png}``; the top-level metrics of each method are over all
noisy test sets together, the per-level ones under ``noise_levels``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import kikuchipy as kp
import numpy as np
from orix.quaternion import Orientation, Rotation

from _peers import PeerUnavailable, install_finding, peer_python
from _shared import command, machine, parser, write_json
from deepmat.data.ebsd import (
    PatternDataset,
    combine_pattern_sets,
    read_pattern_dataset,
    save_pattern_dataset,
    write_pattern_dataset,
)
from deepmat.data.ebsd_camera import REALISTIC_CAMERA, REALISTIC_CORRECTED_CAMERA, CameraSpec
from deepmat.data.ebsd_simulation import (
    SHIPPED_MASTER,
    DetectorSpec,
    NoiseSpec,
    sample_orientations,
    simulate_patterns,
)
from deepmat.errors import DataError
from deepmat.models.cnn3d import count_parameters
from deepmat.models.ebsd import ORIENTATION_CNN_SMALL, OUTPUTS, OrientationCNNSpec
from deepmat.represent.patterns import PREPROCESS_PRESETS
from deepmat.train import save_model
from deepmat.train.ebsd import OrientationCNNRegressor, orientation_metrics
from deepmat.workflows.ebsd import (
    NICKEL_SCAN,
    Indexed,
    Scan,
    average_scan,
    draw_ipf_key,
    draw_ipf_map,
    fit_orientation_cnn,
    index_with_dictionary,
    index_with_model,
    indexing_metrics,
    prepare_scan,
    read_scan,
    scan_from_signal,
)
from deepmat.workflows.ebsd_refinement import (
    DOUBT_EDGE,
    DOUBT_SCORE,
    GLOBAL_REGION_DEG,
    GLOBAL_SEARCH,
    MAX_EVALUATIONS,
    METHODS,
    TRUST_REGION_DEG,
    refine_indexed,
)

SEEDS = {"extra": 1, "val": 2, "test": 3, "camera_extra": 4, "corrected_extra": 5, "map": 6}
# the test sets simulated through the camera models, by label
CAMERAS = {"camera": REALISTIC_CAMERA, "camera_corrected": REALISTIC_CORRECTED_CAMERA}
REFINED = ("cnn", "dictionary")  # the methods whose orientations are refined
PYEBSDINDEX = "pyebsdindex==0.3.10.1"
# Where else real EBSD patterns with reference orientations were looked for inside installed
# packages (issue 15, item 5): none adds a test set to kikuchipy's nickel scan.
REAL_SETS_SEARCHED = {
    "kikuchipy 0.13.1 data/": "the nickel scan again in four formats (kikuchipy and EDAX "
    "h5ebsd, NORDIF Pattern.dat, EDAX .up1: the same 9 patterns); EDAX .up2 (10 uint16 "
    "patterns, no orientations); two NORDIF calibration patterns (no orientations); "
    "emsoft_ebsd/EBSD_TEST_Ni.h5 (one EMsoft simulation, not a camera's); the rest of "
    "kikuchipy.data downloads on first use",
    "orix": "no patterns (orientation maps, downloaded on first use)",
    PYEBSDINDEX: "one simulated aluminium pattern (tests/data/al_sim_20kv.png)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "ebsd")
    p.add_argument("--resolution", type=float, default=3.0, help="dictionary grid spacing (°)")
    p.add_argument("--shape", type=int, nargs=2, default=[60, 60], help="detector rows, columns")
    p.add_argument(
        "--noise-levels",
        nargs="+",
        default=["none", "1000", "300", "100"],
        help="test noise: 'none' or Poisson counts at the brightest pixel",
    )
    p.add_argument(
        "--finer",
        type=float,
        nargs="*",
        default=[2.0],
        help="also index the test sets with dictionaries of these grid spacings (°): what "
        "dictionary indexing needs to match the CNN, and at what speed",
    )
    p.add_argument("--extra", type=int, default=150_000, help="extra training patterns, random")
    p.add_argument(
        "--camera-extra",
        type=int,
        default=200_000,
        help="extra training patterns at random orientations through the camera models",
    )
    p.add_argument(
        "--corrected-extra",
        type=int,
        default=0,
        help="extra training patterns at random orientations through the realistic-corrected "
        "camera alone (a real scan's patterns once its static background is removed, the "
        "camera on which the CNN errs most)",
    )
    p.add_argument(
        "--preprocess",
        default="background",
        choices=list(PREPROCESS_PRESETS),
        help="the CNN's preprocessing (background: static, then dynamic background removal)",
    )
    p.add_argument(
        "--refine-n",
        type=int,
        default=100,
        help="test patterns per set whose CNN and dictionary orientations are refined",
    )
    p.add_argument("--val-n", type=int, default=1000, help="validation patterns")
    p.add_argument("--test-n", type=int, default=1000, help="test orientations per noise level")
    p.add_argument("--epochs", type=int, default=None, help="(the benchmark preset's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--schedule", default=None, help="learning-rate schedule (the preset's)")
    p.add_argument(
        "--init",
        default=None,
        help="a saved orientation CNN whose weights training starts from (train on longer: "
        "give its architecture, a lower --lr and --schedule cosine)",
    )
    p.add_argument("--channels", type=int, nargs="+", default=list(ORIENTATION_CNN_SMALL.channels))
    p.add_argument(
        "--fc-widths", type=int, nargs="+", default=list(ORIENTATION_CNN_SMALL.fc_widths)
    )
    p.add_argument(
        "--output",
        default="cubic-embedding",
        choices=list(OUTPUTS),
        help="what the CNN predicts (cubic-embedding, or quaternion with the disorientation loss)",
    )
    p.add_argument("--precision", default=None, help="32-true, bf16-mixed or 16-mixed")
    p.add_argument(
        "--map-shape", type=int, nargs=2, default=[12, 12], help="simulated grain map rows, columns"
    )
    p.add_argument("--map-grains", type=int, default=8, help="grains in the simulated map")
    p.add_argument(
        "--map-spread", type=float, default=0.3, help="orientation spread within a grain (°)"
    )
    p.add_argument("--workers", type=int, default=2, help="parallel simulation tasks (Dask)")
    return p.parse_args(argv)


def test_degradations(noise_levels: list[str]) -> dict[str, NoiseSpec | CameraSpec | None]:
    """The test sets' degradations by label: the --noise-levels, then the camera models."""
    return dict(noise_level(text) for text in noise_levels) | CAMERAS


def noise_level(text: str) -> tuple[str, NoiseSpec | None]:
    """A --noise-levels entry as (label, spec): "none" → ("none", None), "100" →
    ("counts_100", Poisson noise of 100 electrons at the brightest pixel)."""
    if text == "none":
        return "none", None
    counts = float(text)
    return f"counts_{counts:g}", NoiseSpec(counts=counts)


def simulate_cycling(
    rotations: Rotation,
    detector: DetectorSpec,
    levels: list[NoiseSpec | CameraSpec | None],
    seed: int,
    attrs: dict | None = None,
) -> PatternDataset:
    """Patterns of ``rotations``, pattern i at noise level i mod len(levels)."""
    patterns = np.empty((rotations.size, *detector.shape), dtype=np.float32)
    for k, noise in enumerate(levels):
        part = np.arange(k, rotations.size, len(levels))
        if len(part):
            patterns[part] = simulate_patterns(rotations[part], detector, noise=noise, seed=seed)
    return PatternDataset(patterns, rotations, detector, attrs=dict(attrs or {}))


def make_data(args: argparse.Namespace, detector: DetectorSpec, levels: dict) -> dict:
    """The dictionary and test files, the training and validation sets in memory; ``levels``
    are the test sets' degradations (:func:`test_degradations`)."""
    data_dir = args.out / "data"
    grid = sample_orientations(resolution_deg=args.resolution)
    files = {"dictionary": data_dir / "dictionary.h5"}
    progress = sys.stderr.isatty()
    write_pattern_dataset(
        files["dictionary"], grid, detector, workers=args.workers, progress=progress
    )
    dictionary = read_pattern_dataset(files["dictionary"])
    test_rotations = sample_orientations(n=args.test_n, seed=SEEDS["test"])
    for label, noise in levels.items():
        files[f"test_{label}"] = data_dir / f"test_{label}.h5"
        write_pattern_dataset(
            files[f"test_{label}"],
            test_rotations,
            detector,
            noise,
            seed=SEEDS["test"],
            workers=args.workers,
            progress=progress,
        )
    sets, names = [dictionary], ["dictionary"]
    extras = {  # the random training sets: how many, and the degradations they cycle through
        "extra": (args.extra, [spec for label, spec in levels.items() if label not in CAMERAS]),
        "camera_extra": (args.camera_extra, list(CAMERAS.values())),
        "corrected_extra": (args.corrected_extra, [CAMERAS["camera_corrected"]]),
    }
    for name, (n, degradations) in extras.items():
        if n:
            seed = SEEDS[name]
            rotations = sample_orientations(n=n, seed=seed)
            sets.append(simulate_cycling(rotations, detector, degradations, seed, dictionary.attrs))
            names.append(name)
    train = combine_pattern_sets(sets, names)
    files["val"] = data_dir / "val.h5"
    val = validation_set(args, detector, levels, dictionary.attrs)
    save_pattern_dataset(files["val"], val)
    return {"files": files, "dictionary": dictionary, "train": train, "val": val}


def validation_set(
    args: argparse.Namespace, detector: DetectorSpec, levels: dict, attrs: dict
) -> PatternDataset:
    """The --val-n validation patterns at random orientations, the test sets' noise levels
    and camera cycling."""
    rotations = sample_orientations(n=args.val_n, seed=SEEDS["val"])
    attrs = attrs | {"seed": SEEDS["val"], "noise_levels": list(levels)}
    return simulate_cycling(rotations, detector, list(levels.values()), SEEDS["val"], attrs)


def train_cnn(args: argparse.Namespace, train: PatternDataset, val: PatternDataset):
    given = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "schedule": args.schedule,
        "init": args.init,
        "precision": args.precision,
        "progress": sys.stderr.isatty(),
    }
    config = OrientationCNNRegressor.preset_arguments("benchmark", config=given)["config"]
    config.patience = config.epochs
    spec = OrientationCNNSpec(
        channels=tuple(args.channels), fc_widths=tuple(args.fc_widths), output=args.output
    )
    preprocess = PREPROCESS_PRESETS[args.preprocess]
    cnn = fit_orientation_cnn(
        train, args.out / "cnn", val=val, spec=spec, config=config, preprocess=preprocess
    )
    save_model(cnn, args.out / "cnn")
    return cnn


def finer_dictionaries(
    args: argparse.Namespace, detector: DetectorSpec, files: dict
) -> dict[str, PatternDataset]:
    """The --finer dictionaries, {"dictionary_2deg": set, ...}, written beside the others."""
    found = {}
    for resolution in args.finer:
        name = f"dictionary_{resolution:g}deg"
        files[name] = args.out / "data" / f"{name}.h5"
        grid = sample_orientations(resolution_deg=resolution)
        write_pattern_dataset(
            files[name], grid, detector, workers=args.workers, progress=sys.stderr.isatty()
        )
        found[name] = read_pattern_dataset(files[name])
    return found


def test_scan(files: dict, label: str) -> Scan:
    """The test set ``label`` to index. A camera set's patterns come from a camera model,
    so it is indexed as a camera's scan: methods that do not remove backgrounds
    themselves (dictionaries, refinement, PyEBSDIndex) get them background-corrected
    (dynamic; a simulation has no static background) as they would a real scan's."""
    scan = read_scan(files[f"test_{label}"])
    scan.experimental = label in CAMERAS
    return scan


def index_tests(
    cnn: OrientationCNNRegressor, dictionaries: dict[str, PatternDataset], files: dict, levels: dict
) -> dict:
    """The CNN and every dictionary on every test set: {method: {level: (Indexed, Scan)}}."""
    runs: dict = {"cnn": {}} | {name: {} for name in dictionaries}
    for label in levels:
        scan = test_scan(files, label)
        runs["cnn"][label] = index_with_model(cnn, scan), scan
        for name, dictionary in dictionaries.items():
            runs[name][label] = index_with_dictionary(dictionary, scan), scan
    return runs


def pooled(runs: dict[str, tuple[Indexed, Scan]], labels: list[str]) -> dict:
    """Metrics over the test sets ``labels`` together, and the indexing speed over them."""
    true = np.concatenate([runs[label][1].reference.data for label in labels])
    found = np.concatenate([runs[label][0].orientations.data for label in labels])
    seconds = sum(runs[label][0].seconds for label in labels)
    metrics = orientation_metrics(true, found, runs[labels[0]][0].point_group)
    return metrics | {"patterns_per_second": len(found) / seconds}


def refine_tests(runs: dict, n: int) -> dict:
    """The first ``n`` orientations of every test set found by each of :data:`REFINED`,
    refined against the master pattern: {"cnn_refined": {level: (Indexed, Scan)}, ...}, each
    timed by its share of the indexing plus its refinement."""
    refined: dict = {}
    for name in REFINED:
        refined[f"{name}_refined"] = {}
        for label, (indexed, scan) in runs[name].items():
            part, scan_part = first(indexed, scan, n)
            refined[f"{name}_refined"][label] = refine_indexed(part, scan_part), scan_part
    return refined


def first(indexed: Indexed, scan: Scan, n: int) -> tuple[Indexed, Scan]:
    """The first ``n`` patterns of ``scan`` (a line) and their orientations in ``indexed``,
    with its share of the indexing time."""
    n = min(n, len(scan))
    part = replace(
        indexed,
        orientations=indexed.orientations[:n],
        seconds=indexed.seconds * n / len(scan),
        scores=None if indexed.scores is None else indexed.scores[:n],
    )
    reference = None if scan.reference is None else scan.reference[:n]
    return part, replace(scan, patterns=scan.patterns[:n], scan_shape=(n,), reference=reference)


def real_patterns(detector: DetectorSpec) -> tuple[Scan, Orientation]:
    """kikuchipy's 3×3 nickel scan as stored, with its static background, both binned by
    block means to the detector's shape when that is a whole fraction of its 60×60, and its
    crystal map's orientations. Plain block means keep the static background a background of
    the binned patterns (kikuchipy's downsampling rescales each pattern on its own)."""
    signal = kp.data.nickel_ebsd_small()
    scan = scan_from_signal(signal, NICKEL_SCAN)
    factor = scan.detector.shape[0] // detector.shape[0]
    if factor > 1 and tuple(np.multiply(detector.shape, factor)) == scan.detector.shape:
        scan = binned(scan, factor)
    return scan, signal.xmap.orientations


def binned(scan: Scan, factor: int) -> Scan:
    """``scan`` with its patterns and static background binned ``factor``×``factor``."""
    static = scan.static_background
    geometry = replace(
        scan.detector,
        shape=tuple(s // factor for s in scan.detector.shape),
        binning=scan.detector.binning * factor,
    )
    return replace(
        scan,
        patterns=block_means(scan.patterns, factor),
        static_background=None if static is None else block_means(static[None], factor)[0],
        detector=geometry,
    )


def block_means(images: np.ndarray, factor: int) -> np.ndarray:
    """The means of ``factor``×``factor`` pixel blocks of ``images`` (n, height, width)."""
    n, height, width = images.shape
    blocks = images.reshape(n, height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(2, 4), dtype=np.float64).astype(np.float32)


def real_scan(
    cnn: OrientationCNNRegressor, dictionary: PatternDataset, detector: DetectorSpec
) -> tuple[Scan, Scan, Orientation, dict]:
    """kikuchipy's nickel scan (:func:`real_patterns`), the same after neighbour averaging
    (NLPAR, :func:`~deepmat.workflows.ebsd.average_scan`), its crystal map's orientations,
    and what each method and its refinement finds on each: {"real_nickel": {method: ...},
    "real_nickel_averaged": {method: ...}}."""
    scan, reference = real_patterns(detector)
    averaged, averaging_seconds = timed_average(scan)
    found = {
        "real_nickel": methods_on(cnn, dictionary, scan),
        "real_nickel_averaged": methods_on(cnn, dictionary, averaged),
    }
    for result in found["real_nickel_averaged"].values():
        result["averaging_seconds"] = averaging_seconds
    return scan, averaged, reference, found


def timed_average(scan: Scan) -> tuple[Scan, float]:
    """``scan`` after neighbour averaging, and the seconds that took."""
    start = time.perf_counter()
    averaged = average_scan(scan)
    return averaged, time.perf_counter() - start


def indexers(
    cnn: OrientationCNNRegressor, dictionary: PatternDataset, scan: Scan
) -> dict[str, Callable[[], Indexed]]:
    """The CNN's and the dictionary's indexing of ``scan``, each a call."""
    return {
        "cnn": partial(index_with_model, cnn, scan),
        "dictionary": partial(index_with_dictionary, dictionary, scan),
    }


def methods_on(cnn: OrientationCNNRegressor, dictionary: PatternDataset, scan: Scan) -> dict:
    """What the CNN and the dictionary, each then refined, find on ``scan`` (or why they do
    not apply): {method: :func:`real_result`}."""
    found = {}
    for name, index in indexers(cnn, dictionary, scan).items():
        found[name] = real_result(index, scan)
        if "indexed" in found[name]:
            refine = partial(refine_indexed, found[name]["indexed"], scan)
            found[f"{name}_refined"] = real_result(refine, scan)
    return found


def grain_map(detector: DetectorSpec, args: argparse.Namespace) -> Scan:
    """A simulated map of --map-shape points in --map-grains grains (each point in the grain
    of its nearest random seed point, the grain's random orientation turned by up to
    --map-spread degrees per point), through the realistic-corrected camera and indexed as a
    camera's scan (:func:`test_scan`): a test of neighbour averaging on a scan whose truth is
    known, drawn with its own seed."""
    rng = np.random.default_rng(SEEDS["map"])
    rows, columns = args.map_shape
    points = np.stack(np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij"), -1)
    seeds = rng.uniform((0, 0), (rows, columns), size=(args.map_grains, 2))
    grain = np.linalg.norm(points[..., None, :] - seeds, axis=-1).argmin(-1).ravel()
    grains = sample_orientations(n=args.map_grains, seed=SEEDS["map"])
    axes = rng.normal(size=(grain.size, 3))
    turn = Rotation.from_axes_angles(axes, np.radians(rng.uniform(0, args.map_spread, grain.size)))
    rotations = turn * grains[grain]
    patterns = simulate_patterns(
        rotations, detector, noise=REALISTIC_CORRECTED_CAMERA, seed=SEEDS["map"]
    )
    source = f"simulated {rows}×{columns} map of {args.map_grains} grains"
    return Scan(patterns, source, (rows, columns), detector, rotations, experimental=True)


def map_results(cnn: OrientationCNNRegressor, dictionary: PatternDataset, scan: Scan) -> dict:
    """The CNN and the dictionary on the simulated grain map, as simulated and after neighbour
    averaging: {method: {"as_simulated": metrics, "averaged": metrics}}."""
    averaged, seconds = timed_average(scan)
    results: dict = {}
    for variant, patterns in (("as_simulated", scan), ("averaged", averaged)):
        for name, index in indexers(cnn, dictionary, patterns).items():
            result = real_result(index, patterns)
            result.pop("indexed", None)
            results.setdefault(name, {})[variant] = result
    for result in results.values():
        result["averaged"]["averaging_seconds"] = seconds
    return results


def real_result(index: Callable[[], Indexed], scan: Scan) -> dict:
    """What ``index()`` finds on a scan (the real one, the simulated map): its metrics, its
    speed, notes, the preprocessing it gave the patterns and the Indexed itself, or why it
    does not apply."""
    try:
        indexed = index()
    except DataError as exc:
        return {"applicable": False, "reason": str(exc)}
    return {
        "applicable": not indexed.notes,
        "notes": indexed.notes,
        "preprocessing": list(scan.corrections),
        **indexing_metrics(indexed, scan),
        "patterns_per_second": indexed.patterns_per_second,
        "indexed": indexed,
    }


def pyebsdindex_results(
    args: argparse.Namespace, files: dict, levels: dict, noisy: list[str], real: dict
) -> dict:
    """PyEBSDIndex's Hough indexing of every test set and of the real scan, as read and
    averaged (``real``: {"real": Scan, "real_averaged": Scan}), by
    ``peers/pyebsdindex_hough.py`` in the peer's environment: metrics as the other methods'
    (pooled over ``noisy``, per set under ``noise_levels``, ``real_nickel``,
    ``real_nickel_averaged``), with the
    fraction of patterns it indexed (the others count at the identity, as kikuchipy reads
    them), or the error that stopped it."""
    try:
        python = peer_python("pyebsdindex", [PYEBSDINDEX], install=not args.quick, torch=False)
    except PeerUnavailable as error:
        return {"error": str(error), "install": install_finding(PYEBSDINDEX)}
    root = args.out / "pyebsdindex"
    root.mkdir(parents=True, exist_ok=True)
    scans = {label: test_scan(files, label) for label in levels} | real
    np.savez(root / "patterns.npz", **{name: prepare_scan(scan)[0] for name, scan in scans.items()})
    (root / "pcs.json").write_text(json.dumps({n: list(s.detector.pc) for n, s in scans.items()}))
    script = Path(__file__).parent / "peers" / "pyebsdindex_hough.py"
    cmd = [str(python), str(script), "--patterns", str(root / "patterns.npz")]
    cmd += ["--pcs", str(root / "pcs.json"), "--out", str(root / "result.json")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip()[-2000:], "command": " ".join(cmd)}
    found = json.loads((root / "result.json").read_text())
    sets = found.pop("sets")
    return {
        "requirement": PYEBSDINDEX,
        **found,
        **peer_metrics(sets, scans, noisy),
        "test_sets": noisy,
        "noise_levels": {label: peer_metrics(sets, scans, [label]) for label in levels},
        "real_nickel": peer_metrics(sets, scans, ["real"]),
        "real_nickel_averaged": peer_metrics(sets, scans, ["real_averaged"]),
    }


def peer_metrics(sets: dict, scans: dict[str, Scan], names: list[str]) -> dict:
    """Metrics of the peer's orientations of the sets ``names`` together (those it did not
    index at the identity), the fraction it indexed and its speed."""
    true = np.concatenate([scans[name].reference.data for name in names])
    found = np.concatenate([np.reshape(sets[name]["quaternions"], (-1, 4)) for name in names])
    indexed = np.concatenate([sets[name]["indexed"] for name in names])
    found[~indexed] = (1.0, 0.0, 0.0, 0.0)
    seconds = sum(sets[name]["seconds"] for name in names)
    return orientation_metrics(true, found, "m-3m") | {
        "indexed_fraction": float(indexed.mean()),
        "patterns_per_second": len(true) / seconds,
    }


def plot(
    results: dict, levels: list[str], scan: Scan, reference: Orientation, real: dict, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig = plt.figure(figsize=(19, 4.2), dpi=120)
    grid = fig.add_gridspec(1, 7, width_ratios=(3.2, 1, 1, 1, 1, 1, 1.3))
    ax = fig.add_subplot(grid[0])
    ticks = [label.removeprefix("counts_") for label in levels]
    colours = iter(
        ["tab:blue", "tab:orange", "tab:grey", "tab:green", "tab:purple", "tab:red", "tab:brown"]
    )
    for name, method in results["metrics"].items():
        if "noise_levels" not in method:
            continue
        per_level = method["noise_levels"]
        colour, style = next(colours), "o" if name.startswith("cnn") else "s"
        label = f"{_plot_label(name, method)}, {method['patterns_per_second']:,.0f}/s"
        for key, line in (("mean_disorientation_deg", "-"), ("median_disorientation_deg", ":")):
            values = [per_level[level][key] for level in levels]
            ax.plot(ticks, values, style + line, color=colour, label=f"{label} {key.split('_')[0]}")
    ax.set(
        yscale="log",
        xlabel="test noise (Poisson counts at the brightest pixel; camera models)",
        ylabel="disorientation (°)",
        title="Random test orientations (speed over the noisy sets)",
    )
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 1.5, 2, 3, 5, 7)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)
    panels = [("reference (crystal map)", reference)]
    as_read, averaged = real["real_nickel"], real["real_nickel_averaged"]
    for name in ("dictionary", "dictionary_refined", "cnn", "cnn_refined"):
        if "indexed" in as_read.get(name, {}):
            mean = as_read[name]["mean_disorientation_deg"]
            title = f"{name}: {mean:.2f}°"
            if "indexed" in averaged.get(name, {}):
                title += f"\nNLPAR: {averaged[name]['mean_disorientation_deg']:.2f}°"
            panels.append((title, as_read[name]["indexed"].orientations))
    for k, (title, orientations) in enumerate(panels):
        axis = fig.add_subplot(grid[1 + k])
        draw_ipf_map(axis, orientations, scan.scan_shape)
        axis.set_title(title, fontsize=9)
    draw_ipf_key(fig, grid[6], reference)
    fig.suptitle(
        "Nickel EBSD: CNN vs dictionary indexing, each refined, vs PyEBSDIndex; right: "
        "kikuchipy's 3×3 nickel scan as read (titles: mean error as read, after NLPAR)"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_label(name: str, method: dict) -> str:
    if name.startswith("dictionary") and "dictionary_resolution_deg" in method:
        return f"dictionary {method['dictionary_resolution_deg']:g}°"
    return name.replace("_", " ")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.resolution, args.shape, args.epochs = 15.0, [20, 20], 2
        args.test_n, args.val_n, args.extra = 12, 16, 16
        args.noise_levels, args.channels, args.fc_widths = ["none", "100"], [8, 16], [32]
        args.finer, args.camera_extra, args.refine_n = [12.0], 16, 2
        args.corrected_extra, args.map_shape, args.map_grains = 8, [4, 4], 3
    t0 = time.perf_counter()
    detector = DetectorSpec(shape=tuple(args.shape))
    levels = test_degradations(args.noise_levels)
    data = make_data(args, detector, levels)
    simulate_seconds = time.perf_counter() - t0

    start = time.perf_counter()
    cnn = train_cnn(args, data["train"], data["val"])
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    dictionaries = {"dictionary": data["dictionary"]}
    dictionaries |= finer_dictionaries(args, detector, data["files"])
    simulate_seconds += time.perf_counter() - start
    runs = index_tests(cnn, dictionaries, data["files"], levels)
    if args.refine_n:
        runs |= refine_tests(runs, args.refine_n)
    counted = [label for label in levels if label not in CAMERAS]
    noisy = [label for label in counted if levels[label] is not None] or counted
    scan, averaged, reference, real = real_scan(cnn, data["dictionary"], detector)
    simulated_map = map_results(cnn, data["dictionary"], grain_map(detector, args))

    metrics = {}
    resolutions = {"dictionary": args.resolution} | {f"dictionary_{r:g}deg": r for r in args.finer}
    for name, by_level in runs.items():
        metrics[name] = pooled(by_level, noisy) | {
            "test_sets": noisy,
            "noise_levels": {
                label: pooled(by_level, [label]) | {"noise": _noise_dict(levels[label])}
                for label in levels
            },
        }
        if name.endswith("_refined"):
            base = name.removesuffix("_refined")
            metrics[name] |= {"refined_from": base, "patterns_per_test_set": args.refine_n}
        else:
            dictionary = dictionaries.get(name, data["dictionary"])
            metrics[name] |= {
                "dictionary_size": len(dictionary),
                "dictionary_resolution_deg": resolutions.get(name, args.resolution),
            }
    for variant, by_method in real.items():
        for name, found in by_method.items():
            kept = {k: v for k, v in found.items() if k != "indexed"}
            metrics.setdefault(name, {})[variant] = kept
    for name, found in simulated_map.items():
        metrics[name]["simulated_map"] = found
    metrics["cnn"]["val"] = cnn.metrics["val"]
    start = time.perf_counter()
    real_scans = {"real": scan, "real_averaged": averaged}
    metrics["pyebsdindex"] = pyebsdindex_results(args, data["files"], levels, noisy, real_scans)
    peer_seconds = time.perf_counter() - start
    results = {
        "benchmark": "ebsd",
        "quick": args.quick,
        "command": command(),
        "data": {
            "master": SHIPPED_MASTER,
            "detector": detector.to_dict(),
            "resolution_deg": args.resolution,
            "noise_levels": {label: _noise_dict(noise) for label, noise in levels.items()},
            "noisy_test_sets": noisy,
            "files": {name: str(path) for name, path in data["files"].items()},
            "real": {
                "source": NICKEL_SCAN,
                "shape": list(scan.detector.shape),
                "binning": scan.detector.binning,
                "pc": scan.detector.pc,
                "other_packages_searched": REAL_SETS_SEARCHED,
            },
        },
        "split": {
            "how": "train = the dictionary grid over the fundamental zone plus --extra "
            "patterns at random orientations, --camera-extra through the camera models and "
            "--corrected-extra through the realistic-corrected camera alone; "
            "val and test = uniformly random orientations drawn with their own seeds, the test "
            "orientations the same at every noise level and for each camera",
            "seeds": SEEDS,
        },
        "sizes": {
            "dictionary": len(data["dictionary"]),
            "train": len(data["train"]),
            "extra": args.extra,
            "camera_extra": args.camera_extra,
            "corrected_extra": args.corrected_extra,
            "val": len(data["val"]),
            "refined_per_test_set": min(args.refine_n, args.test_n),
            "test_per_noise_level": args.test_n,
            "dictionaries": {name: len(d) for name, d in dictionaries.items()},
            "real": len(scan),
        },
        "settings": {
            "cnn": cnn.spec.to_dict() | {"parameters": count_parameters(cnn.net)},
            "train": {
                k: vars(args)[k]
                for k in ("epochs", "batch_size", "lr", "schedule", "init", "precision")
            },
            "dictionary_indexing": {"metric": "ncc", "keep_n": 1},
            "cameras": {label: camera.to_dict() for label, camera in CAMERAS.items()},
            "preprocess": {"name": args.preprocess, **cnn.preprocess.to_dict()},
            "refinement": {
                "methods": METHODS,
                "trust_region_deg": TRUST_REGION_DEG,
                "max_evaluations": MAX_EVALUATIONS,
                "searched_again": "patterns in doubt after the first method: NCC below "
                f"{DOUBT_SCORE} of the set's median, or an Euler angle moved "
                f"{DOUBT_EDGE} of the trust region or more",
                "global_search": {
                    "method": "differential_evolution",
                    "region_deg": GLOBAL_REGION_DEG,
                    **GLOBAL_SEARCH,
                },
            },
        },
        "metrics": metrics,
        "wall_seconds": {
            "simulate": simulate_seconds,
            "train": train_seconds,
            "train_epochs": cnn.training.get("epoch_seconds"),
            "train_resumed_from": cnn.training.get("resumed_from"),
            **{
                f"index_{name}": sum(indexed.seconds for indexed, _ in by_level.values())
                for name, by_level in runs.items()
            },
            "pyebsdindex_with_setup": peer_seconds,
            "total": time.perf_counter() - t0,
        },
        "machine": machine(),
        "models": {"cnn": str(args.out / "cnn")},
    }
    stem = "ebsd_quick" if args.quick else "ebsd"
    write_json(results, args.results, stem)
    plot(results, list(levels), scan, reference, real, args.results / f"{stem}.png")
    return results


def _noise_dict(noise: NoiseSpec | CameraSpec | None) -> dict | None:
    return None if noise is None else noise.to_dict()


if __name__ == "__main__":
    main()
