"""Correct: matmul scores, masked_fill(-inf), softmax then nan_to_num; a module with an extra buffer."""
import math

import torch
import torch.nn as nn

EXPECTED = {}


def causal_mask(seq_len, *, device=None):
    return torch.tril(torch.ones(seq_len, seq_len, device=device)).bool()


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
    if attn_mask is not None and attn_mask.dtype != torch.bool and not torch.is_floating_point(attn_mask):
        raise ValueError("attn_mask has to be a bool or a float tensor")
    lq, lk = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.size(-1)))
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(attn_mask.logical_not(), float("-inf"))
    elif attn_mask is not None:
        scores = scores + attn_mask
    if is_causal:
        future = torch.ones(lq, lk, dtype=torch.bool, device=q.device).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    weights = scores.softmax(dim=-1).nan_to_num(0.0)
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, bias=True):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError("num_heads must divide embed_dim")
        self.h = num_heads
        self.d = embed_dim // num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(embed_dim, embed_dim, bias=bias)
                                                               for _ in range(4))
        self.register_buffer("calls", torch.zeros(()))  # an extra persistent buffer: not part of the contract

    def forward(self, query, key, value, attn_mask=None, key_padding_mask=None, is_causal=False):
        b = query.shape[0]
        q = self.q_proj(query).reshape(b, -1, self.h, self.d).permute(0, 2, 1, 3)
        k = self.k_proj(key).reshape(b, -1, self.h, self.d).permute(0, 2, 1, 3)
        v = self.v_proj(value).reshape(b, -1, self.h, self.d).permute(0, 2, 1, 3)
        lq, lk = q.shape[2], k.shape[2]
        bias = torch.zeros(b, 1, lq, lk, dtype=q.dtype, device=q.device)
        if attn_mask is not None:
            bias = bias.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else bias + attn_mask
        if key_padding_mask is not None:
            bias = bias.masked_fill(~key_padding_mask.bool()[:, None, None, :], float("-inf"))
        out, weights = scaled_dot_product_attention(q, k, v, bias, is_causal)
        return self.out_proj(out.permute(0, 2, 1, 3).reshape(b, lq, self.h * self.d)), weights
