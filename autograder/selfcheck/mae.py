"""Visible checks for the mae assignment: masking by the noise's order, the exact keep count, the loss."""
from __future__ import annotations

import math
from fractions import Fraction

import torch

from .. import strategies as s
from ..common.compare import Mismatch, compare_tensors
from .core import VisibleCheck, golden_check, register

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

register("random_masking",
         VisibleCheck("keeps the lowest-noise patches; mask and ids_restore agree", MASKING_HINT, s.masking_inputs(),
                      lambda inputs, f: keeps_the_lowest_noise(f, inputs)),
         golden_check("random_masking", MASKING_HINT))
register("insert_mask_tokens",
         VisibleCheck("puts kept patches back and mask tokens elsewhere", INSERT_HINT, s.masking_inputs(),
                      lambda inputs, f: rebuilds_kept_tokens(f, inputs)))
register("mae_loss",
         VisibleCheck("ignores predictions on kept patches", LOSS_HINT, s.loss_inputs(),
                      lambda inputs, f: ignores_kept_patches(f, inputs)),
         golden_check("mae_loss", LOSS_HINT))
