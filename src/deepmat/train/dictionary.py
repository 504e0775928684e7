"""Dictionary indexing: kikuchipy's matching of patterns against simulated ones, and the
estimator that wraps it with the orientation CNN's API.

:func:`dictionary_index` runs :meth:`kikuchipy.signals.EBSD.dictionary_indexing` and keeps the
best matches (:class:`IndexingResult`).

``fit`` stores a dictionary of simulated patterns and their orientations (what the CNN
learns from); ``predict`` indexes patterns against it with kikuchipy's normalized
cross-correlation (:func:`dictionary_index`) and returns orix
``Orientation``s reduced to the fundamental zone; ``evaluate`` gives the same disorientation
statistics as the CNN's. Saved, the model is its card and the dictionary (``dictionary.npz``,
patterns and scalar-first quaternions, no pickle), so a comparison of the two indexers is a
comparison of two saved models.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import kikuchipy as kp
import numpy as np
import orix.crystal_map
from orix.quaternion import Orientation, Rotation

from deepmat.data.ebsd import PatternDataset
from deepmat.data.ebsd_camera import positive_ints
from deepmat.data.ebsd_simulation import pattern_batch, rotation_batch
from deepmat.errors import ConfigError, DataError
from deepmat.physics.orientations import point_group_symmetry
from deepmat.train.ebsd import Rotations, check_rotations, fingerprint, orientation_metrics
from deepmat.train.estimator import Estimator
from deepmat.train.weights import require_file

DICTIONARY = "dictionary.npz"
METRICS = ("ncc", "ndp")


@dataclass(frozen=True, eq=False)
class IndexingResult:
    """Dictionary indexing: the ``keep_n`` best matches of every pattern, best first.

    ``rotations`` (n, keep_n) and ``indices`` (n, keep_n, into the dictionary) of the
    matches, ``scores`` (n, keep_n) their similarity (NCC: 1 is a perfect match),
    ``settings`` how the indexing ran.
    """

    rotations: Rotation
    scores: np.ndarray
    indices: np.ndarray
    settings: dict[str, Any]

    @property
    def best(self) -> Rotation:
        """The best match of every pattern, shape (n,)."""
        return self.rotations[:, 0]


def dictionary_index(
    patterns: np.ndarray,
    dictionary: PatternDataset | tuple[np.ndarray, Rotation],
    keep_n: int = 1,
    *,
    metric: str = "ncc",
    n_per_iteration: int | None = None,
    verbose: bool = False,
) -> IndexingResult:
    """Index ``patterns`` (n, height, width) against a dictionary of simulated patterns.

    Runs :meth:`kikuchipy.signals.EBSD.dictionary_indexing` with ``metric`` ("ncc",
    normalized cross-correlation, or "ndp", normalized dot product); ``n_per_iteration``
    dictionary patterns are compared at a time (None: all at once) to bound memory.
    ``verbose`` lets kikuchipy print its report and progress.
    """
    query = pattern_batch(patterns, "query patterns")
    reference, rotations = _dictionary_arrays(dictionary)
    if query.shape[1:] != reference.shape[1:]:
        raise DataError(
            f"query patterns are {query.shape[1]}×{query.shape[2]} but the dictionary's are "
            f"{reference.shape[1]}×{reference.shape[2]}: they must come from the same detector"
        )
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    (keep,) = positive_ints([keep_n], 1, "keep_n")
    if n_per_iteration is not None:
        positive_ints([n_per_iteration], 1, "n_per_iteration")
    signal = kp.signals.EBSD(reference, xmap=orix.crystal_map.CrystalMap(rotations=rotations))
    quiet = contextlib.nullcontext() if verbose else silenced()
    with quiet:
        xmap = kp.signals.EBSD(query).dictionary_indexing(
            signal, metric=metric, keep_n=keep, n_per_iteration=n_per_iteration
        )
    indices = np.asarray(xmap.prop["simulation_indices"]).reshape(len(query), -1)
    settings = {
        "metric": metric,
        "keep_n": indices.shape[1],
        "dictionary_size": len(reference),
        "n_per_iteration": n_per_iteration or len(reference),
    }
    return IndexingResult(
        rotations=rotations[indices],
        scores=np.asarray(xmap.prop["scores"]).reshape(len(query), -1),
        indices=indices,
        settings=settings,
    )


def _dictionary_arrays(
    dictionary: PatternDataset | tuple[np.ndarray, Rotation],
) -> tuple[np.ndarray, Rotation]:
    if isinstance(dictionary, PatternDataset):
        patterns, rotations = dictionary.patterns, dictionary.rotations
    elif isinstance(dictionary, tuple) and len(dictionary) == 2:
        patterns, rotations = dictionary
    else:
        raise DataError(
            "dictionary must be a PatternDataset or a (patterns, rotations) pair, got "
            f"{type(dictionary).__name__}"
        )
    patterns = pattern_batch(patterns, "dictionary patterns")
    rotations = rotation_batch(rotations)
    if rotations.size != len(patterns):
        raise DataError(
            f"the dictionary has {len(patterns)} patterns but {rotations.size} rotations"
        )
    return patterns, rotations


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Swallow what kikuchipy prints (its report, Dask's and tqdm's progress bars)."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


class DictionaryIndexer(Estimator):
    """Index EBSD patterns by their best match in a dictionary of simulated patterns.

    ``metric`` is "ncc" (normalized cross-correlation) or "ndp" (normalized dot product);
    ``n_per_iteration`` dictionary patterns are compared at a time (None: all) to bound
    memory. Presets: all three use NCC, as kikuchipy and the benchmark do.
    """

    family = "dictionary-indexer"
    input_kind: ClassVar[str] = "ebsd-pattern"
    output_kind: ClassVar[str] = "orientation"
    presets: ClassVar[dict] = {
        "default": {"metric": "ncc"},
        "paper": {"metric": "ncc"},
        "benchmark": {"metric": "ncc"},
    }

    def __init__(
        self,
        metric: str = "ncc",
        n_per_iteration: int | None = None,
        point_group: str = "m-3m",
        name: str = "dictionary-indexing",
    ):
        if metric not in METRICS:
            raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        self.metric, self.n_per_iteration, self.name = metric, n_per_iteration, name
        self.point_group = point_group
        self.symmetry = point_group_symmetry(point_group)
        self.patterns: np.ndarray | None = None
        self.rotations: np.ndarray | None = None
        self.training: dict = {}
        self.metrics: dict = {}

    @property
    def pattern_shape(self) -> tuple[int, int]:
        """(height, width) of the dictionary's patterns, the only size it indexes."""
        if self.patterns is None:
            raise ConfigError(f"{self.name} has no dictionary: call fit first")
        return tuple(self.patterns.shape[1:])

    def fit(
        self,
        X: np.ndarray,
        y: Rotations = None,
        *,
        val=None,
        workdir: str | Path | None = None,
        resume: bool = True,
    ) -> DictionaryIndexer:
        """Keep the dictionary: patterns ``X`` (n, height, width) and their orientations
        ``y``; ``val`` (patterns, orientations), when given, is indexed and scored into the
        card. ``workdir`` and ``resume`` are unused: nothing is trained."""
        start = time.perf_counter()
        patterns = np.asarray(X, dtype=np.float32)
        if patterns.ndim != 3 or not len(patterns):
            raise DataError(f"dictionary patterns must be (n, height, width), got {patterns.shape}")
        self.rotations = check_rotations(y, len(patterns), "dictionary rotations")
        self.patterns = patterns
        self.training = {
            "data": {
                "fingerprint": fingerprint(patterns, self.rotations),
                "n_train": len(patterns),
                "pattern_shape": list(self.pattern_shape),
            },
            "seconds": round(time.perf_counter() - start, 2),
        }
        if val is not None:
            self.metrics["val"] = self.evaluate(*val)
        return self

    def predict(self, X: np.ndarray, return_std: bool = False) -> Orientation:
        """Orientations of patterns ``X`` (n, height, width): the best match of each,
        reduced to the fundamental zone of the point group."""
        if return_std:
            raise self.no_uncertainty("a best match has no spread; compare the top matches")
        self.pattern_shape  # noqa: B018 - raises before indexing when not fitted
        result = dictionary_index(
            X,
            (self.patterns, Rotation(self.rotations)),
            metric=self.metric,
            n_per_iteration=self.n_per_iteration,
        )
        return Orientation(result.best.data, symmetry=self.symmetry).reduce()

    def evaluate(self, X: np.ndarray, y: Rotations = None) -> dict[str, float]:
        """Disorientation statistics of the indexed ``X`` against orientations ``y``."""
        truth = check_rotations(y, len(X), "rotations")
        return orientation_metrics(truth, self.predict(X), self.point_group)

    def card(self) -> dict:
        return {
            "family": self.family,
            "model": self.name,
            "input": self.input_kind,
            "output": self.output_kind,
            "point_group": self.point_group,
            "hyperparameters": {"metric": self.metric, "n_per_iteration": self.n_per_iteration},
            "pattern_shape": list(self.pattern_shape),
            "training": self.training,
            "metrics": self.metrics,
        }

    def save_state(self, path: Path) -> None:
        np.savez_compressed(path / DICTIONARY, patterns=self.patterns, rotations=self.rotations)

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> DictionaryIndexer:
        model = cls(**card["hyperparameters"], point_group=card["point_group"], name=card["model"])
        with np.load(require_file(path, DICTIONARY), allow_pickle=False) as stored:
            model.patterns, model.rotations = stored["patterns"], stored["rotations"]
        model.restore_record(card)
        return model
