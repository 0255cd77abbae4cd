"""Correct: einsum scores, torch.where for masks, rows with no allowed key zeroed with torch.where."""
import math

import torch
import torch.nn as nn

EXPECTED = {}


def causal_mask(seq_len, *, device=None):
    positions = torch.arange(seq_len, device=device)
    return positions[None, :] <= positions[:, None]


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
    if attn_mask is not None and not (attn_mask.dtype == torch.bool or attn_mask.is_floating_point()):
        raise ValueError(f"attn_mask must be bool or floating, got {attn_mask.dtype}")
    scores = torch.einsum("...qe,...ke->...qk", q, k) / math.sqrt(q.shape[-1])
    allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device)
    if is_causal:
        allowed = allowed & torch.ones_like(allowed).tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            allowed = allowed & attn_mask
        else:
            scores = scores + attn_mask
    scores = torch.where(allowed, scores, torch.tensor(float("-inf"), dtype=scores.dtype, device=q.device))
    live = torch.isfinite(scores).any(-1, keepdim=True)
    safe = torch.where(live, scores, torch.zeros_like(scores))
    weights = torch.where(live & torch.isfinite(scores), torch.softmax(safe, -1), torch.zeros_like(scores))
    return torch.einsum("...qk,...kv->...qv", weights, v), weights


class MultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, bias=True):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, query, key, value, attn_mask=None, key_padding_mask=None, is_causal=False):
        b, lq, e = query.shape
        h = self.num_heads

        def heads(x):
            return x.view(b, x.shape[1], h, e // h).transpose(1, 2)

        mask = attn_mask
        if key_padding_mask is not None:
            padding = key_padding_mask[:, None, None, :]
            if mask is None:
                mask = padding
            elif mask.dtype == torch.bool:
                mask = mask & padding
            else:
                mask = mask.masked_fill(~padding, float("-inf"))
        out, weights = scaled_dot_product_attention(heads(self.q_proj(query)), heads(self.k_proj(key)),
                                                    heads(self.v_proj(value)), mask, is_causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, e)), weights
