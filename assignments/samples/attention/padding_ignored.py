"""MultiHeadAttention ignores key_padding_mask: queries attend to padding tokens."""
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
        q = self.q_proj(query).view(B, Lq, H, E // H).transpose(1, 2)
        k = self.k_proj(key).view(B, Lk, H, E // H).transpose(1, 2)
        v = self.v_proj(value).view(B, Lk, H, E // H).transpose(1, 2)
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask, is_causal)
        return self.out_proj(out.transpose(1, 2).reshape(B, Lq, E)), weights
