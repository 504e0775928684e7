"""Labelled voxel data sets: the HDF5 format, its checks, generate_dataset and the CLI."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.data.microstructures import MicrostructureSpec, generate
from deepmat.data.voxels import VoxelDatasetWriter, read_voxel_dataset, write_voxel_dataset
from deepmat.errors import ConfigError, DataError
from deepmat.physics import IsotropicPhase, reuss_stiffness, voigt_stiffness
from deepmat.workflows.generate import generate_dataset

runner = CliRunner()
GRID = (5, 4, 3)


def batch(k: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    stiffness = rng.normal(size=(k, 6, 6))
    stiffness[:, :, 1:] = np.nan
    return {
        "microstructures": rng.integers(0, 2, size=(k, *GRID), dtype=np.uint8),
        "stiffness": stiffness,
        "iterations": rng.integers(1, 50, size=(k, 1)),
        "solve_seconds": rng.uniform(size=k),
    }


def test_round_trip_keeps_arrays_attrs_and_layout(tmp_path):
    data = batch(3)
    attrs = {
        "phases": [{"youngs_modulus": 1.0, "poisson_ratio": 0.3}],
        "solver": {"tol": 1e-6, "max_iter": 100},
        "contrast": 50.0,
        "seed": 7,
        "label": "stiffness",
        "stiffness_columns": [0],
        "direction": None,
    }
    path = write_voxel_dataset(tmp_path / "set.h5", **data, attrs=attrs)
    read = read_voxel_dataset(path)
    assert len(read) == 3 and read.grid == GRID and read.strain is None
    np.testing.assert_array_equal(read.microstructures, data["microstructures"])
    np.testing.assert_array_equal(read.stiffness, data["stiffness"])
    np.testing.assert_array_equal(read.iterations, data["iterations"])
    assert read.attrs.items() >= attrs.items()
    assert read.attrs["format"] == "deepmat-voxels"
    assert read.attrs["deepmat_version"] == deepmat.__version__
    with h5py.File(path) as file:
        assert file["microstructures"].chunks == (1, *GRID)
        assert file["microstructures"].compression == "gzip"
        assert file["stiffness"].dtype == np.float64


def test_writer_appends_chunk_by_chunk_and_continues_a_file(tmp_path):
    path = tmp_path / "set.h5"
    parts = [batch(2, seed) for seed in range(3)]
    strain = np.random.default_rng(0).normal(size=(6, 6, *GRID))
    with VoxelDatasetWriter(path, {"label": "strain"}) as writer:
        for i, part in enumerate(parts[:2]):
            total = writer.append(part["microstructures"], strain=strain[2 * i : 2 * i + 2])
        assert total == 4
        writer.set_attrs(complete=False)
    with VoxelDatasetWriter(path, mode="a") as writer:
        assert writer.n == 4
        writer.append(parts[2]["microstructures"], strain=strain[4:])
        writer.set_attrs(complete=True)
    read = read_voxel_dataset(path)
    expected = np.concatenate([p["microstructures"] for p in parts])
    np.testing.assert_array_equal(read.microstructures, expected)
    np.testing.assert_allclose(read.strain, strain.astype(np.float32))
    assert read.strain.dtype == np.float32
    assert read.attrs["complete"] is True
    assert read_voxel_dataset(path, with_strain=False).strain is None


def test_writer_rejects_inconsistent_batches(tmp_path):
    data = batch(2)
    with VoxelDatasetWriter(tmp_path / "set.h5") as writer:
        writer.append(data["microstructures"], stiffness=data["stiffness"])
        with pytest.raises(DataError, match="every append must give the same datasets"):
            writer.append(data["microstructures"])
        with pytest.raises(DataError, match=r"stiffness of shape \(2, 6\)"):
            writer.append(data["microstructures"], stiffness=np.zeros((2, 6)))
        with pytest.raises(DataError, match="microstructure 1 holds 3"):
            writer.append(np.stack([data["microstructures"][0], data["microstructures"][0] * 3]))
        with pytest.raises(DataError, match=r"shape \(5, 4, 3\) in the file"):
            writer.append(np.zeros((1, 5, 4, 4), np.uint8), stiffness=np.zeros((1, 6, 6)))
    with pytest.raises(DataError, match="batch of shape"):
        write_voxel_dataset(tmp_path / "flat.h5", np.zeros((4, 4), np.uint8))


def write_raw(path, **arrays):
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            file[key] = value
    return path


def test_bad_files_are_named(tmp_path):
    ok = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(DataError, match=r"missing\.h5: no such file"):
        read_voxel_dataset(tmp_path / "missing.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(DataError, match=r"text\.h5: not an HDF5 file"):
        read_voxel_dataset(text)
    cases = {
        "other.h5": ({"images": ok}, r"no 'microstructures' dataset \(found images\)"),
        "flat.h5": ({"microstructures": np.zeros((2, 3))}, r"must have shape \(n, n1, n2\)"),
        "labels.h5": (
            {"microstructures": np.stack([ok[0], ok[1] + 2])},
            "microstructure 1 holds 2: phase indices must be 0 or 1",
        ),
        "nanmap.h5": (
            {"microstructures": np.where(ok == 0, np.nan, 1.0)},
            "microstructure 0 holds nan",
        ),
        "count.h5": (
            {"microstructures": ok, "stiffness": np.ones((3, 6, 6))},
            "'stiffness' has 3 samples but 'microstructures' has 2",
        ),
        "shape.h5": (
            {"microstructures": ok, "strain": np.ones((2, 6, 3, 4))},
            r"'strain' must have shape \(n, 6, 3, 3\)",
        ),
        "nan.h5": (
            {"microstructures": ok, "stiffness": np.stack([np.eye(6), np.full((6, 6), np.nan)])},
            "'stiffness' of sample 1 holds NaN",
        ),
    }
    for name, (arrays, message) in cases.items():
        path = write_raw(tmp_path / name, **arrays)
        with pytest.raises(DataError, match=message) as error:
            read_voxel_dataset(path)
        assert name in str(error.value)


def test_nan_is_allowed_only_in_stiffness_columns_not_computed(tmp_path):
    stiffness = np.full((1, 6, 6), np.nan)
    stiffness[0, :, 0] = 1.0
    path = write_voxel_dataset(
        tmp_path / "c1.h5",
        np.zeros((1, 3, 3), np.uint8),
        stiffness=stiffness,
        attrs={"stiffness_columns": [0]},
    )
    assert np.isnan(read_voxel_dataset(path).stiffness[0, 0, 1])
    with h5py.File(path, "a") as file:
        file.attrs["stiffness_columns"] = "[0, 1]"
    with pytest.raises(DataError, match="sample 0 holds NaN"):
        read_voxel_dataset(path)


def test_generate_dataset_stiffness_lies_between_reuss_and_voigt(tmp_path):
    spec = MicrostructureSpec("grf", (9, 9, 9), 0.4, 1.5)
    report = generate_dataset(
        tmp_path / "stiff.h5",
        spec,
        4,
        contrast=10,
        seed=3,
        workers=2,
        chunk_size=2,
        progress=False,
    )
    assert report.n == 4 and report.unconverged == 0 and report.mean_iterations > 1
    data = read_voxel_dataset(report.path)
    np.testing.assert_array_equal(data.microstructures, generate(spec, 4, seed=3))
    assert data.iterations.shape == (4, 6) and data.solve_seconds.shape == (4,)
    phases = [IsotropicPhase(1.0, 0.3), IsotropicPhase(10.0, 0.3)]
    fractions = data.microstructures.mean(axis=(1, 2, 3))
    fractions = np.stack([1 - fractions, fractions], axis=1)
    voigt, reuss = voigt_stiffness(phases, fractions), reuss_stiffness(phases, fractions)
    for stiffness, upper, lower in zip(data.stiffness, voigt, reuss, strict=True):
        assert lower[0, 0] < stiffness[0, 0] < upper[0, 0]
        np.testing.assert_allclose(stiffness, stiffness.T, atol=1e-4 * stiffness[0, 0])
    attrs = data.attrs
    assert attrs["phases"][1] == {"youngs_modulus": 10.0, "poisson_ratio": 0.3}
    assert attrs["contrast"] == 10.0 and attrs["seed"] == 3 and attrs["complete"]
    assert attrs["solver"]["tol"] == 1e-6 and attrs["stiffness_columns"] == [0, 1, 2, 3, 4, 5]
    assert MicrostructureSpec.from_dict(attrs["spec"]) == spec
    assert attrs["solve_seconds_total"] == pytest.approx(data.solve_seconds.sum())

    again = generate_dataset(
        tmp_path / "again.h5",
        spec,
        4,
        contrast=10,
        seed=3,
        scheduler="synchronous",
        chunk_size=3,
        progress=False,
    )
    np.testing.assert_allclose(read_voxel_dataset(again.path).stiffness, data.stiffness)


def test_generate_dataset_first_column_only(tmp_path):
    spec = MicrostructureSpec("sphere", (9, 9, 9), 0.2, 1.5)
    report = generate_dataset(tmp_path / "c1.h5", spec, 2, contrast=5, load_cases=1, progress=False)
    data = read_voxel_dataset(report.path)
    assert np.all(np.isfinite(data.stiffness[:, :, 0]))
    assert np.all(np.isnan(data.stiffness[:, :, 1:]))
    assert data.iterations.shape == (2, 1) and data.attrs["stiffness_columns"] == [0]


def test_generate_dataset_strain_fields_average_to_the_macro_strain(tmp_path):
    spec = MicrostructureSpec("fibre", (12, 12), 0.3, 1.5, direction=(1.0, 1.0))
    macro = (1e-3, 0.0, 0.0, 0.0, 0.0, 5e-4)
    report = generate_dataset(
        tmp_path / "strain.h5",
        spec,
        2,
        label="strain",
        macro_strain=macro,
        matrix_modulus=2.0,
        poisson_ratios=(0.25, 0.35),
        workers=1,
        progress=False,
    )
    data = read_voxel_dataset(report.path)
    assert data.strain.shape == (2, 6, 12, 12) and data.strain.dtype == np.float32
    np.testing.assert_allclose(data.strain.mean(axis=(2, 3)), np.tile(macro, (2, 1)), atol=1e-9)
    assert data.stiffness is None and data.attrs["macro_strain"] == list(macro)
    assert data.attrs["phases"] == [
        {"youngs_modulus": 2.0, "poisson_ratio": 0.25},
        {"youngs_modulus": 100.0, "poisson_ratio": 0.35},
    ]
    stiff = data.microstructures[0] == 1
    assert data.strain[0, 0][stiff].mean() < data.strain[0, 0][~stiff].mean()


def test_generate_dataset_on_a_distributed_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = MicrostructureSpec("grf", (8, 8), 0.5, 1.5)
    local = generate_dataset(
        tmp_path / "local.h5", spec, 3, label="strain", workers=1, progress=False
    )
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = generate_dataset(
            tmp_path / "remote.h5",
            spec,
            3,
            label="strain",
            client=client,
            chunk_size=1,
            progress=False,
        )
    np.testing.assert_allclose(
        read_voxel_dataset(remote.path).strain, read_voxel_dataset(local.path).strain, atol=1e-9
    )


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"label": "stress"}, ConfigError, "label must be one of stiffness, strain"),
        ({"load_cases": 0}, ConfigError, "load_cases must be an integer from 1 to 6"),
        ({"tol": 0.0}, ConfigError, "tol must be positive"),
        ({"contrast": -1.0}, DataError, "contrast must be positive"),
        ({"macro_strain": (1e-3, 0.0)}, DataError, "Mandel 6-vector"),
        ({"poisson_ratios": (0.3, 0.5)}, DataError, "poisson_ratio"),
        ({"scheduler": "gpu"}, ConfigError, "scheduler must be one of"),
    ],
)
def test_generate_dataset_bad_settings(tmp_path, options, error, message):
    spec = MicrostructureSpec("grf", (5, 5), 0.5, 1.0)
    with pytest.raises(error, match=message):
        generate_dataset(tmp_path / "bad.h5", spec, 1, progress=False, **options)


def test_cli_generate_microstructures(tmp_path):
    out = tmp_path / "cli.h5"
    command = ["generate", "microstructures", str(out), "--kind", "grf", "--size", "7"]
    options = ["--dims", "3", "--n", "3", "--volume-fraction", "0.3:0.5", "--feature-size", "1.5"]
    options += ["--contrast", "10", "--label", "stiffness", "--seed", "0", "--workers", "2"]
    result = runner.invoke(app, [*command, *options])
    assert result.exit_code == 0, result.output
    assert "3 microstructures with stiffness labels" in result.output
    assert "mean solver iterations" in result.output
    data = read_voxel_dataset(out)
    assert data.microstructures.shape == (3, 7, 7, 7) and data.stiffness.shape == (3, 6, 6)
    assert data.attrs["spec"]["volume_fraction"] == [0.3, 0.5]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--volume-fraction", "1.5"], "strictly between 0 and 1"),
        (["--kind", "foam"], "kind must be one of"),
        (["--dims", "4"], "shape must be 2-D"),
        (["--label", "stress"], "label must be one of"),
        (["--feature-size", "big"], "not a number"),
        (["--scheduler", "gpu"], "neither threads"),
    ],
)
def test_cli_generate_bad_options(tmp_path, options, message):
    command = ["generate", "microstructures", str(tmp_path / "x.h5"), "--size", "5", "--n", "1"]
    result = runner.invoke(app, [*command, *options])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
