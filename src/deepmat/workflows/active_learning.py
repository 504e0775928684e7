"""Pool-based active learning on the estimator protocol: which records to label next.

A :class:`Pool` holds unlabelled records of one input kind (compositions, structures,
microstructures); an *oracle* reveals the label of a record on request: a
:class:`TableOracle` (labels known in advance and hidden from the model, as a benchmark
replays DFT) or a :class:`FunctionOracle` (any function of one record: the FFT elasticity
solver, a DFT wrapper, an experiment's script). Each round of :func:`learn`

1. fits the model to the labels so far: ``fit`` in the first round, then ``refit``, which
   warm-starts where the family can (a forest grows new trees, see
   :meth:`~deepmat.train.estimator.Estimator.refit`); or, with ``committee`` k ≥ 2, k
   members each fitted to a bootstrap resample of the labels, combined as an
   :class:`~deepmat.train.ensemble.Ensemble` (query by committee: a spread for models
   that give none);
2. predicts the whole pool with standard deviations and scores the unlabelled records by an
   acquisition function (:mod:`deepmat.workflows.acquisition`);
3. picks a batch (the best scores, or with ``diverse`` spread over the model's feature
   space) and asks the oracle for its labels.

Every finished round is written to the run folder (``rounds.json``: labels used, the
chosen records' ids, indices and labels, the model's validation metrics, seconds), so a run
that stops resumes from its last finished round without asking the oracle again. Round r
draws its random numbers from the seed sequence (seed, r), so a resumed run makes the
choices an uninterrupted one would, up to the model's own warm start (a resumed run fits
the model afresh on the recorded labels).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from deepmat.data.registry import atomic_write
from deepmat.errors import ConfigError, DataError
from deepmat.train.estimator import Estimator
from deepmat.workflows.acquisition import (
    Goal,
    acquisition_scores,
    best_label,
    check_acquisition,
    check_goal,
    select,
)

SETTINGS_FILE = "run.json"
ROUNDS_FILE = "rounds.json"


@dataclass(frozen=True)
class Pool:
    """Unlabelled records: a table (targets removed) or an array with one record per row
    along axis 0; ``kind`` is the ``input_kind`` of the models that read them and ``ids``
    name the records in the round record and in errors."""

    records: object
    kind: str
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, indices: Sequence[int] | np.ndarray) -> object:
        """The records at ``indices`` (repeats allowed), as the model's ``X``."""
        indices = np.asarray(indices, dtype=np.int64)
        if hasattr(self.records, "subset"):
            return self.records.subset(indices)
        return np.asarray(self.records)[indices]

    def record(self, i: int) -> object:
        """One record as a domain object for an oracle function: a pymatgen Composition or
        Structure, or the array of one microstructure."""
        for name in ("compositions", "structures"):
            if hasattr(self.records, name):
                return getattr(self.records, name)[i]
        return np.asarray(self.records)[i]

    def fingerprint(self) -> str:
        """SHA-256 of the ids (and of an array pool's values): identifies the pool."""
        digest = hashlib.sha256("\n".join(self.ids).encode())
        if isinstance(self.records, np.ndarray):
            digest.update(np.ascontiguousarray(self.records).tobytes())
        return digest.hexdigest()


def pool_of(records, kind: str | None = None, ids: Sequence[str] | None = None) -> Pool:
    """A pool of a CompositionTable, a StructureTable (their targets removed, so the model
    only sees labels the oracle reveals) or an array (``kind`` "microstructure" unless
    given); ids default to the formulas, the structure ids or the row numbers."""
    from deepmat.data.composition import CompositionTable
    from deepmat.data.structures import StructureTable

    if isinstance(records, CompositionTable):
        kind, default_ids = "composition", records.formulas
    elif isinstance(records, StructureTable):
        kind, default_ids = "structure", records.ids
    else:
        records = np.asarray(records)
        kind, default_ids = kind or "microstructure", [str(i) for i in range(len(records))]
    if hasattr(records, "targets") and records.targets is not None:
        records = replace(records, targets=None)
    ids = tuple(str(i) for i in (ids if ids is not None else default_ids))
    if len(ids) != len(records):
        raise DataError(f"{len(ids)} ids for a pool of {len(records)} records")
    if not ids:
        raise DataError("the pool is empty")
    return Pool(records, kind, ids)


