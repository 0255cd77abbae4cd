"""Wrong: noise drawn from a fixed seed when none is given, mask tokens put in front of the kept tokens, and a
mean of per-sample means."""
import math
from fractions import Fraction

import torch

EXPECTED = {"random_masking": ["noise_none"],
            "insert_mask_tokens": ["core", "gradient"],
            "mae_loss": ["core", "norm_pix_loss", "gradient"]}


def random_masking(x, mask_ratio, noise=None):
    if not 0 <= mask_ratio < 1:
        raise ValueError("mask_ratio must be in [0, 1)")
    b, n, d = x.shape
    len_keep = math.floor(n * (1 - Fraction(str(mask_ratio))))
    if noise is None:
        noise = torch.rand(b, n, generator=torch.Generator().manual_seed(0)).to(x.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x_kept = torch.gather(x, 1, ids_shuffle[:, :len_keep, None].expand(-1, -1, d))
    mask = torch.ones(b, n, dtype=x.dtype, device=x.device)
    mask[:, :len_keep] = 0
    return x_kept, torch.gather(mask, 1, ids_restore), ids_restore


def insert_mask_tokens(x_kept, mask_token, ids_restore):
    b, kept, d = x_kept.shape
    tokens = mask_token.expand(b, ids_restore.shape[1] - kept, d)
    full = torch.cat([tokens, x_kept], dim=1)
    return torch.gather(full, 1, ids_restore[..., None].expand(-1, -1, d))


def mae_loss(pred, target, mask, norm_pix_loss=False):
    if norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(-1)
    per_sample = (per_patch * mask).sum(1) / mask.sum(1).clamp_min(1)
    return per_sample.mean()
