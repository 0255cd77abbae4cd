"""Reference: masked-autoencoder masking (Discussion 11 Q2(g); fine-tuning review Q1(a)).

MAE's `mask` marks REMOVED patches with 1 (as in the MAE paper's code): it is a
loss weight, not an attention mask, and the opposite of the attention convention.
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor


def random_masking(x: Tensor, mask_ratio: float, noise: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """x (B, N, D) -> x_kept (B, len_keep, D), mask (B, N) with 1 = removed, ids_restore (B, N).

    Each sample is shuffled by argsort(noise) on its own; the first len_keep shuffled patches are kept.
    """
    if not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if x.dim() != 3:
        raise ValueError(f"x must have shape (B, N, D), got {tuple(x.shape)}")
    B, N, D = x.shape
    # Exact decimal arithmetic: int(N * (1 - r)) in floats keeps 0 patches for N=10, r=0.9.
    len_keep = math.floor(N * (1 - Fraction(str(mask_ratio))))
    if noise is None:
        noise = torch.rand(B, N, device=x.device)  # (B, N)
    elif noise.shape != (B, N):
        raise ValueError(f"noise must have shape (B, N) = {(B, N)}, got {tuple(noise.shape)}")
    ids_shuffle = torch.argsort(noise, dim=1)  # (B, N): small noise first, i.e. kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # (B, N): where each original patch went
    ids_keep = ids_shuffle[:, :len_keep]  # (B, len_keep)
    x_kept = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, D))  # (B, len_keep, D)
    mask = torch.ones(B, N, dtype=x.dtype, device=x.device)  # (B, N), in shuffled order
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # (B, N), back in the original order
    return x_kept, mask, ids_restore


def insert_mask_tokens(x_kept: Tensor, mask_token: Tensor, ids_restore: Tensor) -> Tensor:
    """x_kept (B, len_keep, D), mask_token (1, 1, D), ids_restore (B, N) -> (B, N, D) in the original patch order."""
    B, len_keep, D = x_kept.shape
    N = ids_restore.shape[1]
    if mask_token.shape != (1, 1, D):
        raise ValueError(f"mask_token must have shape (1, 1, {D}), got {tuple(mask_token.shape)}")
    if len_keep > N:
        raise ValueError(f"x_kept has {len_keep} patches but ids_restore describes only {N}")
    fill = mask_token.to(x_kept.dtype).expand(B, N - len_keep, D)  # (B, N - len_keep, D)
    shuffled = torch.cat([x_kept, fill], dim=1)  # (B, N, D), in shuffled order
    return torch.gather(shuffled, 1, ids_restore[..., None].expand(-1, -1, D))  # (B, N, D)


def mae_loss(pred: Tensor, target: Tensor, mask: Tensor, norm_pix_loss: bool = False) -> Tensor:
    """pred, target (B, N, P*P*C), mask (B, N) with 1 = removed -> scalar: mean squared error per patch,
    summed over every removed patch of the batch and divided by their number (0 if none is removed)."""
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must match and mask "
                         f"{tuple(mask.shape)} must be their first two dimensions")
    if norm_pix_loss:
        if target.shape[-1] < 2:
            raise ValueError("norm_pix_loss needs at least 2 values per patch to normalise")
        mean = target.mean(dim=-1, keepdim=True)  # (B, N, 1)
        var = target.var(dim=-1, keepdim=True)  # (B, N, 1), unbiased as in MAE
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, N)
    removed = mask.sum()
    total = (per_patch * mask).sum()
    return torch.where(removed > 0, total / removed.clamp_min(1), torch.zeros_like(total))
