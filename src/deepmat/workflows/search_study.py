"""The Optuna side of an architecture search: storage, sampler, and a budget shared by workers.

Every worker, in one process or on many machines, opens the same study through a storage:

* ``sqlite:///runs/search.db``: one machine, several processes;
* ``postgresql://user:password@host/db`` (or another SQLAlchemy URL): many machines;
* a file path without ``://`` (``runs/search.log``): Optuna's journal file, one machine.

The database storages keep a heartbeat: every running trial's worker writes a time stamp
every ``heartbeat`` seconds, and a trial whose stamp is older than three heartbeats is failed
by the next worker that looks and queued again with the same parameters
(``RetryHeartbeatStaleTrialCallback``), so a worker killed mid-trial loses no trial. Optuna's
journal storage has no heartbeat: a killed worker's trial stays RUNNING there, and the
search's summary lists it.

:func:`optimize_within_budget` runs trials until the study holds ``budget`` finished ones
(complete or pruned), counted across all workers from the storage; trials that failed
(a killed worker, a network that diverged) do not count and are replaced.
"""

from __future__ import annotations

import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from deepmat.errors import ConfigError, DeepmatError, StorageError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: seconds between a running trial's heartbeats (database storages)
HEARTBEAT_SECONDS = 10
#: how many times the trial of a killed worker is queued again
MAX_RETRIES = 2
CROSSOVERS = ("uniform", "blxalpha", "sbx", "vsbx", "undx", "spx")
SAMPLERS = ("nsga2", "tpe")


class BudgetSpent(DeepmatError):
    """A trial started after the study's budget was taken (two workers started at once)."""


def shown_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and summaries)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def has_heartbeat(url: str) -> bool:
    """Whether the storage at ``url`` keeps heartbeats (databases do, journal files not)."""
    return "://" in url


def open_storage(url: str, heartbeat: int = HEARTBEAT_SECONDS) -> optuna.storages.BaseStorage:
    """The storage at ``url`` (see the module docstring), or a :class:`StorageError` that
    names it and says why it cannot be opened."""
    if not has_heartbeat(url):
        folder = Path(url).parent
        if not folder.is_dir():
            raise StorageError(f"study storage {url}: the folder {folder} does not exist")
        backend = optuna.storages.journal.JournalFileBackend(url)
        return optuna.storages.JournalStorage(backend)
    import sqlalchemy.exc

    sqlite = url.startswith("sqlite")
    engine = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    MAX_RETRIES
                ),
            )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open the study storage {shown_url(url)}: {reason}") from None


@dataclass(frozen=True)
class SamplerSpec:
    """How new trials are proposed: NSGA-II, a genetic algorithm (``population`` trials per
    generation, children by ``crossover`` with probability ``crossover_prob``, each
    parameter mutated with probability ``mutation_prob``, by default 1/number of
    parameters), or TPE (``kind="tpe"``). ``seed`` seeds each worker's sampler, offset by
    the machine's name and the worker's index so that no two workers propose alike."""

    kind: str = "nsga2"
    population: int = 20
    crossover: str = "uniform"
    crossover_prob: float = 0.9
    mutation_prob: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SAMPLERS:
            raise ConfigError(f"sampler {self.kind!r} is not one of {', '.join(SAMPLERS)}")
        if self.crossover not in CROSSOVERS:
            raise ConfigError(f"crossover {self.crossover!r} is not one of {', '.join(CROSSOVERS)}")
        if self.population < 2:
            raise ConfigError(f"population {self.population} is smaller than 2")
        for name in ("crossover_prob", "mutation_prob"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} {value} is not between 0 and 1")

    def build(self, worker: str) -> optuna.samplers.BaseSampler:
        """The sampler of the worker named ``worker`` (host and index)."""
        seed = self.seed + zlib.crc32(worker.encode()) % 100_000
        if self.kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        nsgaii = optuna.samplers.nsgaii
        crossovers = {
            "uniform": nsgaii.UniformCrossover,
            "blxalpha": nsgaii.BLXAlphaCrossover,
            "sbx": nsgaii.SBXCrossover,
            "vsbx": nsgaii.VSBXCrossover,
            "undx": nsgaii.UNDXCrossover,
            "spx": nsgaii.SPXCrossover,
        }
        return optuna.samplers.NSGAIISampler(
            population_size=self.population,
            crossover=crossovers[self.crossover](),
            crossover_prob=self.crossover_prob,
            mutation_prob=self.mutation_prob,
            seed=seed,
        )


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    objectives: tuple[str, ...],
    settings: dict,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """The study ``name`` in ``storage``, created on first use with one minimised direction
    per objective and ``settings`` (what is searched, how) kept in it. A worker joining an
    existing study must search the same: other settings are a ConfigError naming them."""
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        sampler=sampler,
        directions=["minimize"] * len(objectives),
        load_if_exists=True,
    )
    kept = study.user_attrs.get("search")
    if kept is None:
        study.set_user_attr("search", settings)
    elif kept != settings:
        differ = sorted(k for k in kept.keys() | settings.keys() if kept.get(k) != settings.get(k))
        raise ConfigError(
            f"study {name!r} searches other settings than these ({', '.join(differ)}); "
            "use the same options to join it, or another --study"
        )
    return study


def counts(study: optuna.Study) -> Counter:
    """How many trials of the study are in each state."""
    return Counter(t.state for t in study.get_trials(deepcopy=False))


def optimize_within_budget(
    study: optuna.Study,
    objective: Callable[[Trial], float | tuple[float, ...]],
    budget: int,
    heartbeat: bool,
    poll_seconds: float = 1.0,
) -> None:
    """Run ``objective`` on new trials of ``study`` in this process until the study holds
    ``budget`` finished trials, counted across every worker. While the last trials run in
    other workers this one waits for them, failing those whose heartbeat stopped (their
    retries then run here); without a ``heartbeat`` (journal files: :func:`has_heartbeat`)
    it leaves them to their workers."""
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        state = counts(study)
        finished = sum(state[s] for s in FINISHED)
        if finished >= budget:
            return
        if finished + state[TrialState.RUNNING] >= budget:
            if not heartbeat:
                return
            time.sleep(poll_seconds)
            continue
        study.optimize(objective, n_trials=1, catch=(BudgetSpent,))


def check_budget(trial: Trial, budget: int) -> None:
    """Raise :class:`BudgetSpent` (the trial fails, marked ``surplus``) when ``budget``
    trials with lower numbers already finished or run: two workers that started a trial at
    the same moment for the last place in the budget."""
    ahead = [
        t
        for t in trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        if t.number < trial.number
    ]
    if len(ahead) >= budget:
        trial.set_user_attr("surplus", True)
        raise BudgetSpent(f"trial {trial.number}: the budget of {budget} trials is taken")


def retried_from(trial: FrozenTrial | Trial) -> int | None:
    """The number of the trial (of a killed worker) that ``trial`` runs again, or None."""
    if isinstance(trial, Trial):
        trial = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
