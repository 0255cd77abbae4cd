"""Correct: an additive -1e9 bias with a float32 softmax, rows without an allowed key zeroed separately;
heads in a loop over feature slices."""
import math

import torch
import torch.nn as nn

EXPECTED = {}


def causal_mask(seq_len, *, device=None):
    return ~torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).triu(1)


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
    lq, lk = q.shape[-2], k.shape[-2]
    allowed = torch.ones(lq, lk, dtype=torch.bool, device=q.device)
    bias = torch.zeros(lq, lk, dtype=torch.float32, device=q.device)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            allowed = allowed & attn_mask
        elif attn_mask.is_floating_point():
            allowed = allowed & torch.isfinite(attn_mask)
            bias = bias + torch.nan_to_num(attn_mask.float(), neginf=0.0)
        else:
            raise ValueError("attn_mask must be a boolean or floating point tensor")
    if is_causal:
        allowed = allowed & (torch.arange(lk, device=q.device)[None, :] <= torch.arange(lq, device=q.device)[:, None])
    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1]) + bias
    scores = scores + (~allowed).float() * -1e9
    weights = torch.softmax(scores, dim=-1) * allowed.any(-1, keepdim=True)
    weights = weights.to(q.dtype)
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, bias=True):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError("embed_dim must be a multiple of num_heads")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, query, key, value, attn_mask=None, key_padding_mask=None, is_causal=False):
        size = query.shape[-1] // self.num_heads
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        mask = attn_mask
        if key_padding_mask is not None:
            padded = ~key_padding_mask[:, None, :]  # (B, 1, Lk)
            if mask is None:
                mask = ~padded
            elif mask.dtype == torch.bool:
                mask = mask & ~padded
            else:
                mask = mask.masked_fill(padded, float("-inf"))
        outputs, all_weights = [], []
        for head in range(self.num_heads):
            part = slice(head * size, (head + 1) * size)
            out, weights = scaled_dot_product_attention(q[..., part], k[..., part], v[..., part], mask, is_causal)
            outputs.append(out)
            all_weights.append(weights)
        return self.out_proj(torch.cat(outputs, dim=-1)), torch.stack(all_weights, dim=1)
