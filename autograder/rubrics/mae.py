"""Rubric: masked-autoencoder masking."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from solutions import mae as ref

from .. import strategies as s
from ..checks import BadCall, Call, holds, matches_reference, rejects_bad_arguments
from ..rubric import Item, Rubric
from ..selfcheck.mae import INSERT_HINT, LOSS_HINT, MASKING_HINT, ignores_kept_patches


@st.composite
def masking_calls(draw) -> Call:
    inputs = draw(s.masking_inputs())
    return Call((inputs.x, inputs.mask_ratio), {"noise": inputs.noise}, names=("x", "mask_ratio"))


@st.composite
def insert_calls(draw) -> Call:
    inputs = draw(s.masking_inputs())
    kept, _, ids_restore = ref.random_masking(inputs.x, inputs.mask_ratio, inputs.noise)
    token = s.values((1, 1, inputs.x.shape[2]), draw(s.seeds()), inputs.x.dtype)
    return Call((kept, token, ids_restore), names=("x_kept", "mask_token", "ids_restore"))


@st.composite
def loss_calls(draw) -> Call:
    inputs = draw(s.loss_inputs())
    return Call((inputs.pred, inputs.target, inputs.mask), {"norm_pix_loss": inputs.norm_pix_loss},
                names=("pred", "target", "mask"))


RUBRIC = Rubric(
    assignment="mae",
    version="1",
    items=(
        Item("random_masking", 4.0, (
            matches_reference("random_masking", ref.random_masking, masking_calls(), hint=MASKING_HINT,
                              parts=("x_kept", "mask", "ids_restore"), weight=4.0),
            rejects_bad_arguments("random_masking", [BadCall("mask_ratio=1.0 (nothing would be kept)",
                                                             (torch.zeros(1, 4, 2), 1.0)),
                                                     BadCall("mask_ratio=-0.25", (torch.zeros(1, 4, 2), -0.25))],
                                  hint="the mask ratio must lie in [0, 1)"),
        )),
        Item("insert_mask_tokens", 2.0, (
            matches_reference("insert_mask_tokens", ref.insert_mask_tokens, insert_calls(), hint=INSERT_HINT),
        )),
        Item("mae_loss", 3.0, (
            matches_reference("mae_loss", ref.mae_loss, loss_calls(), hint=LOSS_HINT, weight=3.0),
            holds("ignores_kept_patches", "predictions on kept patches do not change the loss", ignores_kept_patches,
                  "mae_loss", s.loss_inputs(), hint=LOSS_HINT, max_examples=30),
        )),
    ),
)
