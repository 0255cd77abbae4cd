"""Hypothesis strategies for every assignment, in one module (minitorch style).

Shapes are small (most sizes 1..6) and include 1 and odd sizes, so examples
are cheap and a shrunk counterexample is readable. Tensor values come from a
drawn seed through a local generator and are rounded to multiples of 1/8: the
seed shrinks towards 0 and the printed values stay short.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

FLOAT_DTYPES = (torch.float32, torch.float64)


def seeds() -> st.SearchStrategy[int]:
    """A seed for tensor values; shrinks towards 0."""
    return st.integers(0, 2**16)


def dims(low: int = 1, high: int = 6) -> st.SearchStrategy[int]:
    """One dimension size."""
    return st.integers(low, high)


def dtypes() -> st.SearchStrategy[torch.dtype]:
    """float32 or float64."""
    return st.sampled_from(FLOAT_DTYPES)


def values(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float32, scale: float = 1.0) -> torch.Tensor:
    """Seeded values of `shape`, rounded to multiples of 1/8 (times `scale`)."""
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(shape, generator=generator, dtype=torch.float64) * scale
    return (torch.round(raw * 8) / 8).to(dtype)


def _bools(shape: tuple[int, ...], seed: int, keep: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) < keep


@dataclass
class AttentionInputs:
    """Arguments of scaled_dot_product_attention."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    attn_mask: torch.Tensor | None
    is_causal: bool
    seed: int


@st.composite
def attention_inputs(draw, dtype: torch.dtype | None = None) -> AttentionInputs:
    """q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev) with 0-2 batch dims, Lq != Lk allowed, and every mask form:
    none, bool or float, full or broadcast ((Lq, Lk), (1, .., Lq, Lk)), rows with no allowed key, with or without
    is_causal."""
    dtype = dtype or draw(dtypes())
    batch = tuple(draw(st.lists(dims(1, 3), max_size=2)))
    lq, lk, e, ev = draw(dims()), draw(dims()), draw(dims(1, 5)), draw(dims(1, 5))
    seed = draw(seeds())
    q = values((*batch, lq, e), seed, dtype)
    k = values((*batch, lk, e), seed + 1, dtype)
    v = values((*batch, lk, ev), seed + 2, dtype)
    kind = draw(st.sampled_from(["none", "bool", "float"]))
    # A mask broadcasts *to* the scores' shape, so it never has more leading dimensions than q.
    shapes = [(*batch, lq, lk), (lq, lk)] + ([(1,) * len(batch) + (lq, lk)] if batch else [])
    mask_shape = draw(st.sampled_from(shapes))
    mask = None
    if kind == "bool":
        mask = _bools(mask_shape, seed + 3, keep=draw(st.sampled_from([0.0, 0.5, 0.8, 1.0])))
    elif kind == "float":
        mask = values(mask_shape, seed + 3, dtype)
        if draw(st.booleans()):  # a float mask can also forbid keys outright
            mask = mask.masked_fill(~_bools(mask_shape, seed + 4, keep=0.6), float("-inf"))
    return AttentionInputs(q, k, v, mask, draw(st.booleans()), seed)


def attention_bad_mask_args() -> tuple[torch.Tensor, ...]:
    """(q, k, v, attn_mask) with an integer attn_mask, which the contract refuses."""
    q = values((2, 3), 0)
    return q, q, q, torch.ones(2, 2, dtype=torch.int64)


@dataclass
class MHAInputs:
    """Constructor and forward arguments of MultiHeadAttention (key is query for self-attention)."""

    embed_dim: int
    num_heads: int
    bias: bool
    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    attn_mask: torch.Tensor | None
    key_padding_mask: torch.Tensor | None
    is_causal: bool
    seed: int


@st.composite
def mha_inputs(draw, dtype: torch.dtype | None = None) -> MHAInputs:
    """Self- or cross-attention inputs (B, L, E) with E = heads * head size, optional (Lq, Lk) attn_mask
    (bool or float), key_padding_mask (B, Lk) with some padded keys, and is_causal."""
    dtype = dtype or draw(dtypes())
    heads, head_size = draw(dims(1, 3)), draw(dims(1, 4))
    embed_dim = heads * head_size
    b, lq = draw(dims(1, 3)), draw(dims(1, 5))
    seed = draw(seeds())
    query = values((b, lq, embed_dim), seed, dtype)
    if draw(st.booleans()):
        key = value = query
        lk = lq
    else:
        lk = draw(dims(1, 5))
        key = values((b, lk, embed_dim), seed + 1, dtype)
        value = values((b, lk, embed_dim), seed + 2, dtype)
    kind = draw(st.sampled_from(["none", "bool", "float"]))
    attn_mask = None
    if kind == "bool":
        attn_mask = _bools((lq, lk), seed + 3, keep=0.7)
    elif kind == "float":
        attn_mask = values((lq, lk), seed + 3, dtype)
    padding = _bools((b, lk), seed + 4, keep=0.7) if draw(st.booleans()) else None
    return MHAInputs(embed_dim, heads, draw(st.booleans()), query, key, value, attn_mask, padding,
                     draw(st.booleans()), seed)