@dataclass
class TableOracle:
    """Labels known in advance (one per pool record), revealed only when asked: a labelled
    table playing the part of DFT or an experiment. ``asked`` counts the labels revealed."""

    labels: np.ndarray
    asked: int = 0

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(self.labels))
        if len(bad):
            raise DataError(f"oracle label of record {bad[0]} is not a finite number")

    def __call__(self, pool: Pool, indices: np.ndarray) -> np.ndarray:
        if len(self.labels) != len(pool):
            raise DataError(f"{len(self.labels)} oracle labels for a pool of {len(pool)}")
        self.asked += len(indices)
        return self.labels[np.asarray(indices)]


@dataclass
class FunctionOracle:
    """Labels computed on request by ``function(record)`` for one record at a time
    (:meth:`Pool.record`): a simulation, a DFT wrapper, any user function returning a
    number. ``asked`` counts the calls."""

    function: Callable[[object], float]
    name: str = "oracle"
    asked: int = 0

    def __call__(self, pool: Pool, indices: np.ndarray) -> np.ndarray:
        values = []
        for i in indices:
            value = self.function(pool.record(int(i)))
            self.asked += 1
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = float("nan")
            if not np.isfinite(value):
                raise DataError(f"{self.name} gave no finite number for record {pool.ids[i]}")
            values.append(value)
        return np.array(values)


@dataclass(frozen=True)
class LearningSettings:
    """One active-learning run: ``initial`` random labels, then ``rounds`` batches of
    ``batch`` chosen by ``acquisition`` (``goal`` and ``kappa`` for discovery), spread over
    the model's feature space among ``candidates`` × ``batch`` best when ``diverse``;
    ``committee`` ≥ 2 bootstrap members give the spread (0: the model's own)."""

    acquisition: str = "max_std"
    goal: Goal = "min"
    initial: int = 500
    batch: int = 500
    rounds: int = 10
    diverse: bool = False
    candidates: int = 5
    kappa: float = 2.0
    committee: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        check_acquisition(self.acquisition)
        object.__setattr__(self, "goal", check_goal(self.goal))
        if self.initial < 2 or self.batch < 1 or self.rounds < 0 or self.candidates < 1:
            raise ConfigError(
                "need initial ≥ 2, batch ≥ 1, rounds ≥ 0 and candidates ≥ 1; got "
                f"{self.initial}, {self.batch}, {self.rounds}, {self.candidates}"
            )
        if self.committee == 1 or self.committee < 0:
            raise ConfigError(
                f"committee is 0 (the model's own spread) or ≥ 2, not {self.committee}"
            )

    @property
    def labels(self) -> int:
        """The labels a whole run asks for."""
        return self.initial + self.rounds * self.batch


@dataclass
class LearningRun:
    """The rounds of a run so far (each a dict: ``round``, ``labels``, ``indices``,
    ``chosen`` ids, ``values``, ``best``, ``metrics``, ``seconds``) and its latest model."""

    settings: LearningSettings
    rounds: list[dict] = field(default_factory=list)
    model: Estimator | None = None

    @property
    def indices(self) -> np.ndarray:
        """Pool indices of every labelled record, in the order they were labelled."""
        return np.array([i for r in self.rounds for i in r["indices"]], dtype=np.int64)

    @property
    def values(self) -> np.ndarray:
        """Their labels."""
        return np.array([v for r in self.rounds for v in r["values"]], dtype=np.float64)

    def curve(self, metric: str = "mae") -> tuple[np.ndarray, np.ndarray]:
        """(labels, ``metric``) after each round: a validation metric, or ``best``."""
        labels = np.array([r["labels"] for r in self.rounds])
        if metric == "best":
            return labels, np.array([r["best"] for r in self.rounds])
        return labels, np.array([r["metrics"].get(metric, np.nan) for r in self.rounds])


