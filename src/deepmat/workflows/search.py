"""Architecture search (``deepmat search``): many networks of one family, trained the same way
by workers that share one Optuna study, and the Pareto front of error against cost.

After MENNDL (Patton et al.), which evaluated thousands of architectures with an asynchronous
genetic algorithm: here the algorithm is Optuna's NSGA-II (or TPE), the space is the one the
estimator declares next to its presets (:mod:`deepmat.train.search_space`), and the workers
are processes that each run trials of the same study through a storage
(:mod:`deepmat.workflows.search_study`): ``workers`` processes started here, and the same
command on other machines joins them.

Any family that declares a search space can be searched on its kind of data
(:mod:`deepmat.workflows.search_data`): composition networks on tables, orientation CNNs on
EBSD pattern files, segmentation networks on labelled micrographs. Every trial trains
``estimator.searched(point)`` on the same data with the same training options and is scored
on the objectives (each minimised): ``error`` (the family's validation error: MAE,
mean disorientation in degrees, or 1 − mean IoU), ``latency`` (seconds per record of
``predict``, measured, best of three), ``flops`` (floating point operations of the matrix
products and convolutions per record, counted) and ``params`` (weights). Each epoch's
monitored validation metric is compared with the earlier trials' at the same epoch, and a
trial worse than their median is stopped (pruned). Every trial that trained, pruned or not,
is saved as a normal model directory ``OUT/trials/<number>/`` whose card holds the study,
the trial number and the point (``training.search``); ``OUT/search.json`` and
``OUT/pareto.png`` summarise the study.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import socket
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback
from optuna.trial import FrozenTrial, Trial, TrialState
from rich.console import Console

from deepmat.errors import ConfigError, DeepmatError
from deepmat.train.estimator import Estimator
from deepmat.train.search_space import SearchSpace
from deepmat.train.trainer import training_callbacks
from deepmat.workflows.search_data import SearchData
from deepmat.workflows.search_study import (
    FINISHED,
    HEARTBEAT_SECONDS,
    SamplerSpec,
    check_budget,
    counts,
    has_heartbeat,
    open_storage,
    open_study,
    optimize_within_budget,
    retried_from,
    shown_url,
)

#: objective name → the measurement (see :func:`measure`) it minimises
OBJECTIVES = {
    "error": "val_error",
    "latency": "latency_seconds",
    "flops": "flops",
    "params": "params",
}
#: finished trials before pruning starts, and the share of the epochs never pruned
PRUNE_STARTUP_TRIALS = 5
PRUNE_WARMUP = 0.25
console = Console(stderr=True)


@dataclass(frozen=True)
class SearchJob:
    """One search: which model is searched on which data (its ``models`` name the models it
    can train), where the study lives, the budget of finished trials over all workers, and
    how trials are proposed and trained. Picklable: every worker process runs from a copy."""

    model: str
    data: SearchData
    out: Path
    trials: int
    storage: str | None = None
    study: str = "search"
    workers: int = 1
    objectives: tuple[str, ...] = ("error", "latency", "params")
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    preset: str = "default"
    epochs: int | None = None
    subset: int | None = None
    val_subset: int | None = None
    seed: int = 0
    space: dict = field(default_factory=dict)
    prune: bool = True
    start: bool = True
    heartbeat: int = HEARTBEAT_SECONDS
    latency_records: int = 2048

    def __post_init__(self) -> None:
        if self.model not in self.data.models:
            raise ConfigError(
                f"model {self.model!r} is not searchable on this data; choose "
                f"{', '.join(self.data.models)}"
            )
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or not self.objectives or len(set(self.objectives)) < len(self.objectives):
            raise ConfigError(
                f"objectives {list(self.objectives)}: name each of {', '.join(OBJECTIVES)} "
                "at most once"
            )
        for name in ("trials", "workers", "heartbeat"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be 1 or more, not {getattr(self, name)}")

    @property
    def storage_url(self) -> str:
        """The storage, by default a SQLite file in OUT."""
        return self.storage or f"sqlite:///{self.out / 'study.db'}"

    def settings(self) -> dict:
        """What every worker of the study must share (kept in the study), as the study's
        JSON keeps it (tuples as lists)."""
        settings = {
            "model": self.model,
            "data": {"kind": type(self.data).__name__} | asdict(self.data),
            "trials": self.trials,
            "objectives": list(self.objectives),
            "preset": self.preset,
            "epochs": self.epochs,
            "subset": self.subset,
            "val_subset": self.val_subset,
            "seed": self.seed,
            "space": self.space,
            "start": self.start,
        }
        return json.loads(json.dumps(settings))


class MedianEpochPruning(Callback):
    """Stops a trial whose monitored validation metric (the trainer's ``val_mae``: the
    validation MAE of a regressor, the validation loss of an image network) after an epoch
    is above the median of the
    finished trials' at the same epoch (Optuna's median rule), once
    :data:`PRUNE_STARTUP_TRIALS` trials finished and past the first :data:`PRUNE_WARMUP` of
    the epochs. Optuna's pruners read values reported with ``trial.report``, which
    multi-objective studies refuse, so each epoch's value is kept in the trial's user attribute
    ``val_mae_by_epoch``, where every worker reads it."""

    def __init__(self, trial: Trial, epochs: int):
        self.trial = trial
        self.warmup = max(1, math.ceil(PRUNE_WARMUP * epochs))
        self.history: list[float] = []
        self.pruned_at: int | None = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        value = float(trainer.callback_metrics["val_mae"])
        self.history.append(value)
        self.trial.set_user_attr("val_mae_by_epoch", self.history)
        epoch = len(self.history)
        if epoch <= self.warmup:
            return
        others = [
            t.user_attrs["val_mae_by_epoch"][epoch - 1]
            for t in self.trial.study.get_trials(deepcopy=False, states=FINISHED)
            if len(t.user_attrs.get("val_mae_by_epoch", ())) >= epoch
        ]
        if len(others) >= PRUNE_STARTUP_TRIALS and value > statistics.median(others):
            self.pruned_at = epoch
            trainer.should_stop = True


def predict_seconds(model: Estimator, records) -> float:
    """Seconds ``model.predict(records)`` takes: the fastest of three calls, after one to
    warm up."""
    model.predict(records)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        model.predict(records)
        runs.append(time.perf_counter() - start)
    return min(runs)


def measure(model: Estimator, data: SearchData, val, sample) -> dict[str, float]:
    """A trained model's validation error (``data.error``), weights, FLOPs per record
    (matrix products and convolutions, counted by PyTorch) and ``predict`` seconds per record
    on ``sample`` (best of three, warmed up)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model.predict(sample)
    return {
        "val_error": data.error(model, val),
        "params": int(sum(p.numel() for p in model.net.parameters())),
        "flops": counter.get_total_flops() / len(sample),
        "latency_seconds": predict_seconds(model, sample) / len(sample),
    }


