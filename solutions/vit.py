"""Reference: ViT patch embedding (Discussion 11, Q2).

Patches are taken in row-major order over the grid; inside a patch the vector
is ordered (row p, column q, channel c), as in MAE's einsum 'nchpwq->nhwpqc'.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """images (B, C, H, W) -> patches (B, N, P*P*C) with N = (H/P)*(W/P), each patch flattened as (p, q, c)."""
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    B, C, H, W = images.shape
    P = patch_size
    if P <= 0 or H % P or W % P:
        raise ValueError(f"patch_size {P} must be positive and divide the image size {H}x{W}")
    h, w = H // P, W // P
    x = images.reshape(B, C, h, P, w, P)  # (B, C, h, p, w, q)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, q, C)
    return x.reshape(B, h * w, P * P * C)  # (B, N, P*P*C)


def unpatchify(patches: Tensor, patch_size: int, image_size: int | tuple[int, int], channels: int) -> Tensor:
    """patches (B, N, P*P*C) -> images (B, C, H, W); the exact inverse of patchify."""
    H, W = (image_size, image_size) if isinstance(image_size, int) else image_size
    P = patch_size
    if P <= 0 or H % P or W % P:
        raise ValueError(f"patch_size {P} must be positive and divide the image size {H}x{W}")
    h, w = H // P, W // P
    B, N, D = patches.shape
    if N != h * w or D != P * P * channels:
        raise ValueError(f"patches of shape {tuple(patches.shape)} do not fit a {H}x{W} image with {channels} "
                         f"channels and patch size {P} (expected (B, {h * w}, {P * P * channels}))")
    x = patches.reshape(B, h, w, P, P, channels)  # (B, h, w, p, q, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, q)
    return x.reshape(B, channels, H, W)  # (B, C, H, W)


class PatchEmbedding(nn.Module):
    """images (B, C, H, W) -> tokens (B, N + 1, D): [CLS] then one projected patch per grid cell, plus positions."""

    def __init__(self, image_size: int | tuple[int, int], patch_size: int, in_channels: int, embed_dim: int):
        super().__init__()
        H, W = (image_size, image_size) if isinstance(image_size, int) else image_size
        if patch_size <= 0 or H % patch_size or W % patch_size:
            raise ValueError(f"patch_size {patch_size} must be positive and divide the image size {H}x{W}")
        self.patch_size = patch_size
        num_patches = (H // patch_size) * (W // patch_size)
        self.proj = nn.Linear(patch_size * patch_size * in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # Learned absolute positions, one per patch plus one for [CLS]; small random start as in ViT.
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, embed_dim) * 0.02)

    def forward(self, images: Tensor) -> Tensor:
        """images (B, C, H, W) -> (B, N + 1, D)."""
        tokens = self.proj(patchify(images, self.patch_size))  # (B, N, D)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed  # (B, N + 1, D)
