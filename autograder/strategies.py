"""Hypothesis strategies for every assignment, in one module (minitorch style).

Shapes are small (most sizes 1..6) and include 1 and odd sizes, so examples
are cheap and a shrunk counterexample is readable. Tensor values come from a
drawn seed through a local generator and are rounded to multiples of 1/8: the
seed shrinks towards 0 and the printed values stay short.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
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


def _rows(mask: torch.Tensor, rows: str, row: int) -> torch.Tensor:
    """Make every query row keep an allowed key ("live": key 0, which is_causal also allows), or hide every key
    from query `row` ("empty"); "any" leaves the mask as drawn. Works on bool and float (additive) masks."""
    mask = mask.clone()
    if rows == "live":
        if mask.dtype == torch.bool:
            mask[..., :, 0] = True
        else:
            mask[..., :, 0] = torch.nan_to_num(mask[..., :, 0], neginf=0.0)
    elif rows == "empty":
        mask[..., row, :] = False if mask.dtype == torch.bool else float("-inf")
    return mask


@st.composite
def attention_inputs(draw, dtype: torch.dtype | None = None, *, masks: tuple[str, ...] = ("none", "bool", "float"),
                     causal: bool | None = None, rows: str = "any") -> AttentionInputs:
    """q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev) with 0-2 batch dims, Lq != Lk allowed, and the mask forms in
    `masks`: none, bool or float, full or broadcast ((Lq, Lk), (1, .., Lq, Lk)). `causal` fixes is_causal (None:
    drawn). `rows`: "live" gives every query an allowed key, "empty" gives one query none, "any" draws freely."""
    dtype = dtype or draw(dtypes())
    batch = tuple(draw(st.lists(dims(1, 3), max_size=2)))
    lq, lk, e, ev = draw(dims()), draw(dims()), draw(dims(1, 5)), draw(dims(1, 5))
    seed = draw(seeds())
    q = values((*batch, lq, e), seed, dtype)
    k = values((*batch, lk, e), seed + 1, dtype)
    v = values((*batch, lk, ev), seed + 2, dtype)
    kind = draw(st.sampled_from(masks))
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
    if mask is not None:
        mask = _rows(mask, rows, draw(st.integers(0, lq - 1)))
    return AttentionInputs(q, k, v, mask, draw(st.booleans()) if causal is None else causal, seed)


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
def mha_inputs(draw, dtype: torch.dtype | None = None, *, masks: tuple[str, ...] = ("none", "bool", "float"),
               padding: bool | None = None, causal: bool | None = None, rows: str = "any") -> MHAInputs:
    """Self- or cross-attention inputs (B, L, E) with E = heads * head size, an (Lq, Lk) attn_mask of a kind in
    `masks`, key_padding_mask (B, Lk) with some padded keys (`padding`: None = drawn), and is_causal (None = drawn).
    `rows`: "live" keeps key 0 real and allowed for every query; "empty" pads every key of one batch row;
    "any" draws freely."""
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
    kind = draw(st.sampled_from(masks))
    attn_mask = None
    if kind == "bool":
        attn_mask = _bools((lq, lk), seed + 3, keep=0.7)
    elif kind == "float":
        attn_mask = values((lq, lk), seed + 3, dtype)
    with_padding = draw(st.booleans()) if padding is None else padding
    key_padding = _bools((b, lk), seed + 4, keep=0.7) if with_padding or rows == "empty" else None
    if rows == "live":
        attn_mask = None if attn_mask is None else _rows(attn_mask, "live", 0)
        if key_padding is not None:
            key_padding[:, 0] = True
    elif rows == "empty":
        key_padding[draw(st.integers(0, b - 1))] = False
    return MHAInputs(embed_dim, heads, draw(st.booleans()), query, key, value, attn_mask, key_padding,
                     draw(st.booleans()) if causal is None else causal, seed)


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


def fragile_ratios(n: int) -> list[float]:
    """The boundary ratios of `n` where a float formula for the keep count goes wrong: int(N * (1 - r)) (MAE's
    code) or N - ceil(N * r). These come first, so a few examples find such a bug."""
    return [r for r in boundary_ratios(n)
            if int(n * (1 - r)) != n * (1 - Fraction(str(r))) or n - math.ceil(n * r) != n * (1 - Fraction(str(r)))]


FRAGILE_PAIRS = [(n, r) for n in range(2, 31) for r in fragile_ratios(n)]  # 13 pairs, from (5, 0.8) to (30, 0.8)


def on_a_float_boundary(n: int, ratio: float) -> bool:
    """Whether N * (1 - ratio) is a whole number that float arithmetic may miss: the ratio is not exact in
    binary (0.9, 0.28; not 0.5 or 0.75) and the exact product is an integer."""
    exact = n * (1 - Fraction(str(ratio)))
    return exact.denominator == 1 and Fraction(ratio) != Fraction(str(ratio))


@st.composite
def masking_inputs(draw, dtype: torch.dtype | None = None, *, ratios: str = "any") -> MaskingInputs:
    """B 1-3, D 1-4, noise a random permutation scaled to [0, 1) per row (no ties). `ratios`:
    "ordinary": N 1-12 (10 often), ratios where every way of computing the keep count agrees;
    "boundary": N up to 30, ratios where a float formula for the keep count goes wrong (N=10, r=0.9;
    N=25, r=0.28); "any": N 1-12, either kind."""
    if ratios == "boundary":
        n, ratio = draw(st.sampled_from(FRAGILE_PAIRS))
    else:
        n = draw(st.one_of(st.just(10), dims(1, 12)))
        boundaries = boundary_ratios(n)
        if ratios == "any" and boundaries and draw(st.booleans()):
            ratio = draw(st.sampled_from(boundaries))
        else:
            ratio = draw(MASK_RATIOS.filter(lambda r: ratios == "any" or not on_a_float_boundary(n, r)))
    b, d = draw(dims(1, 3)), draw(dims(1, 4))
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
def loss_inputs(draw, dtype: torch.dtype | None = None, *, norm: bool | None = None,
                removed: str = "any") -> LossInputs:
    """pred, target (B, N, K) and mask (B, N); K >= 2 when norm_pix_loss (`norm`: None = drawn). `removed`:
    "some" removes at least one patch, "none" removes nothing, "any" draws from nothing to everything."""
    dtype = dtype or draw(dtypes())
    norm = draw(st.booleans()) if norm is None else norm
    b, n, k = draw(dims(1, 3)), draw(dims(1, 6)), draw(dims(2 if norm else 1, 6))
    seed = draw(seeds())
    share = 0.0 if removed == "none" else draw(st.sampled_from([0.0, 0.5, 1.0]))
    mask = _bools((b, n), seed + 2, keep=share)
    if removed == "some":
        mask[0, 0] = True
    return LossInputs(values((b, n, k), seed, dtype), values((b, n, k), seed + 1, dtype), mask.to(dtype), norm)


# --- finetune ----------------------------------------------------------------------------------------

@dataclass
class HiddenInputs:
    """Encoder output hidden (B, T, D) and an attention_mask (B, T) with 1 = real token."""

    hidden: torch.Tensor
    attention_mask: torch.Tensor


@st.composite
def hidden_inputs(draw, dtype: torch.dtype | None = None, *, rows: str = "any") -> HiddenInputs:
    """Right-padded rows of random lengths; the mask is int64 like a tokenizer's. `rows`: "live" gives every row
    at least one real token, "empty" makes one row all padding, "any" draws lengths 0..T."""
    b, t, d = draw(dims(1, 3)), draw(dims(1, 6)), draw(dims(1, 5))
    seed = draw(seeds())
    lengths = torch.randint(1 if rows == "live" else 0, t + 1, (b,), generator=torch.Generator().manual_seed(seed + 1))
    if rows == "empty":
        lengths[draw(st.integers(0, b - 1))] = 0
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    return HiddenInputs(values((b, t, d), seed, dtype or draw(dtypes())), mask)
