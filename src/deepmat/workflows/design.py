"""Microstructure design: search a generator's latent space with Bayesian optimisation, the
FFT elasticity solver in the loop (after Yang et al., J. Mech. Des. 140, 111416, 2018). The
generator is a GAN, as theirs, or a VAE (:data:`GENERATORS`), whose smoother latent space
suits the Gaussian process better.

A :class:`DesignProblem` names a stiffness component to maximise (``c11``, ``c22`` or
``c66``, the Mandel component of the effective stiffness of a 2-D structure extruded along
x3), the phases, and the volume fraction of phase 1, which every candidate meets exactly:
a generated structure is thresholded at that share of its most probable pixels, a
parametric one drawn at that fraction. One *call* is one solver run.

Three strategies spend the same number of calls:

* ``bayesian``: BoTorch. The latent box [−3, 3]ᵈ is scaled to the unit cube; a
  :class:`~botorch.models.SingleTaskGP` (Matérn-5/2, standardised outcomes) is fitted to the
  calls so far, and batches of ``batch`` candidates maximise q-log-expected improvement
  (``qLogExpectedImprovement``), after ``initial`` draws from the prior;
* ``random_latent``: latent vectors drawn from the prior N(0, I);
* ``random_parameters``: the generator's training family itself (:class:`GRFFamily`) at
  random parameters, the designs a user would get without the generator.

The physical limits of the objective are the Voigt bound (any microstructure of those
phases and fractions) and, for isotropic composites, the Hashin–Shtrikman upper bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deepmat.data.microstructures import check_volume_fraction, gaussian_random_field
from deepmat.errors import ConfigError, DataError
from deepmat.parallel import torch_threads
from deepmat.physics.elasticity import (
    IsotropicPhase,
    hashin_shtrikman_bounds,
    solve,
    voigt_stiffness,
)

#: objective → Mandel index of the stiffness component (C_ii = mean stress_i under e_i)
OBJECTIVES = {"c11": 0, "c22": 1, "c66": 5}
STRATEGIES = ("bayesian", "random_latent", "random_parameters")
#: generator kinds whose latent space a design can search
GENERATORS = ("gan", "vae")
#: half-width of the latent box Bayesian optimisation searches (in prior standard deviations)
LATENT_BOX = 3.0


@dataclass(frozen=True)
class GRFFamily:
    """Anisotropic periodic Gaussian random fields on a ``size``² grid: phase 1 on a
    fraction drawn from ``volume_fraction`` (min, max), smoothed by a Gaussian of standard
    deviation drawn from ``feature_size`` (min, max) along each axis independently: fine,
    coarse, isotropic, and elongated along either axis."""

    size: int = 32
    volume_fraction: tuple[float, float] = (0.25, 0.55)
    feature_size: tuple[float, float] = (1.0, 4.0)

    def parameters(
        self, n: int, rng: np.random.Generator, volume_fraction: float | None = None
    ) -> np.ndarray:
        """(n, 3) parameters (φ, σ₁, σ₂) drawn uniformly; φ fixed when given."""
        phi = rng.uniform(*self.volume_fraction, n) if volume_fraction is None else None
        sigma = rng.uniform(*self.feature_size, (n, 2))
        phi = np.full(n, volume_fraction) if phi is None else phi
        return np.column_stack([phi, sigma])

    def render(self, parameters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Structures uint8 (n, size, size), one per row of ``parameters``."""
        shape = (self.size, self.size)
        return np.stack(
            [gaussian_random_field(shape, phi, (s1, s2), rng) for phi, s1, s2 in parameters]
        )

    def generate(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` structures at random parameters."""
        rng = np.random.default_rng(seed)
        return self.render(self.parameters(n, rng), rng)


@dataclass(frozen=True)
class DesignProblem:
    """Maximise the ``objective`` stiffness component at phase-1 fraction
    ``volume_fraction``; phases (matrix, inclusion) as isotropic (E, ν)."""

    objective: str = "c11"
    volume_fraction: float = 0.4
    phases: tuple[IsotropicPhase, IsotropicPhase] = field(
        default=(IsotropicPhase(1.0, 0.3), IsotropicPhase(10.0, 0.3))
    )
    tol: float = 1e-5

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"objective {self.objective!r} is not one the FFT solver computes here; "
                f"choose from {', '.join(OBJECTIVES)}"
            )
        check_volume_fraction(self.volume_fraction)

    def __call__(self, structure: np.ndarray) -> float:
        """The objective of one 2-D two-phase structure (one solver call)."""
        structure = np.asarray(structure)
        if structure.ndim != 2:
            raise DataError(f"a design is a 2-D structure, got shape {structure.shape}")
        index = OBJECTIVES[self.objective]
        with torch_threads(1):  # a unit strain e_i: the mean stress σ_i is C_ii
            field_ = solve(structure[:, :, None], self.phases, np.eye(6)[index], tol=self.tol)
        return float(field_.mean_stress[index])

    def bounds(self) -> dict[str, float]:
        """The objective's Voigt bound and the Hashin–Shtrikman upper bound of an isotropic
        composite (its C11 = K + 4G/3 and C66 = 2G in Mandel notation)."""
        fractions = np.array([1 - self.volume_fraction, self.volume_fraction])
        index = OBJECTIVES[self.objective]
        voigt = float(voigt_stiffness(self.phases, fractions)[index, index])
        hs = hashin_shtrikman_bounds(self.phases, fractions)
        isotropic = (
            2 * hs["shear_upper"] if index == 5 else hs["bulk_upper"] + 4 * hs["shear_upper"] / 3
        )
        return {"voigt_bound": voigt, "hashin_shtrikman_bound": float(isotropic)}


@dataclass
class DesignRun:
    """One strategy's calls in order: objective values, the structures, the latent vectors
    (or family parameters) that made them, and seconds."""

    strategy: str
    values: list[float] = field(default_factory=list)
    structures: list[np.ndarray] = field(default_factory=list)
    inputs: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter, repr=False)

    def finish(self) -> DesignRun:
        """Record the seconds since the run started; returns the run."""
        self.seconds = time.perf_counter() - self.started
        return self

    def add(self, problem: DesignProblem, structures: np.ndarray, inputs: np.ndarray) -> None:
        for structure, x in zip(structures, inputs, strict=True):
            self.values.append(problem(structure))
            self.structures.append(structure)
            self.inputs.append(np.asarray(x))

    @property
    def best_so_far(self) -> np.ndarray:
        """The best objective after each call."""
        return np.maximum.accumulate(self.values)

    @property
    def best(self) -> tuple[float, np.ndarray]:
        i = int(np.argmax(self.values))
        return self.values[i], self.structures[i]


def random_parameters(
    problem: DesignProblem, family: GRFFamily, budget: int, seed: int = 0
) -> DesignRun:
    """``budget`` structures of the family at random parameters and the problem's fraction."""
    run, rng = DesignRun("random_parameters"), np.random.default_rng(seed)
    parameters = family.parameters(budget, rng, problem.volume_fraction)
    run.add(problem, family.render(parameters, rng), parameters)
    return run.finish()


def random_latent(problem: DesignProblem, generator, budget: int, seed: int = 0) -> DesignRun:
    """``budget`` structures decoded from latent vectors drawn from the prior."""
    run = DesignRun("random_latent")
    z = generator.latents(budget, seed)
    run.add(problem, generator.decode(z, problem.volume_fraction), z)
    return run.finish()


def bayesian(
    problem: DesignProblem,
    generator,
    budget: int,
    seed: int = 0,
    batch: int = 5,
    initial: int = 10,
    progress: Callable[[DesignRun], None] | None = None,
) -> DesignRun:
    """Bayesian optimisation of the problem over the generator's latent box (module docstring);
    ``progress`` is called with the run after every batch."""
    import torch
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood

    if not 1 <= initial <= budget or batch < 1:
        raise ConfigError(f"need 1 ≤ initial ({initial}) ≤ budget ({budget}) and batch ≥ 1")
    torch.manual_seed(seed)
    run = DesignRun("bayesian")
    d = generator.latent_dim
    z0 = np.clip(generator.latents(initial, seed), -LATENT_BOX, LATENT_BOX)
    run.add(problem, generator.decode(z0, problem.volume_fraction), z0)
    unit = torch.tensor(np.array([[0.0] * d, [1.0] * d]), dtype=torch.float64)
    while len(run.values) < budget:
        x = torch.tensor(
            (np.array(run.inputs) + LATENT_BOX) / (2 * LATENT_BOX), dtype=torch.float64
        )
        y = torch.tensor(run.values, dtype=torch.float64).unsqueeze(-1)
        q = min(batch, budget - len(run.values))
        with torch_threads(1):
            model = SingleTaskGP(x, y, outcome_transform=Standardize(m=1))
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            acquisition = qLogExpectedImprovement(model, best_f=y.max())
            candidates, _ = optimize_acqf(
                acquisition, bounds=unit, q=q, num_restarts=8, raw_samples=256
            )
        z = (candidates.numpy() * 2 - 1) * LATENT_BOX
        run.add(problem, generator.decode(z.astype(np.float32), problem.volume_fraction), z)
        if progress:
            progress(run)
    return run.finish()


def run_strategy(
    strategy: str,
    problem: DesignProblem,
    generator,
    family: GRFFamily | None,
    budget: int,
    seed: int = 0,
    batch: int = 5,
    initial: int = 10,
    progress: Callable[[DesignRun], None] | None = None,
) -> DesignRun:
    """One of :data:`STRATEGIES` at ``budget`` calls (``progress``: Bayesian batches)."""
    if strategy == "bayesian":
        return bayesian(problem, generator, budget, seed, batch, initial, progress)
    if strategy == "random_latent":
        return random_latent(problem, generator, budget, seed)
    if strategy == "random_parameters":
        return random_parameters(problem, family, budget, seed)
    raise ConfigError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


def compare_strategies(
    problem: DesignProblem,
    generator,
    family: GRFFamily,
    budget: int,
    seeds: list[int],
    batch: int = 5,
    initial: int = 10,
    strategies: tuple[str, ...] = STRATEGIES,
) -> dict[str, list[DesignRun]]:
    """Every strategy over every seed, at ``budget`` calls each."""
    return {
        name: [
            run_strategy(name, problem, generator, family, budget, seed, batch, initial)
            for seed in seeds
        ]
        for name in strategies
    }


def summarise(runs: dict[str, list[DesignRun]]) -> dict[str, dict]:
    """Per strategy: mean and standard deviation over seeds of the best objective found,
    the calls, the seconds, and the mean best-so-far curve."""
    summary = {}
    for name, seeded in runs.items():
        best = np.array([run.best[0] for run in seeded])
        curves = np.array([run.best_so_far for run in seeded])
        summary[name] = {
            "best_mean": float(best.mean()),
            "best_std": float(best.std(ddof=1)) if len(best) > 1 else math.nan,
            "best_per_seed": best.tolist(),
            "calls": len(seeded[0].values),
            "seeds": len(seeded),
            "seconds_mean": float(np.mean([run.seconds for run in seeded])),
            "curve_mean": curves.mean(0).tolist(),
        }
    return summary


def read_structures(path: Path) -> np.ndarray:
    """The 2-D two-phase structures (n, s, s) of a ``deepmat generate`` HDF5 file (a
    trailing axis of one voxel is dropped)."""
    from deepmat.data.voxels import read_voxel_dataset

    structures = read_voxel_dataset(path, with_strain=False).microstructures
    if structures.ndim == 4 and structures.shape[-1] == 1:
        structures = structures[..., 0]
    if structures.ndim != 3:
        raise DataError(
            f"{path}: a generator learns 2-D structures; these have shape {structures.shape[1:]}"
        )
    return structures


def evaluate_generator_file(generator, data: Path, plot: Path) -> dict:
    """The generator's distances to the structures of ``data`` (an HDF5 file), and a picture
    of four of them above four generated ones at ``plot``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepmat.train.metrics import save_figure

    real = read_structures(data)
    metrics = generator.evaluate(real)
    made = generator.sample(4, seed=0)
    fig, axes = plt.subplots(2, 4, figsize=(8, 4.3), dpi=110)
    for ax, image, title in zip(
        axes.ravel(), [*real[:4], *made], ["data"] * 4 + ["generated"] * 4, strict=False
    ):
        ax.imshow(image, cmap="gray_r", interpolation="nearest")
        ax.set(title=title, xticks=[], yticks=[])
    save_figure(fig, plot)
    return metrics


def training_structures(
    data: Path | None, family: GRFFamily, n: int, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Training and validation structures for a generator, with where they came from: the
    2-D microstructures of a ``deepmat generate`` HDF5 file ``data`` (split at random), or
    ``n`` drawn from ``family`` (validation: a tenth as many more, from another seed)."""
    if data is None:
        n_val = max(64, round(n * val_fraction))
        source = {"family": asdict(family), "n_train": n, "n_val": n_val, "seed": seed}
        return family.generate(n, seed), family.generate(n_val, seed + 1), source
    structures = read_structures(data)
    order = np.random.default_rng(seed).permutation(len(structures))
    n_val = max(1, round(len(structures) * val_fraction))
    source = {"data": str(data), "n_train": len(structures) - n_val, "n_val": n_val}
    return structures[order[n_val:]], structures[order[:n_val]], source


def write_run(run: DesignRun, problem: DesignProblem, out: Path) -> dict:
    """Save a design run under ``out``: ``calls.csv`` (call, objective, best so far, the
    latent vector or parameters), ``best.npy`` and ``best.png``; returns its summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from deepmat.train.metrics import save_figure

    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(np.array(run.inputs)).add_prefix("x")
    table.insert(0, "best_so_far", run.best_so_far)
    table.insert(0, problem.objective, run.values)
    table.insert(0, "call", np.arange(1, len(run.values) + 1))
    table.to_csv(out / "calls.csv", index=False)
    value, structure = run.best
    np.save(out / "best.npy", structure)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), dpi=120)
    left.imshow(structure, cmap="gray_r", interpolation="nearest")
    left.set(title=f"best design: {problem.objective} = {value:.3f}", xticks=[], yticks=[])
    right.plot(table["call"], run.values, ".", alpha=0.5, label="call")
    right.plot(table["call"], run.best_so_far, label="best so far")
    for name, bound in problem.bounds().items():
        right.axhline(bound, ls="--", lw=0.8, color="grey")
        right.annotate(name.replace("_", " "), (1, bound), fontsize=7, va="bottom")
    right.set(xlabel="solver calls", ylabel=problem.objective, title=run.strategy)
    right.legend(fontsize=8)
    save_figure(fig, out / "best.png")
    return {
        "strategy": run.strategy,
        "objective": problem.objective,
        "best": value,
        "calls": len(run.values),
        "seconds": run.seconds,
        **problem.bounds(),
    }


def generator_class(kind: str):
    """The estimator class of a generator kind (:data:`GENERATORS`), the saved-model
    registry's family ``microstructure-<kind>``."""
    from deepmat.train.saved import estimator_class

    if kind not in GENERATORS:
        raise ConfigError(f"unknown generator {kind!r}; choose from {', '.join(GENERATORS)}")
    return estimator_class(f"microstructure-{kind}")


def train_generator(
    out: Path,
    data: Path | None = None,
    n: int = 4096,
    preset: str = "default",
    spec: dict | None = None,
    overrides: dict | None = None,
    seed: int = 0,
    resume: bool = True,
    kind: str = "gan",
):
    """Train a generator of :data:`GENERATORS` (a GAN or a VAE) on the structures of
    ``data``, or on ``n`` drawn from :class:`GRFFamily` at the generator's image size, and
    save it to ``out`` (checkpoints in ``out/checkpoints``, resumed unless ``resume`` is
    False); the card records where the structures came from."""
    import shutil

    estimator = generator_class(kind)
    arguments = estimator.preset_arguments(preset, overrides)
    arguments["spec"] = arguments["spec"] | (spec or {})
    generator = estimator(**arguments)
    family = GRFFamily(size=generator.spec.size)
    train, val, source = training_structures(data, family, n, seed=seed)
    checkpoints = Path(out) / "checkpoints"
    if not resume and checkpoints.exists():
        shutil.rmtree(checkpoints)
    generator.fit(train, val=val, workdir=checkpoints)
    generator.training["data"]["source"] = source
    generator.save(out)
    return generator
