"""Crystal structure prediction by template substitution, ranked by site element likelihoods
(Ryan, Lengyel & Shatruk, JACS 140, 10158, 2018).

For a composition, every template (:mod:`deepmat.workflows.templates`) of its anonymous
formula and every symmetry-distinct assignment of its elements to the template's groups is a
candidate. A candidate is scored by one or more site models
(:class:`~deepmat.train.site_elements.SiteElementClassifier`) as the log-likelihood of its
elements on the template's sites, :math:`\\ell_m = \\sum_s \\ln p_m(e_s \\mid s)` (``"sum"``,
the paper's product of likelihoods) or per site (``"mean"``), as
:math:`\\sum_m w_m \\ell_m` (a product of the models' likelihoods, each to a power), plus
``prior`` times the log of the number of known crystals of the template (0: the likelihoods
alone). Two baselines rank the
same candidates: ``substitution`` (:mod:`deepmat.workflows.substitution`) and ``frequency``
(the most common template of the anonymous formula first, elements assigned in the
representative's order of electronegativity). ``deepmat_energy_rerank`` re-orders the first
``rerank_top`` candidates of deepmat by a formation-energy model's prediction.

Assignments related by a symmetry of the template (a permutation of groups of equal amount
that maps its representative onto itself under ``StructureMatcher``) give one candidate.
A candidate matches a crystal when ``StructureMatcher`` (default tolerances, volume scaled)
fits the template with the candidate's elements to it; only templates of the crystal's
structure-type bucket (:func:`~deepmat.workflows.templates.type_key`) are tried.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Element, Structure

from deepmat.data.structures import StructureTable
from deepmat.errors import DataError
from deepmat.represent.crystal_graph import CrystalGraphs, build_graphs
from deepmat.train.site_elements import SiteElementClassifier
from deepmat.workflows.substitution import substitution_scores
from deepmat.workflows.templates import Template, canonical_elements, type_key

METHODS = ("deepmat", "deepmat_energy_rerank", "substitution", "frequency")
TOP_K = (1, 5, 10)


@dataclass(frozen=True)
class Ranking:
    """How deepmat scores a candidate: the site log-likelihood of each of the scorer's site
    models, summed or averaged over sites, weighted by ``weights`` (one per model), plus
    ``prior`` × ln(known crystals of the template), plus ``substitution`` × the candidate's
    substitution log-probability (pymatgen's, the ``substitution`` baseline's score)."""

    normalise: str = "sum"
    prior: float = 0.0
    weights: tuple[float, ...] = (1.0,)
    substitution: float = 0.0

    def __post_init__(self) -> None:
        if self.normalise not in ("sum", "mean"):
            raise DataError(f"normalise must be 'sum' or 'mean', not {self.normalise!r}")

    def score(self, candidates: pd.DataFrame) -> np.ndarray:
        """The scores of ``candidates``; weights of site models the scorer did not have
        (beyond its columns) are left out."""
        total = self.prior * np.log(candidates["template_count"].to_numpy())
        if self.substitution:
            total = total + self.substitution * candidates["substitution"].to_numpy()
        for m, weight in enumerate(self.weights):
            if weight and _column(self.normalise, m) in candidates:
                total = total + weight * candidates[_column(self.normalise, m)].to_numpy()
        return total

    def to_dict(self) -> dict:
        return {
            "normalise": self.normalise,
            "prior": self.prior,
            "weights": list(self.weights),
            "substitution": self.substitution,
        }


#: the ranking chosen on validation compounds by ``benchmarks/structure_prediction.py`` for
#: its (geometry-only, neighbours-visible) site models: mean log-likelihoods, 1 : 0.5, the
#: template-frequency prior at 1 and the substitution log-probability at 2
DEFAULT_RANKING = Ranking("mean", 1.0, (1.0, 0.5), 2.0)


def _column(normalise: str, model: int) -> str:
    """The candidates' column of site model ``model``'s log-likelihood (the first model's
    columns are ``log_likelihood_sum`` and ``log_likelihood_mean``)."""
    return f"log_likelihood_{normalise}" + (f"_{model}" if model else "")


class _SiteScorer:
    """One site model's ln p of template sites: computed once per template when the model
    hides neighbours' elements, per assignment otherwise (the template's graph once)."""

    def __init__(self, model: SiteElementClassifier):
        self.model = model
        self.classes = np.full(256, -1, dtype=np.int64)
        self.classes[list(model.classes)] = np.arange(len(model.classes))
        self._log_probs: dict[int, np.ndarray] = {}
        self._graphs: dict[int, CrystalGraphs] = {}

    def site_log_likelihoods(self, index: int, template: Template, assigned: np.ndarray):
        """(sites,) ln p(assigned element | site); uniform for elements the model never saw."""
        elements = assigned[template.groups]
        masked = self.model.settings.mask_neighbors
        if masked and index in self._log_probs:
            return self._pick(self._log_probs[index], elements)
        if index not in self._graphs:
            self._graphs[index] = build_graphs([template.structure], self.model.settings.graph)
        log_probs = self.model.site_log_probs(self._graphs[index], None if masked else elements)
        if masked:
            self._log_probs[index] = log_probs
        return self._pick(log_probs, elements)

    def _pick(self, log_probs: np.ndarray, elements: np.ndarray) -> np.ndarray:
        classes = self.classes[elements]
        uniform = -np.log(len(self.model.classes))
        chosen = log_probs[np.arange(len(classes)), np.maximum(classes, 0)]
        return np.where(classes >= 0, chosen, uniform)


def parse_composition(text: str) -> Composition:
    """A composition from a formula, with a clear error for one pymatgen cannot read."""
    try:
        composition = Composition(text)
    except (ValueError, KeyError) as exc:
        raise DataError(f"{text!r} is not a chemical formula ({exc})") from None
    if len(composition.elements) < 2:
        raise DataError(f"{text}: structure prediction needs at least two elements")
    return composition


class TemplateScorer:
    """Candidates of a composition from ``templates``, scored by ``model`` (and any
    ``companions``, further site models whose likelihoods a :class:`Ranking` may weigh in)
    and the baselines; site likelihoods and template symmetries are computed once per
    template."""

    def __init__(
        self,
        model: SiteElementClassifier,
        templates: Sequence[Template],
        allow_unseen: bool = False,
        companions: Sequence[SiteElementClassifier] = (),
    ):
        self.model, self.templates, self.allow_unseen = model, list(templates), allow_unseen
        self.by_formula: dict[str, list[int]] = defaultdict(list)
        for index, template in enumerate(self.templates):
            self.by_formula[template.formula].append(index)
        self.max_species = max((len(t.amounts) for t in self.templates), default=0)
        self._scorers = [_SiteScorer(m) for m in (model, *companions)]
        self._symmetries: dict[int, list[tuple[int, ...]]] = {}
        self.matcher = StructureMatcher()

    def _symmetric(self, index: int) -> list[tuple[int, ...]]:
        """The group permutations (equal amounts only) that map the template onto itself."""
        if index not in self._symmetries:
            template = self.templates[index]
            found = []
            for perm in _block_permutations(template.amounts):
                if perm == tuple(range(len(perm))):
                    continue
                own = template.members[0]
                relabelled = template.substituted(own[list(perm)], rescale=False)
                if self.matcher.fit(template.structure, relabelled):
                    found.append(perm)
            self._symmetries[index] = found
        return self._symmetries[index]

    def check_elements(self, composition: Composition) -> None:
        """Errors for a composition no template can take or with an element the model never
        saw (unless ``allow_unseen``, which gives it a uniform likelihood)."""
        n = len(composition.elements)
        if n > self.max_species:
            raise DataError(
                f"{composition.reduced_formula}: {n} distinct elements, but no template has "
                f"more than {self.max_species} species"
            )
        unseen = [
            e.symbol
            for e in composition.elements
            if any(scorer.classes[e.Z] < 0 for scorer in self._scorers)
        ]
        if unseen and not self.allow_unseen:
            raise DataError(
                f"{composition.reduced_formula}: {', '.join(unseen)} never occurs in the site "
                "model's training data; pass --allow-unseen to give it a uniform likelihood"
            )

    def candidates(self, composition: Composition) -> pd.DataFrame:
        """One row per candidate of ``composition``: template index, key and count, the
        elements per group, deepmat's log-likelihoods and the baselines' scores."""
        self.check_elements(composition)
        elements = np.array([e.Z for e in canonical_elements(composition)])
        formula = composition.anonymized_formula
        rows = []
        for index in self.by_formula.get(formula, []):
            template = self.templates[index]
            symmetries = self._symmetric(index)
            seen = set()
            for perm in _block_permutations(template.amounts):
                assigned = elements[list(perm)]
                canonical = min([tuple(assigned)] + [tuple(assigned[list(s)]) for s in symmetries])
                if canonical in seen:
                    continue
                seen.add(canonical)
                likelihoods = {}
                for m, scorer in enumerate(self._scorers):
                    site_ll = scorer.site_log_likelihoods(index, template, assigned)
                    likelihoods[_column("sum", m)] = float(site_ll.sum())
                    likelihoods[_column("mean", m)] = float(site_ll.mean())
                rows.append(
                    {
                        "template": index,
                        "template_key": template.key,
                        "template_id": template.ids[0],
                        "template_formula": template.structure.composition.reduced_formula,
                        "template_count": template.count,
                        "elements": tuple(int(z) for z in assigned),
                        **likelihoods,
                        "substitution": float(
                            substitution_scores(template.members, assigned[None, :])[0]
                        ),
                        "electronegativity_order": _concordance(assigned, template.members[0]),
                    }
                )
        return pd.DataFrame(rows)

    def structure(self, row: pd.Series, rescale: bool = True) -> Structure:
        """The candidate structure of a row of :meth:`candidates`."""
        return self.templates[int(row["template"])].substituted(row["elements"], rescale)

    def label(self, candidates: pd.DataFrame, truth: Structure) -> np.ndarray:
        """(candidates,) whether each candidate matches the crystal ``truth``."""
        if candidates.empty:
            return np.zeros(0, dtype=bool)
        key = type_key(truth)
        same_type = candidates["template_key"].to_numpy() == key
        correct = np.zeros(len(candidates), dtype=bool)
        for i in np.flatnonzero(same_type):
            correct[i] = self.matcher.fit(self.structure(candidates.iloc[i], False), truth)
        return correct


def _block_permutations(amounts: np.ndarray) -> list[tuple[int, ...]]:
    """Every permutation of group indices that only exchanges groups of equal amount."""
    blocks = [np.flatnonzero(amounts == a).tolist() for a in sorted(set(amounts.tolist()))]
    perms = []
    for choice in itertools.product(*(itertools.permutations(b) for b in blocks)):
        perm = [0] * len(amounts)
        for block, chosen in zip(blocks, choice, strict=True):
            for position, group in zip(block, chosen, strict=True):
                perm[position] = group
        perms.append(tuple(perm))
    return perms


def _concordance(new: np.ndarray, known: np.ndarray) -> int:
    """Pairs of groups whose order of electronegativity is the same for both assignments."""
    x_new = np.array([Element.from_Z(int(z)).X for z in new])
    x_old = np.array([Element.from_Z(int(z)).X for z in known])
    i, j = np.triu_indices(len(new), 1)
    return int((np.sign(x_new[i] - x_new[j]) == np.sign(x_old[i] - x_old[j])).sum())


def order(candidates: pd.DataFrame, method: str, ranking: Ranking) -> np.ndarray:
    """Positions of ``candidates`` from best to worst under ``method`` (ties: the more common
    template first, then the template's position)."""
    count, template = candidates["template_count"].to_numpy(), candidates["template"].to_numpy()
    if method in ("deepmat", "deepmat_energy_rerank"):
        primary = -ranking.score(candidates)
        return np.lexsort((template, -count, primary))
    if method == "substitution":
        return np.lexsort((template, -count, -candidates["substitution"].to_numpy()))
    if method == "frequency":
        agree = candidates["electronegativity_order"].to_numpy()
        return np.lexsort((template, -agree, -count))
    raise DataError(f"unknown ranking method {method!r}; choose from {METHODS}")


def rerank_by_energy(
    scorer: TemplateScorer, candidates: pd.DataFrame, ranked: np.ndarray, energy_model, top: int
) -> tuple[np.ndarray, np.ndarray]:
    """``ranked`` with its first ``top`` re-ordered by ``energy_model``'s predicted formation
    energy (lowest first), and those energies."""
    head = ranked[:top]
    if len(head) == 0:
        return ranked, np.zeros(0)
    structures = [scorer.structure(candidates.iloc[i]) for i in head]
    energies = np.asarray(energy_model.predict(structures), dtype=np.float64)
    return np.concatenate([head[np.argsort(energies, kind="stable")], ranked[top:]]), energies


def first_correct(correct: np.ndarray, ranked: np.ndarray) -> int:
    """The 1-based rank of the first matching candidate, 0 when none matches."""
    hits = np.flatnonzero(correct[ranked])
    return int(hits[0]) + 1 if len(hits) else 0


def topk_summary(ranks: pd.DataFrame) -> dict:
    """``{subset: {top1, top5, top10, n, ceiling}}`` of rows with a ``rank`` (0: missed),
    a ``ceiling`` flag and a ``subset`` ("binary"/"ternary"), plus "all"."""
    out = {}
    for subset in ("binary", "ternary", "all"):
        rows = ranks if subset == "all" else ranks[ranks["subset"] == subset]
        rank = rows["rank"].to_numpy()
        out[subset] = {
            f"top{k}": float(((rank > 0) & (rank <= k)).mean()) if len(rank) else 0.0 for k in TOP_K
        } | {
            "n": len(rows),
            "ceiling": float(rows["ceiling"].mean()) if len(rows) else 0.0,
        }
    return out


def predict_structure(
    scorer: TemplateScorer,
    composition: str | Composition,
    out: str | Path | None = None,
    top_k: int = 10,
    ranking: Ranking | None = None,
    energy_model=None,
    rerank_top: int = 20,
) -> pd.DataFrame:
    """The ``top_k`` candidate structures of ``composition``, best first under ``ranking``
    (:data:`DEFAULT_RANKING` unless given), with their scores, the substitution that makes
    each (template element > new element), and predicted formation energies when
    ``energy_model`` re-ranks the first ``rerank_top``. With ``out``, each is written as
    ``rank<NN>_<formula>_<template>.cif`` and the table as ``candidates.csv``."""
    composition = parse_composition(composition) if isinstance(composition, str) else composition
    candidates = scorer.candidates(composition)
    if candidates.empty:
        raise DataError(
            f"{composition.reduced_formula}: no template has the anonymous formula "
            f"{composition.anonymized_formula}"
        )
    ranking = ranking or DEFAULT_RANKING
    ranked = order(candidates, "deepmat", ranking)
    candidates["score"] = ranking.score(candidates)
    if energy_model is not None:
        ranked, energies = rerank_by_energy(scorer, candidates, ranked, energy_model, rerank_top)
        head = order(candidates, "deepmat", ranking)[:rerank_top]
        candidates.loc[candidates.index[head], "formation_energy"] = energies
    best = candidates.iloc[ranked[:top_k]].copy()
    best.insert(0, "rank", np.arange(1, len(best) + 1))
    best["formula"] = composition.reduced_formula
    best["replaces"] = [
        " ".join(
            f"{Element.from_Z(int(old)).symbol}>{Element.from_Z(int(z)).symbol}"
            for old, z in zip(scorer.templates[t].members[0], e, strict=True)
        )
        for t, e in zip(best["template"], best["elements"], strict=True)
    ]
    best = best.drop(columns=["elements"])
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = []
        for position, (_, row) in zip(ranked[:top_k], best.iterrows(), strict=True):
            name = f"rank{row['rank']:02d}_{composition.reduced_formula}_{row['template_id']}.cif"
            scorer.structure(candidates.iloc[position]).to(filename=str(out / name))
            files.append(name)
        best["cif"] = files
        best.to_csv(out / "candidates.csv", index=False)
    return best.reset_index(drop=True)


def held_out_compounds(
    table: StructureTable,
    n_per_subset: int,
    seed: int = 0,
    max_sites: int | None = None,
) -> StructureTable:
    """Binary and ternary crystals of ``table`` to predict: per reduced formula the one of
    lowest target (the ground state among its polymorphs), at most ``max_sites`` sites, then
    ``n_per_subset`` binaries and as many ternaries drawn at random (``seed``)."""
    best: dict[str, int] = {}
    targets = table.targets if table.targets is not None else np.zeros(len(table))
    for i, structure in enumerate(table.structures):
        if len(structure.composition.elements) not in (2, 3):
            continue
        if max_sites is not None and len(structure) > max_sites:
            continue
        formula = structure.composition.reduced_formula
        if formula not in best or targets[i] < targets[best[formula]]:
            best[formula] = i
    rng = np.random.default_rng(seed)
    chosen = []
    for n_species in (2, 3):
        pool = sorted(
            i for i in best.values() if len(table.structures[i].composition.elements) == n_species
        )
        chosen += rng.choice(pool, min(n_per_subset, len(pool)), replace=False).tolist()
    return table.subset(sorted(chosen))


def label_compounds(
    scorer: TemplateScorer, table: StructureTable, progress: bool = False
) -> list[pd.DataFrame]:
    """Per crystal of ``table``: its candidates with a ``correct`` column (matches it)."""
    from rich.progress import track

    labelled = []
    items = zip(table.ids, table.structures, strict=True)
    for _, structure in track(items, "candidates", len(table)) if progress else items:
        candidates = scorer.candidates(structure.composition)
        candidates["correct"] = scorer.label(candidates, structure)
        labelled.append(candidates)
    return labelled


def rank_compounds(
    labelled: Sequence[pd.DataFrame],
    table: StructureTable,
    method: str,
    ranking: Ranking,
    scorer: TemplateScorer | None = None,
    energy_model=None,
    rerank_top: int = 20,
) -> pd.DataFrame:
    """One row per crystal: id, formula, subset, candidates, ceiling (some candidate matches)
    and the rank of the first match under ``method`` (0: none)."""
    rows = []
    for record, structure, candidates in zip(table.ids, table.structures, labelled, strict=True):
        correct = candidates["correct"].to_numpy() if len(candidates) else np.zeros(0, bool)
        ranked = order(candidates, method, ranking) if len(candidates) else np.zeros(0, int)
        if method == "deepmat_energy_rerank" and len(candidates):
            ranked, _ = rerank_by_energy(scorer, candidates, ranked, energy_model, rerank_top)
        n_species = len(structure.composition.elements)
        rows.append(
            {
                "id": record,
                "formula": structure.composition.reduced_formula,
                "subset": "binary" if n_species == 2 else "ternary",
                "candidates": len(candidates),
                "ceiling": bool(correct.any()),
                "rank": first_correct(correct, ranked),
            }
        )
    return pd.DataFrame(rows)


def choose_ranking(
    labelled: Sequence[pd.DataFrame], table: StructureTable, grid: Sequence[Ranking]
) -> tuple[Ranking, list[dict]]:
    """The ranking of ``grid`` with the best top-1 (then top-10) on ``labelled`` crystals,
    which must be validation crystals, never the test ones; and every one's scores."""
    scored = []
    for ranking in grid:
        summary = topk_summary(rank_compounds(labelled, table, "deepmat", ranking))["all"]
        scored.append(ranking.to_dict() | summary)
    best = max(range(len(grid)), key=lambda i: (scored[i]["top1"], scored[i]["top10"], -i))
    return grid[best], scored
