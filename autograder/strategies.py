"""Hypothesis strategies for every assignment, in one module (minitorch style).

Shapes are small (most sizes 1..6) and include 1 and odd sizes, so examples
are cheap and a shrunk counterexample is readable. Tensor values come from a
drawn seed through a local generator and are rounded to multiples of 1/8: the
seed shrinks towards 0 and the printed values stay short.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

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


# --- positional ------------------------------------------------------------------------------------

@dataclass
class RelativeBiasInputs:
    """A bias table (num_heads, 2*max_len - 1) and query/key lengths up to max_len."""

    table: torch.Tensor
    q_len: int
    k_len: int


@st.composite
def relative_bias_inputs(draw, dtype: torch.dtype | None = None) -> RelativeBiasInputs:
    """A table for 1-3 heads and max_len 1-6, with q_len and k_len in 1..max_len (often different)."""
    heads, max_len = draw(dims(1, 3)), draw(dims(1, 6))
    table = values((heads, 2 * max_len - 1), draw(seeds()), dtype or draw(dtypes()))
    return RelativeBiasInputs(table, draw(dims(1, max_len)), draw(dims(1, max_len)))


@dataclass
class RotaryInputs:
    """Vectors x (..., D) with D even and integer positions broadcasting to x.shape[:-1]."""

    x: torch.Tensor
    positions: torch.Tensor


@st.composite
def rotary_inputs(draw, dtype: torch.dtype | None = None) -> RotaryInputs:
    """x of shape (B, T, D) or (T, D) with D in 2..8 even; positions (T,) or (B, T), from 0 to 50."""
    dtype = dtype or draw(dtypes())
    t, d = draw(dims(1, 5)), 2 * draw(dims(1, 4))
    batch = (draw(dims(1, 3)),) if draw(st.booleans()) else ()
    seed = draw(seeds())
    x = values((*batch, t, d), seed, dtype)
    shape = (*batch, t) if batch and draw(st.booleans()) else (t,)
    positions = torch.randint(0, 51, shape, generator=torch.Generator().manual_seed(seed + 1))
    return RotaryInputs(x, positions)


# --- vit ---------------------------------------------------------------------------------------------

@dataclass
class ImageInputs:
    """A batch of images (B, C, H, W) whose sides the patch size divides."""

    images: torch.Tensor
    patch_size: int


@st.composite
def image_inputs(draw, dtype: torch.dtype | None = None) -> ImageInputs:
    """Images with 1-3 channels, a patch size of 1-4 and 1-3 patches along each side (non-square included)."""
    p = draw(dims(1, 4))
    c, b = draw(dims(1, 3)), draw(dims(1, 2))
    h, w = p * draw(dims(1, 3)), p * draw(dims(1, 3))
    return ImageInputs(values((b, c, h, w), draw(seeds()), dtype or draw(dtypes())), p)


# --- mae ---------------------------------------------------------------------------------------------

# Ratios with at most six decimals, including the ones where float rounding bites (N=10, r=0.9).
MASK_RATIOS = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.9, 0.6, 0.3, 0.7]),
                        st.integers(0, 999_999).map(lambda k: k / 1_000_000))


@dataclass
class MaskingInputs:
    """Patches x (B, N, D), a mask ratio and noise (B, N) with distinct values in each row."""

    x: torch.Tensor
    mask_ratio: float
    noise: torch.Tensor


def boundary_ratios(n: int) -> list[float]:
    """Ratios r (at most six decimals) that make N * (1 - r) a whole number: float arithmetic rounds some of
    these just below it, which is the bug the exact rule exists for (N=10, r=0.9)."""
    return [float(1 - Fraction(j, n)) for j in range(1, n) if 10**6 % Fraction(j, n).denominator == 0]


@st.composite
def masking_inputs(draw, dtype: torch.dtype | None = None) -> MaskingInputs:
    """B 1-3, N 1-12 (10 often), D 1-4; ratios often on a keep-count boundary; the noise is a random
    permutation scaled to [0, 1), so no ties."""
    b, n, d = draw(dims(1, 3)), draw(st.one_of(st.just(10), dims(1, 12))), draw(dims(1, 4))
    boundaries = boundary_ratios(n)
    ratio = draw(st.sampled_from(boundaries) if boundaries and draw(st.booleans()) else MASK_RATIOS)
    seed = draw(seeds())
    generator = torch.Generator().manual_seed(seed + 1)
    noise = torch.stack([torch.randperm(n, generator=generator) for _ in range(b)]).double() / n
    return MaskingInputs(values((b, n, d), seed, dtype or draw(dtypes())), ratio, noise)


@dataclass
class LossInputs:
    """pred and target patches (B, N, K) and a 0/1 mask (B, N) of removed patches."""

    pred: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    norm_pix_loss: bool


@st.composite
def loss_inputs(draw, dtype: torch.dtype | None = None) -> LossInputs:
    """Sometimes nothing is removed, sometimes everything; K >= 2 when norm_pix_loss."""
    dtype = dtype or draw(dtypes())
    norm = draw(st.booleans())
    b, n, k = draw(dims(1, 3)), draw(dims(1, 6)), draw(dims(2 if norm else 1, 6))
    seed = draw(seeds())
    mask = _bools((b, n), seed + 2, keep=draw(st.sampled_from([0.0, 0.5, 1.0]))).to(dtype)
    return LossInputs(values((b, n, k), seed, dtype), values((b, n, k), seed + 1, dtype), mask, norm)


# --- finetune ----------------------------------------------------------------------------------------

@dataclass
class HiddenInputs:
    """Encoder output hidden (B, T, D) and an attention_mask (B, T) with 1 = real token."""

    hidden: torch.Tensor
    attention_mask: torch.Tensor


@st.composite
def hidden_inputs(draw, dtype: torch.dtype | None = None) -> HiddenInputs:
    """Right-padded rows of random lengths 0..T (a row may be all padding); the mask is int64 like a tokenizer's."""
    b, t, d = draw(dims(1, 3)), draw(dims(1, 6)), draw(dims(1, 5))
    seed = draw(seeds())
    lengths = torch.randint(0, t + 1, (b,), generator=torch.Generator().manual_seed(seed + 1))
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    return HiddenInputs(values((b, t, d), seed, dtype or draw(dtypes())), mask)
