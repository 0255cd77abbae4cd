"""Visible checks for the mae assignment: masking by the noise's order, the exact keep count, the loss."""
from __future__ import annotations

import math
from fractions import Fraction

import torch
from hypothesis import strategies as st

from .. import strategies as s
from ..common.compare import Mismatch, compare_tensors

from .core import VisibleCheck, golden_check, gradient_check, register, rejects

MASKING_HINT = ("len_keep = floor(N * (1 - ratio)) in exact decimals (Fraction(str(ratio))); shuffle each row by "
                "argsort(noise); keep the first len_keep; mask is 1 for REMOVED patches, in the original order; "
                "ids_restore = argsort(ids_shuffle)")
INSERT_HINT = "append N - len_keep copies of mask_token after the kept tokens, then gather with ids_restore"
LOSS_HINT = ("mean squared error per patch, summed over removed patches (mask == 1) of the whole batch and divided "
             "by their number; 0 if nothing is removed; norm_pix_loss normalises each target patch first")


def _shuffle(inputs: s.MaskingInputs) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(len_keep, the noise order, the kept patches in that order), straight from the definition."""
    x = inputs.x
    keep = math.floor(x.shape[1] * (1 - Fraction(str(inputs.mask_ratio))))
    order = torch.argsort(inputs.noise, dim=1)
    return keep, order, torch.gather(x, 1, order[:, :keep, None].expand(-1, -1, x.shape[2]))


def keeps_the_lowest_noise(masking, inputs: s.MaskingInputs) -> Mismatch | None:
    """x_kept holds the len_keep lowest-noise patches of each row, in noise order; mask and ids_restore agree."""
    x, noise = inputs.x, inputs.noise
    b, n, _ = x.shape
    keep, order, expected_kept = _shuffle(inputs)
    expected_mask = torch.ones(b, n, dtype=x.dtype).scatter(1, order[:, :keep], 0.0)
    kept, mask, ids_restore = masking(x, inputs.mask_ratio, noise)
    return (compare_tensors(expected_kept, kept, f"x_kept (ratio {inputs.mask_ratio}, N={n}: keep {keep})")
            or compare_tensors(expected_mask, mask, "mask (1 = removed)")
            or compare_tensors(torch.argsort(order, dim=1), ids_restore, "ids_restore"))


def rebuilds_kept_tokens(insert, inputs: s.MaskingInputs) -> Mismatch | None:
    """Un-shuffling x_kept with mask tokens puts every kept patch back in place and a mask token everywhere else."""
    x = inputs.x
    b, n, d = x.shape
    keep, order, kept = _shuffle(inputs)
    token = torch.full((1, 1, d), 9.0, dtype=x.dtype)
    removed = torch.ones(b, n, dtype=torch.bool).scatter(1, order[:, :keep], False)
    expected = torch.where(removed[..., None], token, x)
    return compare_tensors(expected, insert(kept, token, torch.argsort(order, dim=1)), "insert_mask_tokens output")


def ignores_kept_patches(loss, inputs: s.LossInputs) -> Mismatch | None:
    """Changing predictions on kept patches (mask == 0) leaves the loss alone."""
    changed = inputs.pred.masked_fill(~inputs.mask.bool()[..., None], 50.0)
    return compare_tensors(loss(inputs.pred, inputs.target, inputs.mask, inputs.norm_pix_loss),
                           loss(changed, inputs.target, inputs.mask, inputs.norm_pix_loss),
                           "loss after changing predictions on kept patches")


def _own_shuffle(kept: torch.Tensor, mask: torch.Tensor, ids_restore: torch.Tensor, x: torch.Tensor,
                 keep: int) -> tuple[torch.Tensor | None, Mismatch | None]:
    """The shuffle behind one noise=None result, after checking the three outputs agree with each other."""
    rows, n = ids_restore.shape
    if ids_restore.dtype.is_floating_point or not torch.equal(ids_restore.sort(dim=1).values,
                                                              torch.arange(n).expand(rows, n)):
        return None, Mismatch("ids_restore", "is not a permutation of 0..N-1 in every row", kind="not_permutation")
    ids_shuffle = torch.argsort(ids_restore, dim=1)  # (B, N)
    expected_kept = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, x.shape[2]))
    expected_mask = torch.ones(rows, n, dtype=x.dtype).scatter(1, ids_shuffle[:, :keep], 0.0)
    return ids_shuffle, (compare_tensors(expected_kept, kept, "x_kept (against ids_restore)", check_dtype=False)
                         or compare_tensors(expected_mask, mask, "mask (against ids_restore)", check_dtype=False))


def fresh_shuffles(x: torch.Tensor, keep: int, first: tuple, second: tuple) -> Mismatch | None:
    """Two results of random_masking(x, ratio) without noise (x holds each patch's index): each agrees with its
    ids_restore, the samples of a batch are shuffled differently, and the two calls differ (no fixed seed)."""
    shuffles = []
    for result in (first, second):
        ids_shuffle, mismatch = _own_shuffle(*result, x, keep)
        if mismatch:
            return mismatch
        shuffles.append(ids_shuffle)
    what = "random_masking(x, 0.5) with noise=None"
    if all(torch.equal(shuffles[0][0], row) for row in shuffles[0]):
        return Mismatch(what, f"shuffled all {x.shape[0]} samples of the batch the same way; each sample needs its "
                              "own noise, shape (B, N)", kind="shared_shuffle")
    if torch.equal(shuffles[0], shuffles[1]):
        return Mismatch(what, "gave the same shuffle in two calls: draw fresh noise with torch.rand on every call "
                              "(no fixed seed)", kind="fixed_seed")
    return None


def shuffles_afresh(masking, _: object) -> Mismatch | None:
    """Visible form of the noise=None check: two calls in a row on 8 samples of 16 patches."""
    x = torch.arange(16, dtype=torch.float64).repeat(8, 1)[..., None]  # (B, N, 1): each patch holds its index
    results = [masking(x, 0.5) for _ in range(2)]
    if not all(isinstance(r, tuple) and len(r) == 3 and all(type(t) is torch.Tensor for t in r) for r in results):
        return Mismatch("random_masking(x, 0.5)", "should return three tensors (x_kept, mask, ids_restore)")
    return fresh_shuffles(x, 8, *results)


def _golden_masking() -> tuple[tuple, dict]:
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.0, 0.6, 0.4],
                          [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]])
    return (s.values((2, 10, 3), 7), 0.9), {"noise": noise}


def _golden_loss() -> tuple[tuple, dict]:
    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    return (s.values((2, 3, 4), 8), s.values((2, 3, 4), 9), mask), {"norm_pix_loss": True}


GOLDEN_CALLS = {
    "random_masking": [_golden_masking()],
    "mae_loss": [_golden_loss(), ((s.values((1, 2, 2), 1), s.values((1, 2, 2), 2), torch.tensor([[0.0, 1.0]])), {})],
}

def follows_the_loss_definition(loss, inputs: s.LossInputs) -> Mismatch | None:
    """The loss computed here from the notebook's definition: per-patch mean squared error (after normalising
    each target patch by its mean and unbiased variance with norm_pix_loss), summed over removed patches of the
    whole batch, divided by their number."""
    target = inputs.target
    if inputs.norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    per_patch = ((inputs.pred - target) ** 2).mean(-1)
    removed = inputs.mask.sum()
    expected = (per_patch * inputs.mask).sum() / removed if removed > 0 else torch.zeros((), dtype=target.dtype)
    return compare_tensors(expected, loss(inputs.pred, inputs.target, inputs.mask, inputs.norm_pix_loss), "loss",
                           check_dtype=False)


def _nothing_removed(loss, inputs: s.LossInputs) -> Mismatch | None:
    zero = torch.zeros((), dtype=inputs.pred.dtype)
    return compare_tensors(zero, loss(inputs.pred, inputs.target, inputs.mask, inputs.norm_pix_loss),
                           "loss with nothing removed", check_dtype=False)


def _insert_gradient_call(inputs: s.MaskingInputs) -> tuple[tuple, dict, tuple[int, ...]]:
    keep, order, kept = _shuffle(inputs)
    token = torch.full((1, 1, inputs.x.shape[2]), 0.5, dtype=inputs.x.dtype)
    return (kept, token, torch.argsort(order, dim=1)), {}, (0, 1)


register("random_masking",
         VisibleCheck("keeps the lowest-noise patches; mask and ids_restore agree", MASKING_HINT, s.masking_inputs(),
                      lambda inputs, f: keeps_the_lowest_noise(f, inputs), concepts=("core", "dtype_device")),
         VisibleCheck("keeps exactly floor(N * (1 - ratio)) patches where float arithmetic rounds wrong",
                      MASKING_HINT, s.masking_inputs(ratios="boundary"),
                      lambda inputs, f: keeps_the_lowest_noise(f, inputs), max_examples=20, concepts=("keep_count",)),
         VisibleCheck("without noise, each sample gets its own fresh shuffle", MASKING_HINT, st.just(None),
                      lambda _, f: shuffles_afresh(f, None), max_examples=1,
                      concepts=("noise_none",)),
         rejects("random_masking", [("mask_ratio=1.0", (torch.zeros(1, 4, 2), 1.0), {}),
                                    ("mask_ratio=-0.25", (torch.zeros(1, 4, 2), -0.25), {})], MASKING_HINT),
         golden_check("random_masking", MASKING_HINT))
register("insert_mask_tokens",
         VisibleCheck("puts kept patches back and mask tokens elsewhere", INSERT_HINT, s.masking_inputs(),
                      lambda inputs, f: rebuilds_kept_tokens(f, inputs)),
         gradient_check("insert_mask_tokens", INSERT_HINT, s.masking_inputs(ratios="ordinary"), _insert_gradient_call))
register("mae_loss",
         VisibleCheck("ignores predictions on kept patches", LOSS_HINT, s.loss_inputs(),
                      lambda inputs, f: ignores_kept_patches(f, inputs)),
         VisibleCheck("follows the definition, with and without norm_pix_loss", LOSS_HINT,
                      s.loss_inputs(removed="some"), lambda inputs, f: follows_the_loss_definition(f, inputs),
                      concepts=("core", "norm_pix_loss")),
         VisibleCheck("is 0 when nothing is removed", LOSS_HINT, s.loss_inputs(removed="none"),
                      lambda inputs, f: _nothing_removed(f, inputs), max_examples=5, concepts=("nothing_removed",)),
         gradient_check("mae_loss", LOSS_HINT, s.loss_inputs(norm=False, removed="some"),
                        lambda inputs: ((inputs.pred, inputs.target, inputs.mask), {}, (0,))),
         golden_check("mae_loss", LOSS_HINT, concepts=("core", "norm_pix_loss")))
