"""What the shipped pretrained models say about inputs they have not seen, each next to a
reference value: the demo's first part (:func:`deepmat.workflows.demo.run_pretrained_demo`).

- ``elemnet-oqmd``: the formation enthalpy of well-known compounds from their formulas, next
  to calorimetric values (CRC Handbook, 298 K; DFT formation energies of oxides differ from
  them by ~0.1-0.2 eV/atom, so this is the gap a user sees in practice, not a test metric).
- ``cgcnn-linear-perovskites``: cubic perovskites written as CIFs by pymatgen and read back,
  with the interpretable CGCNN's split of each prediction into A, B and X sites.
- ``ebsd-cnn-ni``: the 9 real patterns of kikuchipy's nickel scan, indexed by the CNN; the
  disorientation from the orientation the scan's crystal map stores.
- ``homogenization-c50``: new random microstructures; the model's C11 (the shipped one is
  the solver hybrid) next to the converged FFT elasticity solver's.
- ``localization-c10`` / ``-c50``: a new microstructure's ε11 field from the network next to
  the solver's, as the mean absolute strain error.

Each showcase takes the model, a console and a folder for its files, prints a table and
returns its rows: {"input", "prediction", "reference"} (None where there is none to show:
the perovskites' rows hold their site means instead) and the error where it is not their
difference (the disorientation, the MASE of a field).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

# Standard enthalpies of formation at 298 K (CRC Handbook of Chemistry and Physics), in
# kJ/mol of formula units, converted to eV/atom below.
CALORIMETRY_KJ_PER_MOL = {
    "Al2O3": -1675.7,
    "MgO": -601.6,
    "SiO2": -910.7,
    "TiO2": -944.0,
    "ZnO": -350.5,
    "Fe2O3": -824.2,
    "Cu2O": -168.6,
    "NaCl": -411.2,
    "LiF": -616.0,
    "CaO": -634.9,
}
KJ_PER_MOL_PER_EV = 96.485
# Cubic ABO3 perovskites (Pm-3m): the A and B elements and the lattice constant in Å.
PEROVSKITES = {
    "SrTiO3": ("Sr", "Ti", 3.905),
    "BaZrO3": ("Ba", "Zr", 4.193),
    "KTaO3": ("K", "Ta", 3.989),
    "SrZrO3": ("Sr", "Zr", 4.10),
}


def _formation_enthalpies(model, console: Console, folder: Path) -> list[dict]:
    """ElemNet's ΔHf of the compounds of :data:`CALORIMETRY_KJ_PER_MOL` beside the values
    measured by calorimetry (``folder`` unused: formulas need no files)."""
    from pymatgen.core import Composition

    formulas = list(CALORIMETRY_KJ_PER_MOL)
    predicted = model.predict(formulas)
    table = Table(title="formation enthalpy (eV/atom): elemnet-oqmd vs calorimetry (298 K)")
    for column in ("formula", "predicted", "calorimetry", "difference"):
        table.add_column(column)
    rows = []
    for formula, value in zip(formulas, predicted, strict=True):
        atoms = Composition(formula).num_atoms
        measured = CALORIMETRY_KJ_PER_MOL[formula] / atoms / KJ_PER_MOL_PER_EV
        rows.append({"input": formula, "prediction": float(value), "reference": measured})
        table.add_row(formula, f"{value:.3f}", f"{measured:.3f}", f"{value - measured:+.3f}")
    console.print(table)
    return rows


def _perovskite_sites(model, console: Console, folder: Path) -> list[dict]:
    """Cubic perovskites written as CIF files, read back and predicted, with the means of
    each prediction's site contributions over the A, B and X sites."""
    from pymatgen.core import Lattice, Structure

    from deepmat.data.readers import read_structure_inputs

    folder.mkdir(parents=True, exist_ok=True)
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]
    for formula, (a_site, b_site, edge) in PEROVSKITES.items():
        cell = Structure.from_spacegroup(
            "Pm-3m", Lattice.cubic(edge), [a_site, b_site, "O"], coords
        )
        cell.to(filename=str(folder / f"{formula}.cif"))
    table = read_structure_inputs([folder])
    predicted = model.predict(table)
    sites = model.site_contributions(table)
    means = sites.groupby(["id", "role"])["contribution"].mean().unstack()
    title = f"cubic perovskites from CIFs ({folder}): {model.target} ({model.unit})"
    summary = Table(title=title + ", and the mean contribution of A, B and X sites")
    for column in ("structure", "predicted", "A sites", "B sites", "X sites"):
        summary.add_column(column)
    rows = []
    for record, value in zip(table.ids, predicted, strict=True):
        roles = {role: float(means.loc[record, role]) for role in ("A", "B", "X")}
        summary.add_row(record, f"{value:.3f}", *(f"{v:.3f}" for v in roles.values()))
        rows.append({"input": record, "prediction": float(value), "reference": None} | roles)
    console.print(summary)
    return rows


