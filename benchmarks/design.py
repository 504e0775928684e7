"""Microstructure design with a GAN and Bayesian optimisation, against random designs.

1. A family of 2-D two-phase structures (:class:`deepmat.workflows.design.GRFFamily`:
   anisotropic periodic Gaussian random fields, φ ∈ [0.25, 0.55], σ₁, σ₂ ∈ [1, 4] px, 32²)
   gives training and validation structures; a GAN per adversarial loss (``wgan-gp``,
   ``hinge``) is trained on the training part and the one whose generated structures are
   closest to the validation structures (mean S₂ MSE) is kept; ``--gan NAME`` takes a saved
   or shipped GAN (``gan-grf32``, made by this script) instead of training. A VAE
   (:class:`deepmat.train.vae.MicrostructureVAE`) is trained on the same structures. Each
   generator's distances to a held-out third set are reported beside those of the
   validation set itself (the floor set by sampling alone). Both sets are saved as
   ``OUT/val.h5`` and ``OUT/held_out.h5``, so ``deepmat evaluate OUT/vae OUT/held_out.h5
   --json`` scores a generator again.
2. Each objective (``--objectives``: stiffness components of the structure extruded along
   x3; phases E = 1 and 10, ν = 0.3; φ = ``--volume-fraction`` exactly) is maximised by
   three strategies at ``--budget`` FFT solver calls each, over ``--seeds`` seeds:
   ``bayesian`` (BoTorch GP + qLogEI over the latent box, batches of ``--batch``),
   ``random_latent`` (prior draws) and ``random_parameters`` (the family at random σ₁, σ₂).
   The latent strategies search the VAE (``bayesian``, ``random_latent``) and the GAN
   (``bayesian_gan``, ``random_latent_gan``). Reported per strategy: mean and standard
   deviation over seeds of the best value found, the calls, the seconds, the mean
   best-so-far curve; per objective: the Voigt and the isotropic Hashin–Shtrikman upper
   bounds.

    python benchmarks/design.py --out runs/design
    python benchmarks/design.py --out runs/design --gan gan-grf32   # the shipped GAN
    python benchmarks/design.py --out /tmp/d --quick
"""

from __future__ import annotations

import time

import numpy as np

import deepmat
from _shared import command, machine, parser, write_json
from deepmat.data.voxels import write_voxel_dataset
from deepmat.train.generative import LOSSES, MicrostructureGAN, distribution_distance
from deepmat.train.metrics import save_figure
from deepmat.train.vae import MicrostructureVAE
from deepmat.workflows.design import (
    DesignProblem,
    GRFFamily,
    compare_strategies,
    summarise,
)


