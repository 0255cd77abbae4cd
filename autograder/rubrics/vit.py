"""Rubric: ViT patch embedding."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from solutions import vit as ref

from .. import strategies as s
from ..checks import BadCall, Call, ModuleCall, holds, matches_reference, module_matches_reference, rejects_bad_arguments
from ..rubric import Item, Rubric
from ..selfcheck.vit import EMBED_HINT, PATCHIFY_HINT, UNPATCHIFY_HINT, inverts_patchify


@st.composite
def patchify_calls(draw) -> Call:
    inputs = draw(s.image_inputs())
    return Call((inputs.images, inputs.patch_size), names=("images", "patch_size"))


@st.composite
def unpatchify_calls(draw) -> Call:
    inputs = draw(s.image_inputs())
    _, c, h, w = inputs.images.shape
    size = h if h == w and draw(st.booleans()) else (h, w)
    return Call((ref.patchify(inputs.images, inputs.patch_size), inputs.patch_size, size, c),
                names=("patches", "patch_size", "image_size", "channels"))


@st.composite
def embedding_calls(draw) -> ModuleCall:
    inputs = draw(s.image_inputs())
    b, c, h, w = inputs.images.shape
    size = h if h == w and draw(st.booleans()) else (h, w)
    return ModuleCall((size, inputs.patch_size, c, draw(st.integers(1, 5))), (inputs.images,), grad_inputs=(0,),
                      dtype=inputs.images.dtype, seed=draw(s.seeds()), names=("images",))


RUBRIC = Rubric(
    assignment="vit",
    version="1",
    items=(
        Item("patchify", 3.0, (
            matches_reference("patchify", ref.patchify, patchify_calls(), hint=PATCHIFY_HINT, weight=4.0),
            rejects_bad_arguments("patchify", [BadCall("patch_size=2 for a 5x4 image", (torch.zeros(1, 1, 5, 4), 2))],
                                  hint="the patch size must divide both sides of the image"),
        )),
        Item("unpatchify", 2.0, (
            matches_reference("unpatchify", ref.unpatchify, unpatchify_calls(), hint=UNPATCHIFY_HINT, weight=3.0),
            holds("inverts_patchify", "unpatchify(patchify(x)) == x", inverts_patchify, "unpatchify", s.image_inputs(),
                  hint=UNPATCHIFY_HINT, max_examples=30),
        )),
        Item("PatchEmbedding", 4.0, (
            module_matches_reference("PatchEmbedding", ref.PatchEmbedding, embedding_calls(), hint=EMBED_HINT,
                                     weight=4.0),
            rejects_bad_arguments("PatchEmbedding", [BadCall("patch_size=4 for a 6x6 image", (6, 4, 1, 2))],
                                  hint="the patch size must divide both sides of the image"),
        )),
    ),
)