def _ebsd_indexing(model, console: Console, folder: Path) -> list[dict]:
    """The 9 real patterns of kikuchipy's nickel scan, as stored (the model removes their
    static and dynamic background itself), indexed by the CNN, by the CNN after neighbour
    averaging (NLPAR) and then refined against the master pattern; the reference is the
    orientation the scan's crystal map stores."""
    from deepmat.workflows.ebsd import (
        average_scan,
        index_with_model,
        nickel_scan,
        orientation_table,
    )
    from deepmat.workflows.ebsd_refinement import refine_indexed

    scan = nickel_scan()
    indexed = index_with_model(model, scan)
    found = orientation_table(indexed, scan)
    averaged = average_scan(scan)
    nlpar = orientation_table(index_with_model(model, averaged), averaged)["disorientation_deg"]
    refined = orientation_table(refine_indexed(indexed, scan), scan)["disorientation_deg"]
    euler_found = found[["phi1", "Phi", "phi2"]].to_numpy()
    euler_true = np.degrees(scan.reference.to_euler())
    title = "real nickel EBSD patterns (kikuchipy's 3×3 scan): CNN orientation"
    table = Table(title=title + " vs the one the scan stores (Euler angles, degrees)")
    columns = ("pattern", "scan stores", "CNN", "disorientation (°)", "NLPAR (°)", "refined (°)")
    for column in columns:
        table.add_column(column)
    rows = []
    angles = zip(found["disorientation_deg"], nlpar, refined, strict=True)
    for i, (angle, averaged_angle, refined_angle) in enumerate(angles):
        table.add_row(
            str(i),
            " ".join(f"{v:6.1f}" for v in euler_true[i]),
            " ".join(f"{v:6.1f}" for v in euler_found[i]),
            *(f"{a:.2f}" for a in (angle, averaged_angle, refined_angle)),
        )
        rows.append(
            {
                "input": i,
                "prediction": euler_found[i].tolist(),
                "reference": euler_true[i].tolist(),
                "disorientation_deg": float(angle),
                "averaged_disorientation_deg": float(averaged_angle),
                "refined_disorientation_deg": float(refined_angle),
            }
        )
    console.print(table)
    return rows


def _random_microstructures(grid: tuple[int, ...], n: int) -> tuple[list[float], list]:
    """``n`` Gaussian-random-field microstructures on ``grid`` at spread volume fractions."""
    from deepmat.data.microstructures import MicrostructureSpec

    fractions = np.linspace(0.25, 0.75, n).tolist()
    size = 3.0 * grid[0] / 51
    structures = [
        MicrostructureSpec("grf", grid, fraction, max(size, 1.0)).sample(2026 + i)
        for i, fraction in enumerate(fractions)
    ]
    return fractions, structures


def _stiffness(model, console: Console, folder: Path) -> list[dict]:
    """Three new microstructures: the model's C11 beside the FFT solver's (one solve each)."""
    from deepmat.physics.elasticity import solve

    fractions, structures = _random_microstructures(model.grid, 3)
    predicted = model.predict(np.stack(structures))
    title = f"{model.target} of new {'×'.join(map(str, model.grid))} microstructures"
    title += ", in units of the matrix's Young's modulus"
    table = Table(title=title + f": {model.name} vs the FFT elasticity solver")
    for column in ("volume fraction", "predicted", "solver", "difference %"):
        table.add_column(column)
    rows = []
    for fraction, structure, value in zip(fractions, structures, predicted, strict=True):
        strain = 1e-3
        exact = float(solve(structure, model.phases, [strain, 0, 0, 0, 0, 0]).mean_stress[0])
        exact /= strain
        table.add_row(
            f"{fraction:.2f}",
            f"{value:.3f}",
            f"{exact:.3f}",
            f"{100 * (value - exact) / exact:+.2f}",
        )
        rows.append({"input": fraction, "prediction": float(value), "reference": exact})
    console.print(table)
    return rows


def _strain_field(model, console: Console, folder: Path) -> list[dict]:
    """A new microstructure's ε11 field under ε̄11 = 1e-3: the network's against the FFT
    solver's, as the mean absolute strain error (% of the applied strain)."""
    from deepmat.physics.elasticity import solve
    from deepmat.train.metrics import mean_absolute_strain_error

    macro = 1e-3
    fractions, structures = _random_microstructures(model.grid, 2)
    predicted = model.predict(np.stack(structures), macro_strain=macro)
    contrast = model.phases[1].youngs_modulus / model.phases[0].youngs_modulus
    table = Table(title=f"ε11 fields at contrast {contrast:g}: network vs the FFT solver")
    for column in ("volume fraction", "MASE %", "max |ε11| network", "max |ε11| solver"):
        table.add_column(column)
    rows = []
    for fraction, structure, field in zip(fractions, structures, predicted, strict=True):
        exact = solve(structure, model.phases, [macro, 0, 0, 0, 0, 0]).strain[0]
        error = mean_absolute_strain_error(exact, field, macro)
        table.add_row(
            f"{fraction:.2f}",
            f"{error:.2f}",
            f"{np.abs(field).max():.2e}",
            f"{np.abs(exact).max():.2e}",
        )
        rows.append(
            {
                "input": fraction,
                "prediction": float(np.abs(field).max()),
                "reference": float(np.abs(exact).max()),
                "mase": error,
            }
        )
    console.print(table)
    return rows


SHOWCASES = {
    "elemnet-oqmd": _formation_enthalpies,
    "cgcnn-linear-perovskites": _perovskite_sites,
    "ebsd-cnn-ni": _ebsd_indexing,
    "homogenization-c50": _stiffness,
    "localization-c10": _strain_field,
    "localization-c50": _strain_field,
}
