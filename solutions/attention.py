"""Reference: causal masking and multi-head attention (Discussion 10; Lecture 18 notes).

Mask convention: True means "may attend"; a floating mask is added to the scores.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor


def causal_mask(seq_len: int, *, device: torch.device | str | None = None) -> Tensor:
    """(seq_len, seq_len) bool; True where query i may attend to key j, i.e. j <= i."""
    if seq_len < 0:
        raise ValueError(f"seq_len must be >= 0, got {seq_len}")
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()  # (T, T)


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
                                 is_causal: bool = False) -> tuple[Tensor, Tensor]:
    """q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev) -> output (..., Lq, Ev), weights (..., Lq, Lk).

    attn_mask: bool (True = may attend) or float (added to the scores), broadcastable to (..., Lq, Lk).
    A query with no allowed key gets all-zero weights and output, never NaN.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share their last dimension E, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of keys, got {k.shape[-2]} and {v.shape[-2]}")
    q_len, k_len = q.shape[-2], k.shape[-2]
    # Half precision rounds the exponentials too coarsely: score and normalise in float32 at least.
    work = torch.promote_types(q.dtype, torch.float32)
    scores = q.to(work) @ k.to(work).transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Lq, Lk)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)  # (..., Lq, Lk)
        elif attn_mask.is_floating_point():
            scores = scores + attn_mask.to(work)  # (..., Lq, Lk)
        else:
            raise ValueError(f"attn_mask must be bool (True = may attend) or floating (added to the scores), "
                             f"got dtype {attn_mask.dtype}")
    if is_causal:
        # Aligned top-left as in torch's SDPA: key j is allowed for query i iff j <= i.
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=q.device).tril()  # (Lq, Lk)
        scores = scores.masked_fill(~allowed, -math.inf)  # (..., Lq, Lk), -inf where masked
    # A row that is -inf everywhere would give 0/0: shift it by 0 instead of its -inf maximum, so exp gives zeros.
    row_max = scores.amax(dim=-1, keepdim=True)  # (..., Lq, 1)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    exp = torch.exp(scores - row_max)  # (..., Lq, Lk)
    total = exp.sum(dim=-1, keepdim=True)  # (..., Lq, 1)
    weights = exp / torch.where(total > 0, total, torch.ones_like(total))  # (..., Lq, Lk)
    output = weights @ v.to(work)  # (..., Lq, Ev)
    return output.to(q.dtype), weights.to(q.dtype)


class MultiHeadAttention(nn.Module):
    """(B, Lq, E) queries attend to (B, Lk, E) keys/values with num_heads heads of size E / num_heads."""

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True):
        super().__init__()
        if num_heads <= 0 or embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}) "
                             "so every head gets the same number of features")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                key_padding_mask: Tensor | None = None, is_causal: bool = False) -> tuple[Tensor, Tensor]:
        """query (B, Lq, E), key/value (B, Lk, E) -> output (B, Lq, E), per-head weights (B, H, Lq, Lk).

        attn_mask broadcasts to (B, H, Lq, Lk); key_padding_mask (B, Lk) is True for real tokens.
        """
        B, Lq, E = query.shape
        Lk = key.shape[1]
        H, hs = self.num_heads, E // self.num_heads
        # Head h owns features [h*hs, (h+1)*hs) of each projection.
        q = self.q_proj(query).view(B, Lq, H, hs).transpose(1, 2)  # (B, H, Lq, hs)
        k = self.k_proj(key).view(B, Lk, H, hs).transpose(1, 2)  # (B, H, Lk, hs)
        v = self.v_proj(value).view(B, Lk, H, hs).transpose(1, 2)  # (B, H, Lk, hs)
        mask = attn_mask
        if key_padding_mask is not None:
            if key_padding_mask.dtype != torch.bool:
                raise ValueError(f"key_padding_mask must be bool (True = real token), got {key_padding_mask.dtype}")
            padding = key_padding_mask[:, None, None, :]  # (B, 1, 1, Lk)
            if mask is None or mask.dtype == torch.bool:
                mask = padding if mask is None else mask & padding
            else:
                mask = mask + torch.zeros(padding.shape, dtype=mask.dtype, device=mask.device).masked_fill(
                    ~padding, -math.inf)  # broadcasts to (B, H, Lq, Lk)
        out, weights = scaled_dot_product_attention(q, k, v, mask, is_causal)  # (B, H, Lq, hs), (B, H, Lq, Lk)
        out = out.transpose(1, 2).reshape(B, Lq, E)  # (B, Lq, E)
        return self.out_proj(out), weights
