"""Wrong: a transposed causal mask, is_causal aligned at the bottom right (key j allowed iff j <= i + Lk - Lq),
and head-averaged attention weights as torch.nn.MultiheadAttention returns by default."""
import math

import torch
import torch.nn as nn

EXPECTED = {"causal_mask": ["core"],
            "scaled_dot_product_attention": ["causal", "causal_with_mask", "empty_rows"],
            "MultiHeadAttention": ["core", "key_padding_mask", "masks_together", "empty_rows"]}


def causal_mask(seq_len, *, device=None):
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).triu()


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
    if attn_mask is not None and not (attn_mask.dtype == torch.bool or attn_mask.is_floating_point()):
        raise ValueError("attn_mask must be bool or float")
    lq, lk = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if is_causal:
        allowed = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(diagonal=lk - lq)
        scores = scores.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, bias=True):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, query, key, value, attn_mask=None, key_padding_mask=None, is_causal=False):
        b, lq, e = query.shape
        h = self.num_heads
        q = self.q_proj(query).view(b, lq, h, e // h).transpose(1, 2)
        k = self.k_proj(key).view(b, -1, h, e // h).transpose(1, 2)
        v = self.v_proj(value).view(b, -1, h, e // h).transpose(1, 2)
        mask = attn_mask
        if key_padding_mask is not None:
            padding = key_padding_mask[:, None, None, :]
            mask = padding if mask is None else (mask & padding if mask.dtype == torch.bool
                                                 else mask.masked_fill(~padding, float("-inf")))
        out, weights = scaled_dot_product_attention(q, k, v, mask, is_causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, e)), weights.mean(dim=1)