def _write_json(path: Path, payload) -> None:
    """``payload`` to ``path`` through :func:`~deepmat.data.registry.atomic_write`, so a
    crash never leaves half a file."""
    with atomic_write(path) as partial:
        partial.write_text(json.dumps(payload, indent=1, default=float))


def _identity(model: Estimator) -> dict:
    """What a resumed run must share with the recorded one: the model's card without its
    training record (family, hyper-parameters, representation, target)."""
    try:
        card = model.card()
    except NotImplementedError:
        card = {"family": model.family, "model": model.name}
    return {k: v for k, v in card.items() if k not in ("training", "metrics")}


def _start_or_resume(
    out: Path, settings: LearningSettings, pool: Pool, model: Estimator
) -> list[dict]:
    """The finished rounds recorded in ``out`` (none for a new run); a folder holding a run
    with other settings, another pool or another model is refused."""
    header = {"settings": asdict(settings), "pool": {"size": len(pool), "kind": pool.kind}}
    header["pool"]["fingerprint"] = pool.fingerprint()
    header["model"] = _identity(model)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / SETTINGS_FILE
    if previous.exists():
        recorded = json.loads(previous.read_text())
        if recorded != json.loads(json.dumps(header, default=float)):
            raise ConfigError(
                f"{out} holds another run (settings, pool or model differ: {previous}); "
                "give another folder, or delete it to start again"
            )
        rounds = out / ROUNDS_FILE
        return json.loads(rounds.read_text()) if rounds.exists() else []
    _write_json(previous, header)
    return []


def _validation_metrics(model: Estimator, val) -> dict:
    """The model's metrics on ``val`` (recorded by its fit when it scores ``val``)."""
    if val is None:
        return {}
    return dict(
        model.metrics.get("val") or model.evaluate(*(val if isinstance(val, tuple) else (val,)))
    )


def _train(
    previous: Estimator | None,
    make_model: Callable[[int], Estimator],
    pool: Pool,
    run: LearningRun,
    val,
    workdir: Path,
) -> Estimator:
    """The model of this round (module docstring, step 1)."""
    from deepmat.train.ensemble import Ensemble

    s = run.settings
    indices, values = run.indices, run.values
    if s.committee >= 2:
        rng = np.random.default_rng([s.seed, len(run.rounds), 1])
        members = []
        for m in range(s.committee):
            pick = rng.integers(len(indices), size=len(indices))
            member = make_model(s.seed + m)
            members.append(
                member.fit(pool.take(indices[pick]), values[pick], workdir=workdir / f"{m}")
            )
        return Ensemble.from_members(members, val)
    if previous is None:
        return make_model(s.seed).fit(pool.take(indices), values, val=val, workdir=workdir)
    return previous.refit(pool.take(indices), values, val=val, workdir=workdir)


def _choose(model: Estimator, pool: Pool, run: LearningRun, rng: np.random.Generator):
    """Pool indices of the next batch (module docstring, steps 2 and 3). The whole pool is
    predicted (one feature cache entry for every round), the labelled records left out."""
    s = run.settings
    unlabelled = np.ones(len(pool), dtype=bool)
    unlabelled[run.indices] = False
    rest = np.flatnonzero(unlabelled)
    mean = std = np.zeros(len(pool))
    if s.acquisition != "random":
        mean, std = (
            np.asarray(a, dtype=np.float64) for a in model.predict(pool.records, return_std=True)
        )
    best = best_label(run.values, s.goal)
    scores = acquisition_scores(s.acquisition, mean[rest], std[rest], best, s.goal, s.kappa, rng)
    features = np.asarray(model.embed(pool.records))[rest] if s.diverse else None
    picked = select(scores, s.batch, features, s.candidates, int(rng.integers(2**31)))
    return rest[picked]


