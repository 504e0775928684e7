"""The microstructure GAN and VAE and the design loop: training, decoding at a volume
fraction, save and load, the objectives against their bounds, the three strategies and the
commands."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.errors import ConfigError, DataError, ModelFormatError
from deepmat.models.vae import elbo_terms
from deepmat.train import TrainConfig, UncertaintyUnavailable
from deepmat.train.generative import GANSpec, MicrostructureGAN, distribution_distance
from deepmat.train.vae import MicrostructureVAE, VAESpec
from deepmat.workflows.design import (
    DesignProblem,
    GRFFamily,
    bayesian,
    random_latent,
    random_parameters,
    summarise,
    train_generator,
)

FAMILY = GRFFamily(size=16)


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    """A VAE on 16² structures after a few dozen steps."""
    out = tmp_path_factory.mktemp("vae")
    overrides = {"epochs": 2, "batch_size": 8, "progress": False}
    return train_generator(
        out, n=96, spec={"size": 16, "latent_dim": 4}, overrides=overrides, kind="vae"
    )


@pytest.fixture(scope="module")
def gan(tmp_path_factory):
    """A GAN on 16² structures after a few dozen steps: enough to decode, not to be good."""
    out = tmp_path_factory.mktemp("gan")
    overrides = {"epochs": 2, "batch_size": 8, "progress": False}
    return train_generator(out, n=96, spec={"size": 16, "latent_dim": 4}, overrides=overrides)


def test_the_gan_trains_saves_and_loads_with_its_record(gan):
    assert gan.training["epochs_run"] == 2 and gan.training["data"]["n_train"] == 96
    assert gan.training["data"]["source"]["family"]["size"] == 16
    assert {"s2_mse", "volume_fraction_error", "volume_fraction_ks"} <= set(gan.metrics["val"])
    loaded = deepmat.load(gan.source)
    z = gan.latents(3, seed=5)
    assert np.array_equal(loaded.predict(z), gan.predict(z))
    assert loaded.predict(z).shape == (3, 16, 16) and set(np.unique(loaded.predict(z))) <= {0, 1}


def test_training_resumes_from_its_last_checkpoint(gan, tmp_path):
    folder = gan.source
    more = train_generator(
        folder,
        n=96,
        spec={"size": 16, "latent_dim": 4},
        overrides={"epochs": 3, "batch_size": 8, "progress": False},
    )
    assert more.training["epochs_run"] == 3 and more.training["epochs_trained"] == 1


def test_decoding_at_a_volume_fraction_meets_it_exactly(gan):
    structures = gan.decode(gan.latents(4), volume_fraction=0.3)
    assert np.allclose(structures.mean(axis=(1, 2)), round(0.3 * 256) / 256)
    assert np.all(gan.probabilities(gan.latents(2)) <= 1)


def test_a_generator_refuses_std_bad_latents_and_bad_structures(gan):
    with pytest.raises(UncertaintyUnavailable):
        gan.predict(gan.latents(1), return_std=True)
    with pytest.raises(DataError, match=r"shape \(n, 4\)"):
        gan.predict(np.zeros((2, 5)))
    grey = FAMILY.generate(3, seed=0)
    grey[2, 0, 0] = 7
    with pytest.raises(DataError, match="record 2 holds the values"):
        gan.evaluate(grey)
    with pytest.raises(DataError, match="32² pixels; this model makes 16²"):
        gan.evaluate(GRFFamily(size=32).generate(2))
    with pytest.raises(ConfigError, match="power of two"):
        GANSpec(size=24)


def test_a_checkpoint_of_another_image_size_is_refused(gan, tmp_path):
    import json
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(gan.source, copy)
    card = json.loads((copy / "card.json").read_text())
    card["architecture"]["size"] = 32
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelFormatError, match="do not fit"):
        deepmat.load(copy)


def test_distribution_distance_is_zero_on_itself_and_sees_a_shifted_fraction():
    real = FAMILY.generate(32, seed=0)
    same = distribution_distance(real, real)
    assert same["s2_mse"] == 0 and same["volume_fraction_error"] == 0
    denser = GRFFamily(size=16, volume_fraction=(0.6, 0.7)).generate(32, seed=0)
    assert distribution_distance(real, denser)["volume_fraction_ks"] == 1.0


def test_objectives_sit_between_the_phases_and_below_the_voigt_bound():
    problem = DesignProblem("c11", 0.5)
    stripes_along_x1 = np.zeros((16, 16), np.uint8)
    stripes_along_x1[:, ::2] = 1  # stiff layers continuous along x1
    stripes_across = stripes_along_x1.T.copy()
    bounds = problem.bounds()
    along, across = problem(stripes_along_x1), problem(stripes_across)
    assert across < along <= bounds["voigt_bound"] * (1 + 1e-6)
    # the exact laminate: ε11 = 1 in both layers, σ22 = λᵢ + Mᵢε22ᵢ equal in both, mean ε22 = 0
    lam = np.array([p.lam for p in problem.phases])
    m = lam + 2 * np.array([p.mu for p in problem.phases])
    sigma22 = np.sum(lam / m) / np.sum(1 / m)
    exact = np.mean(m + lam * (sigma22 - lam) / m)
    assert along == pytest.approx(exact, rel=1e-3)
    assert bounds["hashin_shtrikman_bound"] < bounds["voigt_bound"]
    with pytest.raises(ConfigError, match="not one the FFT solver computes"):
        DesignProblem("toughness")
    with pytest.raises(DataError, match="2-D structure"):
        problem(np.zeros((4, 4, 4), np.uint8))


def test_every_strategy_spends_the_budget_and_bayesian_keeps_its_best(gan):
    problem = DesignProblem("c11", 0.4)
    runs = {
        "random_parameters": [random_parameters(problem, FAMILY, 5, seed=0)],
        "random_latent": [random_latent(problem, gan, 5, seed=0)],
        "bayesian": [bayesian(problem, gan, 7, seed=0, batch=2, initial=3)],
    }
    summary = summarise(runs)
    assert {s["calls"] for s in summary.values()} == {5, 7}
    curve = runs["bayesian"][0].best_so_far
    assert np.all(np.diff(curve) >= 0) and curve[-1] == max(runs["bayesian"][0].values)
    for run in runs["bayesian"] + runs["random_latent"]:
        fractions = [s.mean() for s in run.structures]
        assert np.allclose(fractions, round(0.4 * 256) / 256)
    with pytest.raises(ConfigError, match="initial"):
        bayesian(problem, gan, 3, initial=5)


def test_the_design_command_writes_the_best_design_and_every_call(gan, tmp_path):
    out = tmp_path / "design"
    args = ["design", "--gan", str(gan.source), "--out", str(out), "--budget", "6"]
    result = CliRunner().invoke(app, [*args, "--batch", "2", "--initial", "3"])
    assert result.exit_code == 0, result.output
    calls = (out / "calls.csv").read_text().splitlines()
    assert len(calls) == 7 and calls[0].startswith("call,c11,best_so_far,x0")
    assert np.load(out / "best.npy").shape == (16, 16) and (out / "best.png").exists()
    bad = CliRunner().invoke(app, [*args, "--objective", "toughness"])
    assert bad.exit_code == 2 and "toughness" in bad.output
    family = CliRunner().invoke(app, [*args, "--strategy", "random_parameters"])
    assert family.exit_code == 0, family.output


def test_the_estimator_presets_build_a_gan():
    gan = MicrostructureGAN.from_preset("default", config={"epochs": 1})
    assert isinstance(gan.config, TrainConfig) and gan.config.epochs == 1
    assert gan.spec.latent_dim == 16


def test_evaluate_scores_a_generator_against_a_file_of_structures(gan, tmp_path):
    import json

    from deepmat.data.voxels import write_voxel_dataset

    write_voxel_dataset(tmp_path / "real.h5", FAMILY.generate(8, seed=3))
    args = ["evaluate", str(gan.source), str(tmp_path / "real.h5")]
    result = CliRunner().invoke(app, [*args, "--json", "--plot", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    assert metrics["n"] == 8 and metrics["s2_mse"] >= 0 and (tmp_path / "s.png").exists()
    table = CliRunner().invoke(app, [*args, "--plot", str(tmp_path / "s.png")])
    assert table.exit_code == 0 and "s2_mse" in table.output


def test_the_vae_trains_on_the_elbo_saves_loads_and_decodes_at_a_fraction(vae):
    assert isinstance(vae, MicrostructureVAE) and vae.training["epochs_run"] == 2
    history = vae.training["history"]
    assert {"reconstruction", "kl", "val_s2_mse"} <= set(history[-1])
    assert history[-1]["reconstruction"] < 256 * np.log(2)  # better than coin flips per pixel
    loaded = deepmat.load(vae.source)
    assert isinstance(loaded, MicrostructureVAE) and loaded.spec == vae.spec
    z = vae.latents(3, seed=5)
    assert np.array_equal(loaded.predict(z), vae.predict(z))
    structures = loaded.decode(z, volume_fraction=0.3)
    assert np.allclose(structures.mean(axis=(1, 2)), round(0.3 * 256) / 256)
    with pytest.raises(ConfigError, match="invalid VAE settings"):
        VAESpec(beta=0)


def test_elbo_terms_match_their_closed_forms():
    x = torch.tensor([[[[1.0, 0.0]]]])
    logits = torch.zeros_like(x)
    mu, log_var = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, np.log(4.0)]])
    reconstruction, kl = elbo_terms(logits, x, mu, log_var)
    assert reconstruction.item() == pytest.approx(2 * np.log(2), rel=1e-6)
    assert kl.item() == pytest.approx(0.5 * (1 + (4 - 1 - np.log(4))), rel=1e-6)


def test_bayesian_design_searches_a_vae_like_a_gan(vae, tmp_path):
    run = bayesian(DesignProblem("c11", 0.4), vae, 6, seed=0, batch=2, initial=3)
    assert len(run.values) == 6 and run.best[0] == max(run.values)
    out = tmp_path / "design"
    args = ["design", "--generator", str(vae.source), "--out", str(out), "--budget", "4"]
    result = CliRunner().invoke(app, [*args, "--batch", "2", "--initial", "2"])
    assert result.exit_code == 0, result.output
    assert len((out / "calls.csv").read_text().splitlines()) == 5


def test_the_generator_command_trains_either_kind_and_refuses_the_other_kinds_options(tmp_path):
    args = ["train", "generator", "--n", "24", "--size", "16", "--latent-dim", "2"]
    fast = ["--epochs", "1", "--batch-size", "8"]
    result = CliRunner().invoke(app, [*args, *fast, "--kind", "vae", "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    assert isinstance(deepmat.load(tmp_path / "v"), MicrostructureVAE)
    wrong = CliRunner().invoke(
        app, [*args, "--kind", "vae", "--adversarial-loss", "hinge", "--out", str(tmp_path / "w")]
    )
    assert wrong.exit_code != 0 and "GAN only" in wrong.output
    unknown = CliRunner().invoke(
        app, [*args, *fast, "--kind", "flow", "--out", str(tmp_path / "f")]
    )
    assert unknown.exit_code != 0 and "unknown generator 'flow'" in unknown.output
