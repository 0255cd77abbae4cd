"""Rubric: ViT patch embedding, one check per concept the notebook states."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from solutions import vit as ref

from .. import strategies as s
from ..checks import BadCall, Call, ModuleCall, matches_reference, module_matches_reference, rejects_bad_arguments
from ..rubric import Item, Rubric
from ..selfcheck.vit import EMBED_HINT, PATCHIFY_HINT, UNPATCHIFY_HINT


@st.composite
def patchify_calls(draw) -> Call:
    inputs = draw(s.image_inputs())
    return Call((inputs.images, inputs.patch_size), names=("images", "patch_size"), grad_inputs=(0,))


@st.composite
def unpatchify_calls(draw) -> Call:
    inputs = draw(s.image_inputs())
    _, c, h, w = inputs.images.shape
    size = h if h == w and draw(st.booleans()) else (h, w)
    return Call((ref.patchify(inputs.images, inputs.patch_size), inputs.patch_size, size, c),
                names=("patches", "patch_size", "image_size", "channels"), grad_inputs=(0,))


@st.composite
def embedding_calls(draw, pair: bool) -> ModuleCall:
    """`pair`: image_size given as an (H, W) pair (non-square images too), else as an int for square images."""
    inputs = draw(s.image_inputs())
    b, c, h, w = inputs.images.shape
    if not pair:
        inputs.images = inputs.images[:, :, :min(h, w), :min(h, w)]
        h = w = min(h, w)
    return ModuleCall(((h, w) if pair else h, inputs.patch_size, c, draw(st.integers(1, 5))), (inputs.images,),
                      grad_inputs=(0,), dtype=inputs.images.dtype, seed=draw(s.seeds()), names=("images",))


RUBRIC = Rubric(
    assignment="vit",
    version="2",
    items=(
        Item("patchify", 3.0, (
            matches_reference("patchify", ref.patchify, patchify_calls(), check_id="core", core=True, weight=2.4,
                              title="row-major patches, each ordered (row, column, channel)", hint=PATCHIFY_HINT,
                              sentence="`(row p, column q, channel c)` with the channel varying fastest"),
            matches_reference("patchify", ref.patchify, patchify_calls(), check_id="gradient", aspect="gradient",
                              weight=0.3, title="gradients reach the images",
                              sentence="Gradients must flow back to `images`.", hint=PATCHIFY_HINT),
            rejects_bad_arguments("patchify", [BadCall("patch_size=2 for a 5x4 image", (torch.zeros(1, 1, 5, 4), 2))],
                                  weight=0.3, sentence="If `P` does not divide both `H` and `W`, raise `ValueError`.",
                                  hint="the patch size must divide both sides of the image"),
        )),
        Item("unpatchify", 2.0, (
            matches_reference("unpatchify", ref.unpatchify, unpatchify_calls(), check_id="core", core=True,
                              weight=1.4, title="the exact inverse of patchify", hint=UNPATCHIFY_HINT,
                              sentence="the exact inverse of `patchify`"),
            matches_reference("unpatchify", ref.unpatchify, unpatchify_calls(), check_id="gradient",
                              aspect="gradient", weight=0.3, title="gradients reach the patches",
                              sentence="Gradients must flow back to `patches`.", hint=UNPATCHIFY_HINT),
            rejects_bad_arguments("unpatchify", [
                BadCall("5 patches of 4 values for a 4x4 image with patch_size=2 (it has 4 patches)",
                        (torch.zeros(1, 5, 4), 2, 4, 1)),
                BadCall("patches of 3 values with patch_size=2 and 1 channel (a patch holds 4)",
                        (torch.zeros(1, 4, 3), 2, 4, 1)),
                BadCall("patch_size=3 for a 4x4 image", (torch.zeros(1, 1, 9), 3, 4, 1)),
            ], weight=0.3, sentence="Raise `ValueError` when the patches cannot form such an image.",
                hint="check that N = (H/P)(W/P) and that each patch holds P*P*channels values"),
        )),
        Item("PatchEmbedding", 4.0, (
            module_matches_reference("PatchEmbedding", ref.PatchEmbedding, embedding_calls(False), check_id="core",
                                     core=True, weight=2.8, hint=EMBED_HINT,
                                     title="[CLS] then projected patches, plus positions; outputs and gradients",
                                     sentence="`cat([cls_token, proj(patchify(images))], dim=1) + pos_embed`"),
            module_matches_reference("PatchEmbedding", ref.PatchEmbedding, embedding_calls(True),
                                     check_id="image_size_pair", weight=0.6,
                                     title="image_size as an (H, W) pair, non-square images too", hint=EMBED_HINT,
                                     sentence="`image_size` is an `int` or an `(H, W)` pair, as in `unpatchify`."),
            rejects_bad_arguments("PatchEmbedding", [BadCall("patch_size=4 for a 6x6 image", (6, 4, 1, 2))],
                                  weight=0.6, hint="the patch size must divide both sides of the image",
                                  sentence="Raise `ValueError` if the patch size does not divide the image"),
        ), trusted={"patchify": ref.patchify}),
    ),
)
