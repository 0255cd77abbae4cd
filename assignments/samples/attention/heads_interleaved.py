"""MultiHeadAttention splits heads the wrong way: head h takes every H-th feature instead of a contiguous slice."""
import torch
import torch.nn as nn


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
        B, Lq, E = query.shape
        Lk, H = key.shape[1], self.num_heads
        q = self.q_proj(query).view(B, Lq, E // H, H).permute(0, 3, 1, 2)
        k = self.k_proj(key).view(B, Lk, E // H, H).permute(0, 3, 1, 2)
        v = self.v_proj(value).view(B, Lk, E // H, H).permute(0, 3, 1, 2)
        mask = attn_mask
        if key_padding_mask is not None:
            padding = key_padding_mask[:, None, None, :]
            mask = padding if mask is None else mask & padding
        out, weights = scaled_dot_product_attention(q, k, v, mask, is_causal)
        return self.out_proj(out.permute(0, 2, 3, 1).reshape(B, Lq, E)), weights