def search_space(job: SearchJob) -> SearchSpace:
    """The space the model's estimator declares, with the job's narrowed ranges."""
    return job.data.estimator_class(job.model).declared_search_space().narrowed(job.space)


def start_point(job: SearchJob) -> dict | None:
    """The point a new study tries first: the estimator's ``search_start`` (its default
    network) when the job asks for it and the job's space holds it; None otherwise."""
    point = job.data.estimator_class(job.model).search_start
    if job.start and point is not None and search_space(job).contains(point):
        return point
    return None


class TrialObjective:
    """Trains, measures and saves the network of one trial (called by Optuna)."""

    def __init__(self, job: SearchJob, worker: str):
        self.job, self.worker = job, worker
        self.base, self.train, self.val = job.data.load(job)
        self.space = search_space(job)
        self.sample = job.data.head(self.val, job.latency_records)

    def __call__(self, trial: Trial) -> tuple[float, ...]:
        check_budget(trial, self.job.trials)
        trial.set_user_attr("worker", self.worker)
        point = self.space.sample(trial)
        model = self.base.searched(point)
        workdir = self.job.out / "trials" / str(trial.number)
        shutil.rmtree(workdir / "checkpoints", ignore_errors=True)  # never resume another's
        pruning = MedianEpochPruning(trial, model.config.epochs)
        with training_callbacks(*([pruning] if self.job.prune else [])):
            self.job.data.fit(model, self.train, self.val, workdir)
        measured = measure(model, self.job.data, self.val, self.sample)
        state = "pruned" if pruning.pruned_at else "complete"
        model.training["search"] = {
            "study": self.job.study,
            "storage": shown_url(self.job.storage_url),
            "trial": trial.number,
            "retried_from": retried_from(trial),
            "point": point,
            "state": state,
            "pruned_at_epoch": pruning.pruned_at,
            "measured": measured,
        }
        model.save(workdir)
        shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
        for key, value in measured.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("path", str(workdir))
        console.print(
            f"[{self.worker}] trial {trial.number} {state}: validation "
            f"{self.job.data.error_name} {measured['val_error']:.4g}, "
            f"{measured['params']:,} weights, {measured['latency_seconds'] * 1e6:.3g} µs/record"
        )
        if pruning.pruned_at:
            raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
        return tuple(measured[OBJECTIVES[o]] for o in self.job.objectives)


def run_worker(job: SearchJob, index: int = 0) -> None:
    """One worker: run trials of the job's study until its budget is finished. Workers
    started together share this machine's cores (threads that outnumber the cores would
    slow every trial and blur the latencies measured)."""
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if job.workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job.workers))
    worker = f"{socket.gethostname()}:{os.getpid()}:{index}"
    objective = TrialObjective(job, worker)
    storage = open_storage(job.storage_url, job.heartbeat)
    study = open_study(
        storage, job.study, job.objectives, job.settings(), job.sampler.build(worker)
    )
    optimize_within_budget(study, objective, job.trials, has_heartbeat(job.storage_url))