def learn(
    make_model: Callable[[int], Estimator],
    pool: Pool,
    oracle: Callable[[Pool, np.ndarray], np.ndarray],
    settings: LearningSettings,
    out: str | Path,
    *,
    val=None,
    progress: Callable[[dict], None] | None = None,
    save: bool = True,
) -> LearningRun:
    """Run (or resume) active learning in the folder ``out`` (module docstring).

    ``make_model(seed)`` returns a new, untrained estimator (one per committee member);
    ``val`` (a table with targets, or a pair (records, targets)) scores the model after
    every round and is passed to ``fit`` (early stopping for networks); ``progress`` is
    called with each finished round's record. The model of the last round is saved in
    ``out/model`` (unless ``save`` is False: an estimator of an unregistered family).
    """
    out = Path(out)
    probe = make_model(settings.seed)
    if probe.input_kind != pool.kind:
        raise DataError(
            f"the pool holds {pool.kind} records, but {probe.name} ({probe.family}) reads "
            f"{probe.input_kind} inputs"
        )
    if settings.labels > len(pool):
        raise ConfigError(
            f"{settings.initial} initial + {settings.rounds} rounds × {settings.batch} labels "
            f"= {settings.labels} is more than the pool's {len(pool)} records"
        )
    run = LearningRun(settings, _start_or_resume(out, settings, pool, probe))
    for r in range(len(run.rounds), settings.rounds + 1):
        start = time.perf_counter()
        rng = np.random.default_rng([settings.seed, r])
        if r == 0:
            chosen = rng.choice(len(pool), settings.initial, replace=False)
        else:
            if run.model is None:  # resumed: fit afresh to the recorded labels
                run.model = _train(None, make_model, pool, run, val, out / "work" / f"{r}-resumed")
            chosen = _choose(run.model, pool, run, rng)
        values = np.asarray(oracle(pool, chosen), dtype=np.float64)
        run.rounds.append(
            {
                "round": r,
                "indices": chosen.tolist(),
                "chosen": [pool.ids[i] for i in chosen],
                "values": values.tolist(),
            }
        )
        run.model = _train(run.model, make_model, pool, run, val, out / "work" / str(r))
        run.rounds[-1] |= {
            "labels": len(run.indices),
            "best": best_label(run.values, settings.goal),
            "metrics": _validation_metrics(run.model, val),
            "seconds": time.perf_counter() - start,
        }
        _write_json(out / ROUNDS_FILE, run.rounds)
        if progress:
            progress(run.rounds[-1])
    if run.model is None:  # every round was finished before: the model of the last one
        run.model = _train(None, make_model, pool, run, val, out / "work" / "final")
    if save:
        run.model.save(out / "model")
    return run


def summarise_curves(
    curves: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]],
) -> dict[str, dict]:
    """Per strategy: labels and the mean and standard deviation over seeds of a curve
    (each seed's (labels, values), at the same labels)."""
    summary = {}
    for name, seeded in curves.items():
        values = np.array([v for _, v in seeded], dtype=np.float64)
        summary[name] = {
            "labels": np.asarray(seeded[0][0]).tolist(),
            "mean": values.mean(0).tolist(),
            "std": (
                values.std(0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
            ).tolist(),
        }
    return summary


def draw_curves(ax, summary: Mapping[str, dict], ylabel: str, title: str = "") -> None:
    """Mean curves with ±1 standard deviation bands (:func:`summarise_curves`) on ``ax``."""
    for name, curve in summary.items():
        x, mean, std = (np.asarray(curve[k], dtype=np.float64) for k in ("labels", "mean", "std"))
        ax.plot(x, mean, marker=".", label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set(xlabel="labels", ylabel=ylabel, title=title)
    ax.legend(fontsize=7)


def plot_run(run: LearningRun, path: str | Path) -> Path:
    """The curves of one run at ``path``: the validation MAE (when scored) and the best
    label found, against the labels used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepmat.train.metrics import save_figure

    goal = run.settings.goal
    best = f"best label ({goal})" if goal in ("min", "max") else f"closest distance to {goal}"
    panels = [("best", best)]
    if any("mae" in r["metrics"] for r in run.rounds):
        panels.insert(0, ("mae", "validation MAE"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), dpi=120)
    title = run.settings.acquisition + (" (diverse)" if run.settings.diverse else "")
    for ax, (metric, ylabel) in zip(np.atleast_1d(axes), panels, strict=True):
        draw_curves(ax, summarise_curves({title: [run.curve(metric)]}), ylabel)
    return save_figure(fig, path)
