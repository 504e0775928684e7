"""Orientation refinement: a final, optional step after any indexer (the orientation CNN,
dictionary indexing) that moves each orientation to the best match of the pattern with one
projected from the master pattern.

Indexers give orientations to their own resolution (a dictionary's grid spacing, the CNN's
error); kikuchipy's :meth:`~kikuchipy.signals.EBSD.refine_orientation` then maximises the
normalized cross-correlation between each pattern and patterns simulated on the fly from the
master pattern, by local searches of the Euler angles within a trust region around the
indexed orientation, the projection centre fixed. Local searches polish orientations
that are already near and cannot rescue those further off than the trust region. SciPy's
Nelder–Mead searches every pattern first; SciPy's modified Powell and a global search
(SciPy's differential evolution within :data:`GLOBAL_REGION_DEG` of the indexed orientation)
then search again only the patterns whose match is in doubt (:func:`in_doubt`: an NCC well
below the median of its chunk of the scan, or a search that ended at the trust region's
edge), keeping each pattern's best match; ``thorough=True`` gives every pattern all three.
Each search fails where another does not: SciPy's Nelder–Mead starts from a simplex 5 % of
each Euler angle wide (up to ~18°), which on kikuchipy's real nickel patterns left 5 of 9
orientations started 4° off worse than they began, where Powell brought 8 of 9 to within
0.6° of the scan's own; Powell in turn stalls near Φ = 0, where φ1 and φ2 turn about the
same axis, and Nelder–Mead does not; a CNN's orientation of one real nickel pattern 10.3°
off stayed 9° off after both local searches (NCC 0.10) and came to 0.4° (NCC 0.49) by the
global one. Searching again only the doubtful ones gives the same orientations as searching
all (within 0.0005° on the EBSD benchmark's simulated and real sets) 2–20× faster:
Nelder–Mead costs about 18 ms a 60×60 pattern, Powell 40 ms, the global search 300 ms.

The simulations must be of the patterns' phase and detector: a master pattern of another
point group or phase name than the indexer's and the scan's, or patterns of another shape
than the detector's, is an error rather than a silently wrong answer. Patterns are compared
as :func:`~deepmat.workflows.ebsd.scan_input` gives them to a dictionary (a camera's
patterns background-corrected, simulations as they are), since the master pattern has no
background.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kikuchipy as kp
import numpy as np
from orix.crystal_map import CrystalMap, PhaseList
from orix.quaternion import Orientation, Rotation

from deepmat.data.ebsd import size_text
from deepmat.data.ebsd_simulation import DetectorSpec, describe_master, loaded_master
from deepmat.errors import ConfigError, DataError
from deepmat.parallel import progress_bar
from deepmat.physics.orientations import point_group_symmetry
from deepmat.represent.patterns import check_patterns
from deepmat.train.dictionary import silenced
from deepmat.workflows.ebsd import Indexed, Scan, scan_input

if TYPE_CHECKING:
    from kikuchipy.signals import EBSDMasterPattern

# Half-width of the search box around each indexed orientation, per Euler angle (degrees):
# wide enough for a coarse dictionary's grid (3° spacing) and the CNN's typical error.
TRUST_REGION_DEG = 5.0
# Largest number of similarity evaluations per pattern (the search stops earlier when it
# converges); each is one projection from the master pattern.
MAX_EVALUATIONS = 300
# SciPy's minimize methods: the first searches every pattern, the others the doubtful ones
METHODS = ("Nelder-Mead", "Powell")
# Half-width of the global search box per Euler angle (degrees): an indexer's misses up to
# about twice the local trust region; 0 leaves the global search out.
GLOBAL_REGION_DEG = 12.0
# SciPy's differential evolution as the global search: its population (times the 3 Euler
# angles), generations and tolerance, seeded for repeatable results (≈ 0.25 s a pattern).
GLOBAL_SEARCH = {"popsize": 15, "maxiter": 30, "tol": 1e-3, "rng": 0}
# A first search's match is in doubt below this fraction of its chunk's median NCC, or when
# it moved an Euler angle this fraction of the trust region or more (it wanted to go on).
DOUBT_SCORE = 0.9
DOUBT_EDGE = 0.8
# Patterns refined at a time (a step of the progress bar); doubt is judged within each chunk.
CHUNK = 500


def refinement_master(master: EBSDMasterPattern | str | Path | None) -> EBSDMasterPattern:
    """The master pattern to refine against: kikuchipy's shipped nickel one (None), a master
    pattern file, or one already loaded."""
    if master is None or isinstance(master, str | Path):
        return loaded_master(None if master is None else str(master))
    return master


def check_master_phase(
    master: EBSDMasterPattern, point_group: str, phase: str | None, what: str
) -> None:
    """Raise :class:`DataError` when ``master`` is not of the point group of ``what`` (the
    indexed orientations) or, when the scan names one, not of its ``phase``."""
    found = master.phase.point_group.name
    if found != point_group:
        raise DataError(
            f"the master pattern ({master.phase.name}) has point group {found} but {what} "
            f"are of point group {point_group}: refine against the master pattern of the "
            "scan's phase"
        )
    if phase and master.phase.name and master.phase.name.lower() != phase.lower():
        raise DataError(
            f"the master pattern is of the phase {master.phase.name!r} but {what} are of "
            f"{phase!r}: refine against the master pattern of the scan's phase"
        )


def refine_orientations(
    patterns: np.ndarray,
    rotations: Rotation,
    detector: DetectorSpec,
    master: EBSDMasterPattern | str | Path | None = None,
    *,
    point_group: str = "m-3m",
    phase: str | None = None,
    energy: float | None = None,
    trust_region_deg: float = TRUST_REGION_DEG,
    max_evaluations: int = MAX_EVALUATIONS,
    global_region_deg: float = GLOBAL_REGION_DEG,
    thorough: bool = False,
    progress: bool = False,
) -> tuple[Orientation, np.ndarray]:
    """Orientations of ``patterns`` (n, height, width) refined from ``rotations`` (n,)
    against ``master`` on ``detector``, reduced to the fundamental zone of ``point_group``,
    with their NCC scores (n,; 1 is a perfect match): the best match of each pattern's
    searches (module docstring): :data:`METHODS` within ``trust_region_deg``, at most
    ``max_evaluations`` each, and a global search within ``global_region_deg`` (0: none),
    the later ones for the doubtful patterns only unless ``thorough``. Patterns are refined
    :data:`CHUNK` at a time, with a progress bar if ``progress``.

    ``phase`` (a phase name) and ``point_group`` are those of the patterns, checked against
    the master pattern's (:func:`check_master_phase`); ``energy`` (kV) picks the master
    pattern's energy (None: its highest, or the one it was made for).
    """
    patterns = check_patterns(patterns)
    rotations = Rotation(rotations).flatten()
    if patterns.shape[1:] != detector.shape:
        raise DataError(
            f"patterns are {size_text(patterns.shape[1:])} pixels but the detector is "
            f"{size_text(detector.shape)}: refine with the detector the patterns were taken on"
        )
    if rotations.size != len(patterns):
        raise DataError(f"{len(patterns)} patterns but {rotations.size} orientations to refine")
    if trust_region_deg <= 0 or max_evaluations < 1 or global_region_deg < 0:
        raise ConfigError(
            f"trust_region_deg must be positive, max_evaluations at least 1 and "
            f"global_region_deg positive or 0, got {trust_region_deg}, {max_evaluations} "
            f"and {global_region_deg}"
        )
    master = refinement_master(master)
    check_master_phase(master, point_group, phase, "the orientations to refine")
    energy_kv = describe_master(master, "master", energy)["energy_kv"]
    if energy_kv is None:
        raise ConfigError("the master pattern records no beam energy: give the energy (kV)")
    searches = [
        (trust_region_deg, "minimize", {"method": method, "options": {"maxfev": max_evaluations}})
        for method in METHODS
    ]
    if global_region_deg:
        searches.append((global_region_deg, "differential_evolution", GLOBAL_SEARCH))
    found, scores = np.empty((len(patterns), 4)), np.empty(len(patterns))
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("refining", total=len(patterns))
        for first in range(0, len(patterns), CHUNK):
            part = slice(first, first + CHUNK)
            found[part], scores[part] = _refined_chunk(
                patterns[part], rotations[part], (detector, master, energy_kv), searches, thorough
            )
            bar.advance(task, len(scores[part]))
    orientations = Orientation(found, symmetry=point_group_symmetry(point_group))
    return orientations.reduce(), scores


def _refined_chunk(
    patterns: np.ndarray, rotations: Rotation, setup: tuple, searches: list, thorough: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One chunk's best matches (quaternions (n, 4), NCC (n,)): the first search for every
    pattern, the others for the doubtful ones (all of them if ``thorough``)."""
    found, scores = _search(patterns, rotations, *setup, *searches[0])
    again = np.arange(len(patterns))
    if not thorough:
        trust_region_deg = searches[0][0]
        again = np.flatnonzero(in_doubt(Rotation(found), scores, rotations, trust_region_deg))
    for search in searches[1:]:
        if not again.size:
            break
        more, more_scores = _search(patterns[again], rotations[again], *setup, *search)
        better = more_scores > scores[again]
        found[again[better]] = more[better]
        scores[again[better]] = more_scores[better]
    return found, scores