def _worker_process(job: SearchJob, index: int) -> None:
    """:func:`run_worker` in a process of its own: a deepmat error (data that cannot be read,
    a storage that cannot be reached) is one line on the console and exit code 2, not a
    traceback."""
    try:
        run_worker(job, index)
    except DeepmatError as exc:
        console.print(f"[red]search worker {index}: {exc}[/]", soft_wrap=True)
        raise SystemExit(2) from None


def run_search(job: SearchJob) -> dict:
    """Run a search: create or join the study, run ``job.workers`` workers (in this process
    for one, in their own processes for more) until the budget is finished, and write
    ``OUT/search.json`` and ``OUT/pareto.png``; returns the summary."""
    start = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search_space_dict(job)  # a bad range stops the search before any study exists
    job.out.mkdir(parents=True, exist_ok=True)
    storage = open_storage(job.storage_url, job.heartbeat)
    study = open_study(storage, job.study, job.objectives, job.settings())
    point = start_point(job)
    if point is not None and not study.trials:
        study.enqueue_trial(point, user_attrs={"start": True})
    exit_codes = [0]
    if job.workers == 1:
        run_worker(job)
    else:
        context = multiprocessing.get_context("spawn")
        processes = [
            context.Process(target=_worker_process, args=(job, i), name=f"search-worker-{i}")
            for i in range(job.workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        exit_codes = [p.exitcode for p in processes]
    study = optuna.load_study(study_name=job.study, storage=storage)
    if all(exit_codes) and not any(counts(study)[s] for s in FINISHED):
        raise DeepmatError(
            f"every search worker failed (exit codes {exit_codes}) before a trial finished; "
            "their errors are printed above"
        )
    return summarise(study, job, time.perf_counter() - start, exit_codes)


def _trial_row(trial: FrozenTrial) -> dict[str, Any]:
    keep = ("worker", "path", *OBJECTIVES.values(), "surplus", "start")
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "point": trial.params,
        "retried_from": retried_from(trial),
        **{k: trial.user_attrs[k] for k in keep if k in trial.user_attrs},
    }


def summarise(study: optuna.Study, job: SearchJob, seconds: float, exit_codes: list) -> dict:
    """``OUT/search.json`` (every trial, the Pareto front, the best by validation error) and
    ``OUT/pareto.png``; trials still RUNNING (a killed worker's, on a journal file) are
    listed, never dropped."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    front = study.best_trials if complete else []
    state = counts(study)
    summary = {
        "study": job.study,
        "storage": shown_url(job.storage_url),
        "model": job.model,
        "objectives": list(job.objectives),
        "budget": job.trials,
        "states": {s.name.lower(): n for s, n in state.items()},
        "workers": job.workers,
        "worker_exit_codes": exit_codes,
        "seconds": seconds,
        "sampler": asdict(job.sampler),
        "space": search_space_dict(job),
        "error": job.data.error_name,
        "best": _trial_row(min(complete, key=lambda t: t.user_attrs["val_error"]))
        if complete
        else None,
        "pareto": [_trial_row(t) for t in sorted(front, key=lambda t: t.number)],
        "running": [t.number for t in trials if t.state == TrialState.RUNNING],
        "trials": [_trial_row(t) for t in trials],
    }
    (job.out / "search.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_pareto(summary, job.out / "pareto.png")
    return summary


def search_space_dict(job: SearchJob) -> dict:
    """The job's space as plain data, from the estimator's class alone (no data loaded)."""
    return search_space(job).to_dict()


def plot_pareto(summary: dict, path: Path) -> None:
    """Validation error against predict latency and against weights: every complete trial,
    the Pareto front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepmat.train.metrics import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for ax, key, label in (
        (axes[0], "latency_seconds", "predict µs per record"),
        (axes[1], "params", "weights"),
    ):
        scatter_trials(ax, summary, key)
        ax.set(xlabel=label, ylabel=f"validation {summary['error']}")
        if summary["best"]:  # a log axis needs a point
            ax.set_xscale("log")
    axes[0].legend()
    done = sum(t["state"] == "complete" for t in summary["trials"])
    fig.suptitle(f"{summary['study']}: {done} complete trials of {summary['model']}")
    save_figure(fig, path)


def scatter_trials(ax, summary: dict, key: str) -> None:
    """Validation error of every complete trial against ``key`` (``latency_seconds``, shown in
    µs, or ``params``) on ``ax``, the Pareto front in colour."""
    scale = 1e6 if key == "latency_seconds" else 1
    front = {t["number"] for t in summary["pareto"]}
    done = [t for t in summary["trials"] if t["state"] == "complete"]
    for on_front, style in ((False, {"c": "0.6", "s": 14}), (True, {"c": "C3", "s": 30})):
        shown = [t for t in done if (t["number"] in front) == on_front]
        ax.scatter(
            [t[key] * scale for t in shown],
            [t["val_error"] for t in shown],
            label="Pareto front" if on_front else "trials",
            **style,
        )
