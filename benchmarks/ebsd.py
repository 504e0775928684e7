"""EBSD orientation indexing of nickel (Jha et al. 2018): a CNN against dictionary indexing
with the same simulated dictionary.

Makes its own data from kikuchipy's dynamical nickel master pattern (EMsoft, 20 kV) on the
detector of kikuchipy's nickel scan: a dictionary of patterns on an equispaced grid over the
m-3m fundamental zone (--resolution); the CNN's training set, which is that dictionary, as
Jha et al. trained on theirs, plus --extra patterns at uniformly random orientations from the
same simulator, pattern i at noise level i mod the number of levels (the dictionary alone
gives the network only noise-free patterns on a grid); a validation set at random
orientations, its noise levels cycling alike, that picks the CNN's best epoch; and a test set
of --test-n uniformly random orientations, off the grid, simulated once per noise level
(--noise-levels: none, or Poisson shot noise of C electrons at the brightest pixel), each
level with the same test orientations. Training, validation and test orientations are drawn
with their own seeds. The CNN (--output: by default the cubic embedding of
:mod:`deepmat.physics.cubic_embedding`; "quaternion" trains Jha et al.'s disorientation loss)
and dictionary indexing (NCC) index every test set; then both index the 9 experimental
patterns of ``kikuchipy.data.nickel_ebsd_small()``, after static and dynamic background
removal (without it, dictionary indexing misses by ~27°), and are compared with the
orientations stored in its crystal map.

    python benchmarks/ebsd.py --out runs/ebsd                  # full
    python benchmarks/ebsd.py --out /tmp/q --quick              # seconds

The CNN is saved as ``OUT/cnn/`` and the pattern sets (test, validation, dictionaries) as
``OUT/data/*.h5`` (``deepmat ebsd index OUT/data/test_counts_100.h5 --model OUT/cnn``). Results:
``benchmarks/results/ebsd.{json,png}``; the top-level metrics of each method are over all
noisy test sets together, the per-level ones under ``noise_levels``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import kikuchipy as kp
import numpy as np
from orix.quaternion import Orientation, Rotation

from _shared import command, machine, parser, write_json
from deepmat.data.ebsd import (
    PatternDataset,
    combine_pattern_sets,
    read_pattern_dataset,
    save_pattern_dataset,
    write_pattern_dataset,
)
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
from deepmat.train import save_model
from deepmat.train.ebsd import OrientationCNNRegressor, orientation_metrics
from deepmat.workflows.ebsd import (
    Indexed,
    Scan,
    draw_ipf_key,
    draw_ipf_map,
    fit_orientation_cnn,
    index_with_dictionary,
    index_with_model,
    indexing_metrics,
    read_scan,
    remove_background,
    scan_from_signal,
)

SEEDS = {"extra": 1, "val": 2, "test": 3}
REAL = "kikuchipy.data.nickel_ebsd_small()"


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
    p.add_argument("--extra", type=int, default=250_000, help="extra training patterns, random")
    p.add_argument("--val-n", type=int, default=1000, help="validation patterns")
    p.add_argument("--test-n", type=int, default=1000, help="test orientations per noise level")
    p.add_argument("--epochs", type=int, default=None, help="(the benchmark preset's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
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
    p.add_argument("--workers", type=int, default=2, help="parallel simulation tasks (Dask)")
    return p.parse_args(argv)


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
    levels: list[NoiseSpec | None],
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
    """The dictionary and test files, the training and validation sets in memory."""
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
    train = dictionary
    if args.extra:
        rotations = sample_orientations(n=args.extra, seed=SEEDS["extra"])
        noise = list(levels.values())
        extra = simulate_cycling(rotations, detector, noise, SEEDS["extra"], dictionary.attrs)
        train = combine_pattern_sets([dictionary, extra], ["dictionary", "extra"])
    files["val"] = data_dir / "val.h5"
    val = validation_set(args, detector, levels, dictionary.attrs)
    save_pattern_dataset(files["val"], val)
    return {"files": files, "dictionary": dictionary, "train": train, "val": val}


def validation_set(
    args: argparse.Namespace, detector: DetectorSpec, levels: dict, attrs: dict
) -> PatternDataset:
    """The --val-n validation patterns at random orientations, noise levels cycling."""
    rotations = sample_orientations(n=args.val_n, seed=SEEDS["val"])
    attrs = attrs | {"seed": SEEDS["val"], "noise_levels": list(levels)}
    return simulate_cycling(rotations, detector, list(levels.values()), SEEDS["val"], attrs)


def train_cnn(args: argparse.Namespace, train: PatternDataset, val: PatternDataset):
    given = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "precision": args.precision,
        "progress": sys.stderr.isatty(),
    }
    config = OrientationCNNRegressor.preset_arguments("benchmark", config=given)["config"]
    config.patience = config.epochs
    spec = OrientationCNNSpec(
        channels=tuple(args.channels), fc_widths=tuple(args.fc_widths), output=args.output
    )
    cnn = fit_orientation_cnn(train, args.out / "cnn", val=val, spec=spec, config=config)
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


def index_tests(
    cnn: OrientationCNNRegressor, dictionaries: dict[str, PatternDataset], files: dict, levels: dict
) -> dict:
    """The CNN and every dictionary on every test set: {method: {level: (Indexed, Scan)}}."""
    runs: dict = {"cnn": {}} | {name: {} for name in dictionaries}
    for label in levels:
        scan = read_scan(files[f"test_{label}"])
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


def real_scan(
    cnn: OrientationCNNRegressor, dictionary: PatternDataset, detector: DetectorSpec
) -> tuple[Scan, Orientation, dict]:
    """kikuchipy's 3×3 nickel scan, background removed and binned to the detector's shape
    when that is a whole fraction of its 60×60, its crystal map's orientations, and what
    each method finds (or why it does not apply)."""
    signal = kp.data.nickel_ebsd_small()
    corrections = remove_background(signal)
    factor = signal.detector.shape[0] // detector.shape[0]
    if factor > 1 and tuple(np.multiply(detector.shape, factor)) == signal.detector.shape:
        signal.downsample(factor, show_progressbar=False)
        corrections.append(f"binned {factor}×{factor} to {detector.shape[0]}×{detector.shape[1]}")
    scan = scan_from_signal(signal, REAL, correct_background=False)
    scan.corrections = corrections
    found = {}
    for name, index in (
        ("cnn", lambda: index_with_model(cnn, scan)),
        ("dictionary", lambda: index_with_dictionary(dictionary, scan)),
    ):
        try:
            indexed = index()
        except DataError as exc:
            found[name] = {"applicable": False, "reason": str(exc)}
            continue
        found[name] = {
            "applicable": not indexed.notes,
            "notes": indexed.notes,
            **indexing_metrics(indexed, scan),
            "indexed": indexed,
        }
    return scan, signal.xmap.orientations, found


def plot(
    results: dict, levels: list[str], scan: Scan, reference: Orientation, real: dict, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig = plt.figure(figsize=(15, 4.2), dpi=120)
    grid = fig.add_gridspec(1, 5, width_ratios=(3.2, 1, 1, 1, 1.3))
    ax = fig.add_subplot(grid[0])
    ticks = [label.removeprefix("counts_") for label in levels]
    colours = iter(["tab:blue", "tab:orange", "tab:grey", "tab:green", "tab:purple"])
    for name, method in results["metrics"].items():
        per_level = method["noise_levels"]
        colour, style = next(colours), "o" if name == "cnn" else "s"
        label = name if name == "cnn" else f"dictionary {method['dictionary_resolution_deg']:g}°"
        label += f", {method['patterns_per_second']:,.0f}/s"
        for key, line in (("mean_disorientation_deg", "-"), ("median_disorientation_deg", ":")):
            values = [per_level[level][key] for level in levels]
            ax.plot(ticks, values, style + line, color=colour, label=f"{label} {key.split('_')[0]}")
    ax.set(
        yscale="log",
        xlabel="test noise (Poisson counts at the brightest pixel)",
        ylabel="disorientation (°)",
        title="Random test orientations (speed over the noisy sets)",
    )
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 1.5, 2, 3, 5, 7)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)
    panels = [("reference (crystal map)", reference)]
    for name in ("dictionary", "cnn"):
        if "indexed" in real[name]:
            mean = real[name]["mean_disorientation_deg"]
            panels.append((f"{name}: {mean:.2f}°", real[name]["indexed"].orientations))
    for k, (title, orientations) in enumerate(panels):
        axis = fig.add_subplot(grid[1 + k])
        draw_ipf_map(axis, orientations, scan.scan_shape)
        axis.set_title(title, fontsize=9)
    draw_ipf_key(fig, grid[4], reference)
    fig.suptitle("Nickel EBSD: CNN vs dictionary indexing; right: kikuchipy's 3×3 nickel scan")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.resolution, args.shape, args.epochs = 15.0, [20, 20], 2
        args.test_n, args.val_n, args.extra = 12, 16, 16
        args.noise_levels, args.channels, args.fc_widths = ["none", "100"], [8, 16], [32]
        args.finer = [12.0]
    t0 = time.perf_counter()
    detector = DetectorSpec(shape=tuple(args.shape))
    levels = dict(noise_level(text) for text in args.noise_levels)
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
    noisy = [label for label, noise in levels.items() if noise is not None] or list(levels)
    scan, reference, real = real_scan(cnn, data["dictionary"], detector)

    metrics = {}
    resolutions = {"dictionary": args.resolution} | {f"dictionary_{r:g}deg": r for r in args.finer}
    for name, by_level in runs.items():
        dictionary = dictionaries.get(name, data["dictionary"])
        metrics[name] = pooled(by_level, noisy) | {
            "test_sets": noisy,
            "dictionary_size": len(dictionary),
            "dictionary_resolution_deg": resolutions.get(name, args.resolution),
            "noise_levels": {
                label: pooled(by_level, [label]) | {"noise": _noise_dict(levels[label])}
                for label in levels
            },
        }
        if name in real:
            metrics[name]["real_nickel"] = {k: v for k, v in real[name].items() if k != "indexed"}
    metrics["cnn"]["val"] = cnn.metrics["val"]
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
            "real": {"source": REAL, "corrections": scan.corrections, "pc": scan.detector.pc},
        },
        "split": {
            "how": "train = the dictionary grid over the fundamental zone plus --extra "
            "patterns at random orientations; val and test = uniformly random orientations "
            "drawn with their own seeds, the test orientations the same at every noise level",
            "seeds": SEEDS,
        },
        "sizes": {
            "dictionary": len(data["dictionary"]),
            "train": len(data["train"]),
            "extra": args.extra,
            "val": len(data["val"]),
            "test_per_noise_level": args.test_n,
            "dictionaries": {name: len(d) for name, d in dictionaries.items()},
            "real": len(scan),
        },
        "settings": {
            "cnn": cnn.spec.to_dict() | {"parameters": count_parameters(cnn.net)},
            "train": {k: vars(args)[k] for k in ("epochs", "batch_size", "lr", "precision")},
            "dictionary_indexing": {"metric": "ncc", "keep_n": 1},
        },
        "metrics": metrics,
        "wall_seconds": {
            "simulate": simulate_seconds,
            "train": train_seconds,
            **{
                f"index_{name}": sum(indexed.seconds for indexed, _ in by_level.values())
                for name, by_level in runs.items()
            },
            "total": time.perf_counter() - t0,
        },
        "machine": machine(),
        "models": {"cnn": str(args.out / "cnn")},
    }
    stem = "ebsd_quick" if args.quick else "ebsd"
    write_json(results, args.results, stem)
    plot(results, list(levels), scan, reference, real, args.results / f"{stem}.png")
    return results


def _noise_dict(noise: NoiseSpec | None) -> dict | None:
    return None if noise is None else noise.to_dict()


if __name__ == "__main__":
    main()
