"""Rubric: masked-autoencoder masking, one check per concept the notebook states."""
from __future__ import annotations

from functools import partial

import torch
from hypothesis import strategies as st

from solutions import mae as ref

from .. import strategies as s
from ..checks import BadCall, Call, compare_values, matches_reference, raised, rejects_bad_arguments
from ..common.compare import Mismatch, compare_tensors
from ..rubric import Check, Item, Rubric
from ..selfcheck.mae import INSERT_HINT, LOSS_HINT, MASKING_HINT, fresh_shuffles
from ..student import Student, StudentRaised


@st.composite
def masking_calls(draw, ratios: str) -> Call:
    inputs = draw(s.masking_inputs(ratios=ratios))
    return Call((inputs.x, inputs.mask_ratio), {"noise": inputs.noise}, names=("x", "mask_ratio"))


@st.composite
def insert_calls(draw) -> Call:
    inputs = draw(s.masking_inputs(ratios="ordinary"))
    kept, _, ids_restore = ref.random_masking(inputs.x, inputs.mask_ratio, inputs.noise)
    token = s.values((1, 1, inputs.x.shape[2]), draw(s.seeds()), inputs.x.dtype)
    return Call((kept, token, ids_restore), names=("x_kept", "mask_token", "ids_restore"), grad_inputs=(0, 1))


@st.composite
def loss_calls(draw, **kinds) -> Call:
    inputs = draw(s.loss_inputs(**kinds))
    return Call((inputs.pred, inputs.target, inputs.mask), {"norm_pix_loss": inputs.norm_pix_loss},
                names=("pred", "target", "mask"), grad_inputs=(0,), seed=draw(s.seeds()))


def _shapes(expected: tuple, result: object) -> Mismatch | None:
    """Three tensors of the expected shapes (their values depend on the noise, so only the form is compared)."""
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        return compare_values(expected, result, "random_masking")
    for e, r, name in zip(expected, result, ("x_kept", "mask", "ids_restore")):
        if type(r) is not torch.Tensor or r.shape != e.shape:
            return compare_tensors(e, r, name)
    return None


def shuffles_each_sample_afresh() -> Check:
    """With noise=None: every output agrees with ids_restore, the samples of a batch are shuffled differently,
    and two calls with different seeds shuffle differently (no seed fixed inside)."""
    b, n, ratio = 8, 16, 0.5
    x = torch.arange(n, dtype=torch.float64).repeat(b, 1)[..., None]  # (B, N, 1): each patch holds its index

    def run(seed: int, _: None, student: Student) -> Mismatch | None:
        results = []
        for call_seed in (seed, seed + 1):
            student.seed = call_seed
            try:
                result, _ = student.call("random_masking", (x, ratio), {})
            except StudentRaised as error:
                return raised("random_masking", error)
            shape = _shapes(ref.random_masking(x, ratio, torch.rand(b, n)), result)
            if shape:
                return shape
            results.append(result)
        return fresh_shuffles(x, n // 2, *results)

    return Check("noise_none", "without noise, every sample gets its own fresh random shuffle", MASKING_HINT,
                 st.integers(0, 1000), run, weight=0.4,
                 sentence="draw it with `torch.rand` on `x`'s device when `None`")


masking = partial(matches_reference, "random_masking", ref.random_masking, hint=MASKING_HINT,
                  parts=("x_kept", "mask", "ids_restore"))
loss = partial(matches_reference, "mae_loss", ref.mae_loss, hint=LOSS_HINT)

RUBRIC = Rubric(
    assignment="mae",
    version="2",
    items=(
        Item("random_masking", 4.0, (
            masking(masking_calls("ordinary"), check_id="core", core=True, weight=2.4,
                    title="keeps the len_keep lowest-noise patches of each sample; mask and ids_restore agree",
                    sentence="keep the first `len_keep` of that order. Each sample gets **its own** shuffle."),
            masking(masking_calls("boundary"), check_id="keep_count", weight=0.6,
                    title="len_keep is exact where N * (1 - ratio) is a whole number (N=10, r=0.9; N=25, r=0.28)",
                    sentence="Compute the count in exact decimal arithmetic"),
            shuffles_each_sample_afresh(),
            masking(masking_calls("ordinary"), check_id="dtype_device", aspect="dtype_device", weight=0.3,
                    title="mask in the dtype of x, ids_restore an integer tensor",
                    sentence="1.0 = removed, in the dtype of `x`"),
            rejects_bad_arguments("random_masking", [BadCall("mask_ratio=1.0 (nothing would be kept)",
                                                             (torch.zeros(1, 4, 2), 1.0)),
                                                     BadCall("mask_ratio=-0.25", (torch.zeros(1, 4, 2), -0.25))],
                                  weight=0.3, sentence="A ratio outside `[0, 1)` raises `ValueError`.",
                                  hint="the mask ratio must lie in [0, 1)"),
        )),
        Item("insert_mask_tokens", 2.0, (
            matches_reference("insert_mask_tokens", ref.insert_mask_tokens, insert_calls(), check_id="core",
                              core=True, weight=1.5, title="kept patches back in place, mask tokens elsewhere",
                              sentence="Append `N - len_keep` copies of the learned `mask_token`", hint=INSERT_HINT),
            matches_reference("insert_mask_tokens", ref.insert_mask_tokens, insert_calls(), check_id="gradient",
                              aspect="gradient", weight=0.5,
                              title="gradients reach x_kept and the learned mask_token", hint=INSERT_HINT,
                              sentence="Gradients must flow back to `x_kept` and to `mask_token`"),
        )),
        Item("mae_loss", 3.0, (
            loss(loss_calls(norm=False, removed="some"), check_id="core", core=True, weight=2.0,
                 title="per-patch mean squared error, summed over removed patches, divided by their number",
                 sentence="sum over all removed patches of the batch and divide by their number"),
            loss(loss_calls(norm=True, removed="some"), check_id="norm_pix_loss", weight=0.4,
                 title="norm_pix_loss normalises each target patch (unbiased variance)",
                 sentence="each target patch is first normalised by its own mean and unbiased variance"),
            loss(loss_calls(removed="none"), check_id="nothing_removed", weight=0.2,
                 title="the loss is 0 when nothing is removed", sentence="If nothing is removed, the loss is 0"),
            loss(loss_calls(norm=False, removed="some"), check_id="gradient", aspect="gradient", weight=0.4,
                 title="gradients reach pred",
                 sentence="Gradients must flow back to `pred`"),
        )),
    ),
)
