"""Wrong, as tutorials write it: a float 0/1 causal mask, -1e9 masking that averages every value on a row with
no allowed key, and a multi-head attention that ignores key_padding_mask."""
import math

import torch
import torch.nn as nn

EXPECTED = {"causal_mask": ["dtype_device"],
            "scaled_dot_product_attention": ["empty_rows"],
            "MultiHeadAttention": ["key_padding_mask", "masks_together", "empty_rows"]}


def causal_mask(seq_len, *, device=None):
    return torch.tril(torch.ones(seq_len, seq_len, device=device))


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
    if attn_mask is not None and attn_mask.dtype not in (torch.bool, torch.float16, torch.bfloat16, torch.float32,
                                                         torch.float64):
        raise ValueError("bad mask dtype")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if is_causal:
        scores = scores.masked_fill(~torch.ones_like(scores, dtype=torch.bool).tril(), -1e9)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, -1e9) if attn_mask.dtype == torch.bool else scores + attn_mask
    weights = torch.softmax(scores, dim=-1)
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
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask, is_causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, e)), weights
