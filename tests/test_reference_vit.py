"""The ViT references against MAE's einsum convention and a strided convolution."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given

from autograder import strategies as s
from solutions.vit import PatchEmbedding, patchify, unpatchify

pytestmark = pytest.mark.vit


@given(s.image_inputs())
def test_patchify_follows_the_mae_einsum(inputs):
    images, p = inputs.images, inputs.patch_size
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p)
    expected = torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)
    assert torch.equal(patchify(images, p), expected)


@given(s.image_inputs())
def test_unpatchify_inverts_patchify(inputs):
    images, p = inputs.images, inputs.patch_size
    _, c, h, w = images.shape
    assert torch.equal(unpatchify(patchify(images, p), p, (h, w), c), images)
    if h == w:
        assert torch.equal(unpatchify(patchify(images, p), p, h, c), images)


def test_patches_are_row_major_over_the_grid():
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    patches = patchify(image, 2)
    assert patches[0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


@given(s.image_inputs())
def test_patch_embedding_equals_a_strided_convolution(inputs):
    images, p = inputs.images.double(), inputs.patch_size
    b, c, h, w = images.shape
    torch.manual_seed(0)
    embed = PatchEmbedding((h, w), p, c, 5).double()
    conv = torch.nn.Conv2d(c, 5, kernel_size=p, stride=p).double()
    with torch.no_grad():
        # Linear weight (D, p*q*c) -> conv weight (D, c, p, q).
        conv.weight.copy_(embed.proj.weight.reshape(5, p, p, c).permute(0, 3, 1, 2))
        conv.bias.copy_(embed.proj.bias)
    tokens = conv(images).flatten(2).transpose(1, 2)  # (B, N, D)
    expected = torch.cat([embed.cls_token.expand(b, -1, -1), tokens], 1) + embed.pos_embed
    assert torch.allclose(embed(images), expected, atol=1e-10)


def test_patch_embedding_parameters_have_the_contract_shapes():
    embed = PatchEmbedding((8, 4), 2, 3, 6)
    shapes = {name: tuple(p.shape) for name, p in embed.named_parameters()}
    assert shapes == {"cls_token": (1, 1, 6), "pos_embed": (1, 9, 6), "proj.weight": (6, 12), "proj.bias": (6,)}


@pytest.mark.parametrize("call", [lambda: patchify(torch.zeros(1, 1, 5, 4), 2),
                                  lambda: unpatchify(torch.zeros(1, 4, 4), 2, 5, 1),
                                  lambda: PatchEmbedding(6, 4, 1, 2),
                                  lambda: patchify(torch.zeros(4, 4), 2)])
def test_bad_sizes_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_dtype_and_device_are_kept(device):
    images = torch.randn(2, 3, 4, 4, dtype=torch.float64, device=device)
    assert patchify(images, 2).dtype == torch.float64 and patchify(images, 2).device.type == device
