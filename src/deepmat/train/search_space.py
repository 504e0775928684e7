"""Search spaces: what an architecture search may vary, declared next to an estimator's presets.

An estimator class sets ``search_space`` to a :class:`SearchSpace` of named parameters, each
an :class:`IntRange`, a :class:`FloatRange` or a :class:`Choice`::

    search_space = SearchSpace({
        "depth": IntRange(1, 4),
        "width": IntRange(64, 1024, log=True),
        "residual": Choice((False, True)),
        "lr": FloatRange(1e-4, 3e-3, log=True),
    })

Parameters named after :class:`~deepmat.train.config.TrainConfig` fields (``lr``,
``batch_size``, ...) change how the network trains; the others describe the architecture,
which the estimator's ``searched`` method turns into its network spec. So a family gets
architecture search by declaring its space and ``searched``; the search itself
(:mod:`deepmat.workflows.search`) asks every parameter of an Optuna trial through
:meth:`SearchSpace.sample` and knows nothing of the family. Ranges are checked when a space
is declared or narrowed (``deepmat search --space ranges.json``): an empty range is a
:class:`~deepmat.errors.ConfigError` naming the parameter.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deepmat.errors import ConfigError
from deepmat.train.config import TrainConfig

TRAINING_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


@dataclass(frozen=True)
class IntRange:
    """Whole numbers from ``low`` to ``high`` (both included), every ``step``th, or on a log
    scale (for widths: 64 to 1024 as likely as 16 to 256)."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def check(self, name: str) -> None:
        if self.low > self.high:
            raise ConfigError(f"search parameter {name!r}: empty range {self.low}..{self.high}")
        if self.log and self.low < 1:
            raise ConfigError(f"search parameter {name!r}: a log range starts at 1 or more")
        if self.step < 1 or (self.log and self.step != 1):
            raise ConfigError(f"search parameter {name!r}: step {self.step} (1 on a log scale)")

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, int)
            and self.low <= value <= self.high
            and (value - self.low) % self.step == 0
        )


@dataclass(frozen=True)
class FloatRange:
    """Real numbers from ``low`` to ``high``, uniform or on a log scale (learning rates)."""

    low: float
    high: float
    log: bool = False

    def check(self, name: str) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ConfigError(f"search parameter {name!r}: bounds must be finite numbers")
        if self.low > self.high:
            raise ConfigError(f"search parameter {name!r}: empty range {self.low}..{self.high}")
        if self.log and self.low <= 0:
            raise ConfigError(f"search parameter {name!r}: a log range starts above 0")

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int | float) and self.low <= value <= self.high


@dataclass(frozen=True)
class Choice:
    """One of ``choices`` (numbers, strings or booleans)."""

    choices: tuple

    def check(self, name: str) -> None:
        if not self.choices:
            raise ConfigError(f"search parameter {name!r}: no choices (an empty range)")

    def suggest(self, trial, name: str) -> Any:
        return trial.suggest_categorical(name, self.choices)

    def contains(self, value: Any) -> bool:
        return value in self.choices


Parameter = IntRange | FloatRange | Choice
_KINDS = {"int": IntRange, "float": FloatRange, "choice": Choice}


@dataclass(frozen=True)
class SearchSpace:
    """Named parameters of a search; checked on creation."""

    params: Mapping[str, Parameter]

    def __post_init__(self) -> None:
        if not self.params:
            raise ConfigError("a search space needs at least one parameter")
        for name, parameter in self.params.items():
            parameter.check(name)

    def sample(self, trial) -> dict[str, Any]:
        """One value per parameter, asked of an Optuna trial (its sampler decides)."""
        return {name: p.suggest(trial, name) for name, p in self.params.items()}

    def contains(self, point: Mapping[str, Any]) -> bool:
        """Whether ``point`` gives every parameter, and only those, a value in its range."""
        return point.keys() == self.params.keys() and all(
            p.contains(point[name]) for name, p in self.params.items()
        )

    def narrowed(self, ranges: Mapping[str, Any]) -> SearchSpace:
        """This space with some parameters' ranges replaced, as a JSON file gives them:
        ``[low, high]`` for a range (its scale and step kept), a list of choices for a
        choice, or an object of the parameter's fields (``{"low": 1e-4, "high": 1e-2,
        "log": true}``). An unknown name or an empty range is a ConfigError naming it."""
        params = dict(self.params)
        for name, given in ranges.items():
            if name not in params:
                raise ConfigError(
                    f"search parameter {name!r} is not in this space; it has "
                    f"{', '.join(self.params)}"
                )
            params[name] = _replaced(name, params[name], given)
        return SearchSpace(params)

    def to_dict(self) -> dict[str, dict]:
        """The space as plain data (for a search's summary and the trials' cards)."""
        kinds = {cls: kind for kind, cls in _KINDS.items()}
        return {
            name: {"kind": kinds[type(p)]} | dataclasses.asdict(p)
            for name, p in self.params.items()
        }


def _replaced(name: str, current: Parameter, given: Any) -> Parameter:
    """``current`` with the fields ``given`` (see :meth:`SearchSpace.narrowed`)."""
    try:
        if isinstance(given, Mapping):
            replaced = dataclasses.replace(
                current, **({"choices": tuple(given["choices"])} if "choices" in given else given)
            )
        elif isinstance(current, Choice):
            replaced = Choice(tuple(given))
        else:
            low, high = given
            replaced = dataclasses.replace(current, low=low, high=high)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"search parameter {name!r}: cannot read {given!r} ({exc})") from None
    replaced.check(name)
    return replaced


def split_values(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A point of a search space as (architecture values, training-configuration values)."""
    training = {k: v for k, v in values.items() if k in TRAINING_FIELDS}
    return {k: v for k, v in values.items() if k not in TRAINING_FIELDS}, training
