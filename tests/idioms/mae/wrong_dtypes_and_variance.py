"""Wrong: a boolean mask, mask tokens scattered by the shuffle instead of gathered by ids_restore, and
norm_pix_loss with the biased variance."""
import math
from fractions import Fraction

import torch

EXPECTED = {"random_masking": ["dtype_device"],
            "insert_mask_tokens": ["core", "gradient"],
            "mae_loss": ["norm_pix_loss"]}


def random_masking(x, mask_ratio, noise=None):
    if not 0 <= mask_ratio < 1:
        raise ValueError("mask_ratio must be in [0, 1)")
    b, n, d = x.shape
    len_keep = math.floor(n * (1 - Fraction(str(mask_ratio))))
    if noise is None:
        noise = torch.rand(b, n, device=x.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x_kept = torch.gather(x, 1, ids_shuffle[:, :len_keep, None].expand(-1, -1, d))
    mask = ids_restore >= len_keep
    return x_kept, mask, ids_restore


def insert_mask_tokens(x_kept, mask_token, ids_restore):
    b, kept, d = x_kept.shape
    tokens = mask_token.expand(b, ids_restore.shape[1] - kept, d)
    full = torch.cat([x_kept, tokens], dim=1)
    ids_shuffle = torch.argsort(ids_restore, dim=1)
    return torch.gather(full, 1, ids_shuffle[..., None].expand(-1, -1, d))


def mae_loss(pred, target, mask, norm_pix_loss=False):
    if norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, unbiased=False, keepdim=True) + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(-1)
    removed = mask.sum()
    return torch.where(removed > 0, (per_patch * mask).sum() / removed.clamp_min(1), torch.zeros_like(removed))