def parse_args(argv=None):
    p = parser(__doc__, "design")
    p.add_argument("--size", type=int, default=32, help="image side (px)")
    p.add_argument("--train-size", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--losses", nargs="*", default=list(LOSSES))
    p.add_argument("--gan", help="a saved or shipped GAN to use instead of training one")
    p.add_argument("--objectives", nargs="*", default=["c11"])
    p.add_argument("--volume-fraction", type=float, default=0.4)
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--initial", type=int, default=10)
    return p.parse_args(argv)


def generator_row(generator, held_out) -> dict:
    """A generator's validation and held-out distances and how its training went."""
    return {
        "val": generator.metrics["val"],
        "held_out": generator.evaluate(held_out),
        "train_seconds": generator.training["train_seconds"],
        "epochs_run": generator.training["epochs_run"],
        "best_epoch": generator.training["best_epoch"],
    }


def fit_generator(args, estimator, name: str, spec: dict, train, val, family):
    """Train one generator at the benchmark preset and save it as ``OUT/name``."""
    config = {"epochs": args.epochs, "progress": not args.quick}
    if args.quick:
        config["batch_size"] = 8
    generator = estimator.from_preset("benchmark", config=config, spec={"size": args.size} | spec)
    generator.name = name
    generator.fit(train, val=val, workdir=args.out / name / "checkpoints")
    generator.training["data"]["source"] = {"family": family.__dict__, "seeds": [0, 1, 2]}
    generator.save(args.out / name)
    return generator


def train_generators(args, family: GRFFamily) -> tuple[dict, dict, str, dict]:
    """The generators' validation and held-out distances, the generators searched ({"gan":
    the GAN kept, "vae": the VAE}), the GAN's loss, and the data sizes."""
    train, val, held_out = (
        family.generate(n, seed)
        for n, seed in (
            (args.train_size, 0),
            (max(64, args.train_size // 8), 1),
            (max(64, args.train_size // 8), 2),
        )
    )
    data = (train, val)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, structures in (("val", val), ("held_out", held_out)):
        write_voxel_dataset(args.out / f"{name}.h5", structures, attrs={"family": str(family)})
    rows, gans = {}, {}
    if args.gan:
        gan = deepmat.load(args.gan)
        gans[gan.spec.loss] = gan
        rows[f"gan_{gan.spec.loss}"] = generator_row(gan, held_out) | {"source": args.gan}
    for loss in [] if args.gan else args.losses:
        name = f"gan_{loss}"
        gans[loss] = fit_generator(args, MicrostructureGAN, name, {"loss": loss}, *data, family)
        rows[name] = generator_row(gans[loss], held_out)
    chosen = min(gans, key=lambda loss: gans[loss].metrics["val"]["s2_mse"])
    vae = fit_generator(args, MicrostructureVAE, "vae", {}, *data, family)
    rows["vae"] = generator_row(vae, held_out)
    rows["sampling_floor"] = distribution_distance(val, held_out)
    sizes = {"train": len(train), "val": len(val), "held_out": len(held_out), "size": args.size}
    return rows, {"gan": gans[chosen], "vae": vae}, chosen, sizes


def plot(results: dict, runs: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = list(runs)
    fig, axes = plt.subplots(
        len(objectives), 6, figsize=(19, 3.4 * len(objectives)), dpi=110, squeeze=False
    )
    for row, objective in zip(axes, objectives, strict=True):
        metrics = results["metrics"][objective]
        curve_ax = row[0]
        for strategy, seeded in runs[objective].items():
            curves = np.array([run.best_so_far for run in seeded])
            calls = np.arange(1, curves.shape[1] + 1)
            curve_ax.plot(calls, curves.mean(0), label=strategy)
            curve_ax.fill_between(calls, curves.min(0), curves.max(0), alpha=0.15)
            value, structure = max((run.best for run in seeded), key=lambda b: b[0])
            image_ax = row[1 + list(runs[objective]).index(strategy)]
            image_ax.imshow(structure, cmap="gray_r", interpolation="nearest")
            image_ax.set(title=f"{strategy}: {value:.3f}", xticks=[], yticks=[])
        for key in ("voigt_bound", "hashin_shtrikman_bound"):
            curve_ax.axhline(metrics[key], ls="--", lw=0.8, color="grey")
            curve_ax.annotate(key.replace("_", " "), (1, metrics[key]), fontsize=7)
        curve_ax.set(xlabel="solver calls", ylabel=f"best {objective}", title="mean, min–max")
        curve_ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.size, args.train_size, args.epochs = 16, 64, 1
        args.budget, args.seeds, args.batch, args.initial = 6, 2, 2, 3
    t0 = time.perf_counter()
    family = GRFFamily(size=args.size)
    generators, searched, chosen, sizes = train_generators(args, family)
    train_seconds = time.perf_counter() - t0
    metrics, runs = {"generators": generators, "chosen_loss": chosen}, {}
    seeds = list(range(args.seeds))
    budget = (args.budget, seeds, args.batch, args.initial)
    for objective in args.objectives:
        problem = DesignProblem(objective, args.volume_fraction)
        runs[objective] = compare_strategies(problem, searched["vae"], family, *budget)
        latent = ("bayesian", "random_latent")
        on_gan = compare_strategies(problem, searched["gan"], None, *budget, strategies=latent)
        runs[objective] |= {f"{name}_gan": seeded for name, seeded in on_gan.items()}
        summary = summarise(runs[objective])
        for searcher, baselines in (
            ("bayesian", ("random_latent", "random_parameters")),
            ("bayesian_gan", ("random_latent_gan", "random_parameters")),
        ):
            for strategy in baselines:
                gain = summary[searcher]["best_mean"] / summary[strategy]["best_mean"] - 1
                summary[searcher][f"gain_over_{strategy}"] = gain
        metrics[objective] = summary | problem.bounds() | {"generator": "vae"}
    results = {
        "benchmark": "design",
        "quick": args.quick,
        "command": command(),
        "data": {
            "family": family.__dict__,
            "seeds": {"train": 0, "val": 1, "held_out": 2},
            "files": "OUT/val.h5 and OUT/held_out.h5 (deepmat evaluate OUT/<generator> FILE)",
            "phases": "E = 1 and 10, nu = 0.3 (phase 1 the stiff one)",
        },
        "split": "train / val (picks the epoch and the GAN's loss) / held-out, separately drawn",
        "sizes": sizes
        | {
            "budget": args.budget,
            "seeds": args.seeds,
            "batch": args.batch,
            "initial": args.initial,
            "volume_fraction": args.volume_fraction,
        },
        "metrics": metrics,
        "models": {
            name: args.gan if "source" in row else str(args.out / name)
            for name, row in generators.items()
            if name != "sampling_floor"
        },
        "wall_seconds": {"generators": train_seconds, "total": time.perf_counter() - t0},
        "machine": machine(),
    }
    stem = "design_quick" if args.quick else "design"
    write_json(results, args.results, stem)
    plot(results, runs, args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
