"""Pixel-swap annealing on 2-point statistics (Yeong & Torquato, PRE 57, 495, 1998), and
the relabelling of boundary pixels that restores volume fractions after decoding.

Yeong–Torquato reconstruction starts from random pixels with the target's phase counts and
swaps two pixels of different phases at a time, accepting a swap that changes the energy
by ΔE with probability min(1, exp(−ΔE/T)) while T falls geometrically every sweep (one
sweep: as many proposals as pixels). The energy is

    E = Σ_phases Σ_axes Σ_{r=0}^{r_max} (S₂(r) − S₂*(r))²,

the directional 2-point functions along the two image axes (periodic) against the
target's. A swap changes only the rows and columns of its two pixels, so each proposal
recomputes four lines, not the image.
"""

from __future__ import annotations

import numpy as np

from deepmat.errors import DataError


def _line_counts(lines: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Σ_x m(x) m(x + r) along the last axis for r = 0 … r_max (periodic); ``shifts`` is
    the (r_max + 1, n) index table (x + r) mod n."""
    return (lines[..., None, :] & lines[..., shifts]).sum(-1)


class DirectionalS2:
    """The row and column pair counts of every phase of a label image, kept up to date
    as pixels change phase; :meth:`s2` gives the directional S₂ (phases, 2, r_max + 1)."""

    def __init__(self, labels: np.ndarray, phases: int, r_max: int):
        self.labels, self.phases = labels, phases
        height, width = labels.shape
        self.row_shifts = (np.arange(width)[None] + np.arange(r_max + 1)[:, None]) % width
        self.col_shifts = (np.arange(height)[None] + np.arange(r_max + 1)[:, None]) % height
        onehot = labels[None] == np.arange(phases)[:, None, None]
        self.rows = _line_counts(onehot, self.row_shifts)  # (k, H, r+1)
        self.cols = _line_counts(onehot.transpose(0, 2, 1), self.col_shifts)  # (k, W, r+1)
        self.size = labels.size

    def s2(self) -> np.ndarray:
        return np.stack([self.rows.sum(1), self.cols.sum(1)], axis=1) / self.size

    def lines(self, pixels: list[tuple[int, int]], phases: list[int]):
        """The new counts of the rows and columns through ``pixels`` for ``phases``."""
        rows = sorted({i for i, _ in pixels})
        cols = sorted({j for _, j in pixels})
        phase = np.asarray(phases)[:, None, None]
        new_rows = _line_counts(self.labels[rows][None] == phase, self.row_shifts)
        new_cols = _line_counts(self.labels[:, cols].T[None] == phase, self.col_shifts)
        return rows, cols, new_rows, new_cols


def anneal(
    target_s2: np.ndarray,
    fractions: np.ndarray,
    shape: tuple[int, int],
    sweeps: int,
    rng: np.random.Generator,
    start: np.ndarray | None = None,
    temperature: float | None = None,
    cooling: float = 0.9,
    on_sweep=None,
) -> tuple[np.ndarray, list[float]]:
    """A label image of ``shape`` whose directional S₂ (phases, 2, r_max + 1) approaches
    ``target_s2``; phase counts from ``fractions``. ``start`` and ``temperature`` resume an
    earlier run; ``on_sweep(labels, temperature, energy)`` is called after every sweep.
    Returns the labels and the energy after each sweep."""
    phases, _, r_span = target_s2.shape
    if min(shape) <= 2 * (r_span - 1):
        raise DataError(f"an image of {shape} is too small for r_max {r_span - 1}")
    if start is None:
        counts = np.floor(fractions * np.prod(shape)).astype(int)
        counts[np.argmax(fractions)] += int(np.prod(shape)) - counts.sum()
        start = rng.permutation(np.repeat(np.arange(phases), counts)).reshape(shape)
    labels = np.array(start, dtype=np.int64)
    state = DirectionalS2(labels, phases, r_span - 1)
    energy = float(((state.s2() - target_s2) ** 2).sum())
    temperature = temperature if temperature is not None else max(energy, 1e-12) * 1e-3
    history = []
    for _ in range(sweeps):
        for _ in range(labels.size):
            p = tuple(rng.integers(0, shape))
            q = tuple(rng.integers(0, shape))
            a, b = labels[p], labels[q]
            if a == b:
                continue
            labels[p], labels[q] = b, a
            rows, cols, new_rows, new_cols = state.lines([p, q], [a, b])
            trial_rows, trial_cols = state.rows.copy(), state.cols.copy()
            for n, phase in enumerate((a, b)):
                trial_rows[phase, rows] = new_rows[n]
                trial_cols[phase, cols] = new_cols[n]
            s2 = np.stack([trial_rows.sum(1), trial_cols.sum(1)], axis=1) / state.size
            trial = float(((s2 - target_s2) ** 2).sum())
            if trial <= energy or rng.random() < np.exp((energy - trial) / temperature):
                state.rows, state.cols, energy = trial_rows, trial_cols, trial
            else:
                labels[p], labels[q] = a, b
        temperature *= cooling
        history.append(energy)
        if on_sweep is not None:
            on_sweep(labels, temperature, energy)
    return labels, history


def restore_volume_fractions(
    labels: np.ndarray, fractions: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``labels`` with boundary pixels relabelled until each phase has its share of
    ``fractions``: in rounds, pixels of the most over-represented phase that touch the most
    under-represented one change to it, those with the most such neighbours first (random
    ties), so that interfaces move rather than new specks appearing."""
    labels = np.array(labels, dtype=np.int64)
    target = np.floor(np.asarray(fractions) * labels.size).astype(int)
    target[np.argmax(target)] += labels.size - target.sum()
    for _ in range(labels.size):
        excess = np.bincount(labels.ravel(), minlength=len(target)) - target
        if not excess.any():
            break
        a, b = int(np.argmax(excess)), int(np.argmin(excess))
        touching = sum(
            np.roll(labels == b, s, axis=ax) for ax in range(labels.ndim) for s in (1, -1)
        )
        score = np.where(labels == a, touching + 0.5 * rng.random(labels.shape), -1.0)
        candidates = np.flatnonzero(score.ravel() > 0)
        need = min(excess[a], -excess[b])
        take = max(1, min(need, len(candidates) // 4))
        order = candidates[np.argsort(-score.ravel()[candidates])][:take]
        labels.ravel()[order] = b
    return labels
