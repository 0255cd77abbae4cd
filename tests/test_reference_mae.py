"""The MAE references: the shuffle, the keep-count rule, mask tokens and the loss, against their definitions."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given

from autograder import strategies as s
from solutions.mae import insert_mask_tokens, mae_loss, random_masking

pytestmark = pytest.mark.mae


@given(s.masking_inputs())
def test_random_masking_keeps_the_lowest_noise_patches(inputs):
    x, noise = inputs.x, inputs.noise
    b, n, d = x.shape
    kept, mask, ids_restore = random_masking(x, inputs.mask_ratio, noise)
    keep = math.floor(n * (1 - Fraction(str(inputs.mask_ratio))))
    order = torch.argsort(noise, dim=1)
    assert kept.shape == (b, keep, d) and mask.dtype == x.dtype
    assert torch.equal(mask.sum(1), torch.full((b,), float(n - keep), dtype=x.dtype))
    assert torch.equal(torch.gather(order, 1, ids_restore), torch.arange(n).expand(b, n))  # inverts the shuffle
    for row in range(b):
        assert torch.equal(kept[row], x[row, order[row, :keep]])
        assert torch.equal(mask[row, order[row, :keep]], torch.zeros(keep, dtype=x.dtype))


@given(s.masking_inputs())
def test_unshuffling_the_kept_tokens_rebuilds_x_where_kept(inputs):
    kept, mask, ids_restore = random_masking(inputs.x, inputs.mask_ratio, inputs.noise)
    token = torch.full((1, 1, inputs.x.shape[2]), 99.0, dtype=inputs.x.dtype)
    full = insert_mask_tokens(kept, token, ids_restore)
    removed = mask.bool()
    assert torch.equal(full[~removed], inputs.x[~removed])
    assert (full[removed] == 99).all()


@pytest.mark.parametrize("n, ratio, keep", [(10, 0.9, 1), (10, 0.7, 3), (4, 0.75, 1), (3, 0.999999, 0), (7, 0.0, 7)])
def test_keep_count_uses_exact_decimals(n, ratio, keep):
    kept, mask, _ = random_masking(torch.zeros(1, n, 2), ratio)
    assert kept.shape[1] == keep and mask.sum() == n - keep
    assert int(10 * (1 - 0.9)) == 0  # the float version MAE publishes would keep nothing


def test_every_sample_gets_its_own_shuffle():
    torch.manual_seed(0)
    _, mask, _ = random_masking(torch.zeros(8, 16, 1), 0.5)
    assert len({tuple(row.tolist()) for row in mask}) > 1


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_ratios_outside_zero_one_are_refused(ratio):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        random_masking(torch.zeros(1, 4, 2), ratio)


def _loss_by_definition(pred, target, mask, norm):
    if norm:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(-1)
    removed = mask.sum()
    return (per_patch * mask).sum() / removed if removed > 0 else torch.zeros((), dtype=pred.dtype)


@given(s.loss_inputs())
def test_mae_loss_averages_over_removed_patches_of_the_batch(inputs):
    loss = mae_loss(inputs.pred, inputs.target, inputs.mask, inputs.norm_pix_loss)
    expected = _loss_by_definition(inputs.pred, inputs.target, inputs.mask, inputs.norm_pix_loss)
    assert loss.shape == () and loss.dtype == inputs.pred.dtype
    assert torch.allclose(loss, expected.to(loss.dtype), atol=1e-5)


def test_mae_loss_ignores_kept_patches_and_is_not_a_mean_of_sample_means():
    target = torch.zeros(2, 3, 4)
    pred = torch.ones(2, 3, 4)
    mask = torch.tensor([[1.0, 0, 0], [1.0, 1, 1]])
    changed = pred.clone()
    changed[0, 1:] = 100  # kept patches
    assert mae_loss(pred, target, mask) == mae_loss(changed, target, mask) == 1
    pred[1] = 2  # per-patch errors: sample 0 -> 1, sample 1 -> 4 (three patches)
    assert mae_loss(pred, target, mask).item() == pytest.approx((1 + 3 * 4) / 4)


def test_mae_loss_is_zero_when_nothing_is_removed():
    loss = mae_loss(torch.ones(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2))
    assert loss.item() == 0 and torch.isfinite(loss)