def in_doubt(
    found: Rotation, scores: np.ndarray, start: Rotation, trust_region_deg: float
) -> np.ndarray:
    """Which first-search matches to search again (bool, n): an NCC below
    :data:`DOUBT_SCORE` times the median of ``scores``, or an Euler angle moved by
    :data:`DOUBT_EDGE` of the trust region or more from ``start``."""
    moved = np.abs(found.to_euler() - start.to_euler())
    moved = np.degrees(np.minimum(moved, 2 * np.pi - moved)).max(axis=1)
    return (scores < DOUBT_SCORE * np.median(scores)) | (moved >= DOUBT_EDGE * trust_region_deg)


def _search(
    patterns: np.ndarray,
    rotations: Rotation,
    detector: DetectorSpec,
    master: EBSDMasterPattern,
    energy: float,
    region_deg: float,
    method: str,
    kwargs: dict,
) -> tuple[np.ndarray, np.ndarray]:
    """One search of every pattern: the found quaternions (n, 4) and NCC scores (n,). A lone
    pattern is searched as two copies of itself (kikuchipy refines no map of one point)."""
    n = len(patterns)
    if n == 1:
        patterns, rotations = (
            np.repeat(patterns, 2, axis=0),
            Rotation(np.repeat(rotations.data, 2, 0)),
        )
    xmap = refined_map(patterns, rotations, detector, master, energy, region_deg, method, kwargs)
    found = xmap.rotations.data.reshape(-1, 4)[:n]
    return found.copy(), np.asarray(xmap.scores, dtype=float).reshape(-1)[:n].copy()


