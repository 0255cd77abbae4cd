"""Correct: one sample at a time in loops; the keep count as N - ceil(N * r) in exact fractions; the loss with
einsum."""
import math
from fractions import Fraction

import torch

EXPECTED = {}


def random_masking(x, mask_ratio, noise=None):
    if not (0.0 <= mask_ratio < 1.0):
        raise ValueError("mask_ratio out of range")
    b, n, _ = x.shape
    len_keep = n - math.ceil(n * Fraction(str(mask_ratio)))
    if noise is None:
        noise = torch.rand(b, n, device=x.device)
    kept, masks, restores = [], [], []
    for row in range(b):
        order = torch.argsort(noise[row])
        restore = torch.argsort(order)
        kept.append(x[row, order[:len_keep]])
        mask = torch.ones(n, dtype=x.dtype, device=x.device)
        mask[order[:len_keep]] = 0
        masks.append(mask)
        restores.append(restore)
    return torch.stack(kept), torch.stack(masks), torch.stack(restores)


def insert_mask_tokens(x_kept, mask_token, ids_restore):
    rows = []
    for row in range(x_kept.shape[0]):
        missing = ids_restore.shape[1] - x_kept.shape[1]
        shuffled = torch.cat([x_kept[row], mask_token[0].expand(missing, -1)], dim=0)
        rows.append(shuffled[ids_restore[row]])
    return torch.stack(rows)


def mae_loss(pred, target, mask, norm_pix_loss=False):
    if norm_pix_loss:
        k = target.shape[-1]
        mean = target.sum(-1, keepdim=True) / k
        var = ((target - mean) ** 2).sum(-1, keepdim=True) / (k - 1)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = torch.einsum("bnk,bnk->bn", pred - target, pred - target) / pred.shape[-1]
    return torch.einsum("bn,bn->", per_patch, mask) / mask.sum().clamp_min(1)
