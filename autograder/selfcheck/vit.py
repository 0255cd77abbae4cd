"""Visible checks for the vit assignment: MAE's patch convention and the convolution view of patch embedding."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from .. import strategies as s
from ..common.compare import Mismatch, compare_tensors
from .core import VisibleCheck, golden_check, gradient_check, register, rejects

PATCHIFY_HINT = ("patches go row by row over the grid; inside a patch, flatten as (row p, column q, channel c) "
                 "with the channel varying fastest: reshape to (B, C, h, P, w, P) and permute to (B, h, w, P, P, C)")
UNPATCHIFY_HINT = "undo patchify step by step: reshape to (B, h, w, P, P, C), permute back, reshape to (B, C, H, W)"
EMBED_HINT = ("tokens = proj(patchify(images)); put cls_token (expanded over the batch) first; add pos_embed; "
              "parameters proj, cls_token (1, 1, D) and pos_embed (1, N + 1, D)")


def mae_patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """The MAE code base's patchify, written with its einsum."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)


def follows_mae_layout(patchify, inputs: s.ImageInputs) -> Mismatch | None:
    expected = mae_patchify(inputs.images, inputs.patch_size)
    return compare_tensors(expected, patchify(inputs.images, inputs.patch_size), "patchify")


def inverts_patchify(unpatchify, inputs: s.ImageInputs) -> Mismatch | None:
    _, c, h, w = inputs.images.shape
    patches = mae_patchify(inputs.images, inputs.patch_size)
    return compare_tensors(inputs.images, unpatchify(patches, inputs.patch_size, (h, w), c), "unpatchify(patchify(x))")


def equals_strided_convolution(embedding_class, inputs: s.ImageInputs) -> Mismatch | None:
    """PatchEmbedding is a Conv2d(kernel=stride=P) whose weight is the linear weight reordered to (D, C, P, P)."""
    images, p = inputs.images, inputs.patch_size
    b, c, h, w = images.shape
    torch.manual_seed(0)
    embed = embedding_class((h, w), p, c, 5).to(images.dtype)
    conv = torch.nn.Conv2d(c, 5, kernel_size=p, stride=p).to(images.dtype)
    with torch.no_grad():
        conv.weight.copy_(embed.proj.weight.reshape(5, p, p, c).permute(0, 3, 1, 2))
        conv.bias.copy_(embed.proj.bias)
        tokens = conv(images).flatten(2).transpose(1, 2)
        expected = torch.cat([embed.cls_token.expand(b, -1, -1), tokens], 1) + embed.pos_embed
        return compare_tensors(expected, embed(images), "PatchEmbedding output")


def has_contract_parameters(embedding_class, sizes: tuple[int, int, int, int]) -> Mismatch | None:
    side, p, c, d = sizes
    shapes = {n: tuple(v.shape) for n, v in embedding_class(side * p, p, c, d).named_parameters()}
    expected = {"proj.weight": (d, p * p * c), "proj.bias": (d,), "cls_token": (1, 1, d),
                "pos_embed": (1, side * side + 1, d)}
    if shapes != expected:
        return Mismatch("PatchEmbedding parameters", f"are {shapes}, should be {expected}")
    return None


GOLDEN_CALLS = {
    "patchify": [((s.values((2, 3, 4, 6), 5), 2), {})],
    "unpatchify": [((s.values((1, 6, 8), 6), 2, (4, 6), 2), {})],
}

register("patchify",
         VisibleCheck("follows the MAE patch layout", PATCHIFY_HINT, s.image_inputs(),
                      lambda inputs, f: follows_mae_layout(f, inputs)),
         gradient_check("patchify", PATCHIFY_HINT, s.image_inputs(),
                        lambda inputs: ((inputs.images, inputs.patch_size), {}, (0,))),
         rejects("patchify", [("patch_size=2 for a 5x4 image", (torch.zeros(1, 1, 5, 4), 2), {})], PATCHIFY_HINT),
         golden_check("patchify", PATCHIFY_HINT))
register("unpatchify",
         VisibleCheck("inverts patchify", UNPATCHIFY_HINT, s.image_inputs(), lambda inputs, f: inverts_patchify(f, inputs)),
         gradient_check("unpatchify", UNPATCHIFY_HINT, s.image_inputs(), lambda inputs: (
             (mae_patchify(inputs.images, inputs.patch_size), inputs.patch_size, tuple(inputs.images.shape[2:]),
              inputs.images.shape[1]), {}, (0,))),
         rejects("unpatchify", [("5 patches for a 4x4 image with patch_size=2", (torch.zeros(1, 5, 4), 2, 4, 1), {}),
                                ("patches of 3 values with patch_size=2, 1 channel", (torch.zeros(1, 4, 3), 2, 4, 1), {})],
                 UNPATCHIFY_HINT),
         golden_check("unpatchify", UNPATCHIFY_HINT))
register("PatchEmbedding",
         VisibleCheck("has the contract's parameters", EMBED_HINT,
                      st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4)),
                      lambda sizes, cls: has_contract_parameters(cls, sizes), max_examples=10),
         VisibleCheck("equals a strided convolution plus [CLS] and positions", EMBED_HINT, s.image_inputs(),
                      lambda inputs, cls: equals_strided_convolution(cls, inputs), max_examples=20,
                      concepts=("core", "image_size_pair")),
         rejects("PatchEmbedding", [("patch_size=4 for a 6x6 image", (6, 4, 1, 2), {})], EMBED_HINT))