def refined_map(
    patterns: np.ndarray,
    rotations: Rotation,
    detector: DetectorSpec,
    master: EBSDMasterPattern,
    energy: float,
    trust_region_deg: float,
    method: str,
    method_kwargs: dict,
) -> CrystalMap:
    """kikuchipy's refinement of a line of patterns by its optimisation ``method`` (SciPy's
    ``minimize`` or a global one) with ``method_kwargs``, its report and progress bar
    silenced."""
    signal = kp.signals.EBSD(patterns.astype(np.float32, copy=False))
    signal.axes_manager.navigation_axes[0].name = "x"  # as the crystal map's points are
    xmap = CrystalMap(
        rotations=rotations,
        phase_id=np.zeros(rotations.size, dtype=int),
        phase_list=PhaseList(master.phase),
    )
    with silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # kikuchipy's notes on chunking
        return signal.refine_orientation(
            xmap,
            detector.detector(),
            master,
            energy=energy,
            trust_region=[trust_region_deg] * 3,
            method=method,
            method_kwargs=dict(method_kwargs),  # a copy: kikuchipy adds the bounds to it
        )


def refine_indexed(
    indexed: Indexed,
    scan: Scan,
    master: EBSDMasterPattern | str | Path | None = None,
    **options: Any,
) -> Indexed:
    """``indexed`` (orientations of ``scan`` by any indexer) refined against ``master``
    (see :func:`refine_orientations`, which takes ``options``; its errors name the scan):
    method ``"<method>_refined"``, the refined NCC scores, the time of indexing and
    refinement."""
    if indexed.orientations.size != len(scan):
        raise DataError(
            f"{scan.source}: {len(scan)} patterns but {indexed.orientations.size} orientations"
        )
    start = time.perf_counter()
    patterns = scan_input(scan)[0]  # as a dictionary sees them; the indexer's record stays
    try:
        orientations, scores = refine_orientations(
            patterns,
            Rotation(indexed.orientations.data),
            scan.detector,
            master,
            point_group=indexed.point_group,
            phase=scan.phase,
            **options,
        )
    except DataError as exc:
        raise DataError(f"{scan.source}: {exc}") from None
    seconds = indexed.seconds + time.perf_counter() - start
    return replace(
        indexed,
        orientations=orientations,
        method=f"{indexed.method}_refined",
        seconds=seconds,
        scores=scores,
        notes=list(indexed.notes),
    )
