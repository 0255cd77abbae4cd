"""Correct: argsort and gather throughout; the keep count with Fraction; the loss with torch.where."""
import math
from fractions import Fraction

import torch

EXPECTED = {}


def random_masking(x, mask_ratio, noise=None):
    if not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    b, n, d = x.shape
    len_keep = math.floor(n * (1 - Fraction(str(mask_ratio))))
    if noise is None:
        noise = torch.rand(b, n, device=x.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(b, n, dtype=x.dtype, device=x.device)
    mask[:, :len_keep] = 0
    return x_kept, torch.gather(mask, 1, ids_restore), ids_restore


def insert_mask_tokens(x_kept, mask_token, ids_restore):
    b, kept, d = x_kept.shape
    n = ids_restore.shape[1]
    tokens = mask_token.expand(b, n - kept, d)
    full = torch.cat([x_kept, tokens], dim=1)
    return torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))


def mae_loss(pred, target, mask, norm_pix_loss=False):
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    removed = mask.sum()
    return torch.where(removed > 0, (loss * mask).sum() / removed.clamp(min=1), torch.zeros_like(removed))
