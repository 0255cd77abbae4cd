"""Visible checks for the attention assignment, and the reference-free properties the grader reuses.

Each property takes the student's callable and concrete inputs and returns a
`Mismatch` or None. The grader passes proxies that run the student's code in
its sandbox, so a property only calls what it is given and compares results.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from .. import strategies as s
from ..common.compare import Mismatch, compare_tensors
from .core import VisibleCheck, golden_check, gradient_check, register, rejects

MASK_HINT = "True means 'may attend'; the diagonal is allowed: query i sees keys 0..i"
SDPA_HINT = ("softmax(q k^T / sqrt(E) + mask) v; a bool mask keeps True entries, a float mask is added; "
             "masked scores become -inf; a query with no allowed key gets zero weights and zero output")
MHA_HINT = ("project with q_proj/k_proj/v_proj, split features into heads as contiguous slices, attend per "
            "head with every mask (our key_padding_mask: True = real token), merge heads, apply out_proj")


def lower_triangular(causal_mask, seq_len: int) -> Mismatch | None:
    """causal_mask(n) is the bool (n, n) matrix with True where j <= i."""
    expected = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    return compare_tensors(expected, causal_mask(seq_len), f"causal_mask({seq_len})")


def _allowed(inputs: s.AttentionInputs) -> torch.Tensor:
    """Which (query, key) pairs may attend, broadcast to the scores' shape (..., Lq, Lk)."""
    lq, lk = inputs.q.shape[-2], inputs.k.shape[-2]
    allowed = torch.ones(*inputs.q.shape[:-2], lq, lk, dtype=torch.bool)
    if inputs.attn_mask is not None:
        mask = inputs.attn_mask
        allowed = allowed & (mask if mask.dtype == torch.bool else torch.isfinite(mask))
    if inputs.is_causal:
        allowed = allowed & torch.ones(lq, lk, dtype=torch.bool).tril()
    return allowed


def matches_torch_sdpa(sdpa, inputs: s.AttentionInputs) -> Mismatch | None:
    """Agree with F.scaled_dot_product_attention (masks combined first, since torch refuses both at once);
    rows with no allowed key must be all zeros, where torch gives NaN."""
    output, weights = sdpa(inputs.q, inputs.k, inputs.v, inputs.attn_mask, inputs.is_causal)
    allowed = _allowed(inputs)
    bias = torch.zeros(allowed.shape, dtype=inputs.q.dtype).masked_fill(~allowed, -math.inf)
    if inputs.attn_mask is not None and inputs.attn_mask.is_floating_point():
        bias = bias + inputs.attn_mask.masked_fill(~torch.isfinite(inputs.attn_mask), 0)
    expected = F.scaled_dot_product_attention(inputs.q, inputs.k, inputs.v, attn_mask=bias)
    live = allowed.any(-1, keepdim=True)  # (..., Lq, 1)
    expected = torch.where(live, expected, torch.zeros_like(expected)).nan_to_num(0.0)
    mismatch = compare_tensors(expected, output, "output")
    if mismatch:
        return mismatch
    softmax = torch.softmax(inputs.q @ inputs.k.transpose(-2, -1) / math.sqrt(inputs.q.shape[-1]) + bias, dim=-1)
    expected_weights = torch.where(live, softmax, torch.zeros_like(softmax)).nan_to_num(0.0)
    return compare_tensors(expected_weights, weights, "weights")


def causal_prefix_invariance(sdpa, inputs: s.AttentionInputs) -> Mismatch | None:
    """With is_causal and Lq == Lk, changing the last key and value leaves every earlier query's output alone."""
    n = min(inputs.q.shape[-2], inputs.k.shape[-2])
    if n < 2:
        return None
    q, k, v = inputs.q[..., :n, :], inputs.k[..., :n, :], inputs.v[..., :n, :]
    before, _ = sdpa(q, k, v, None, True)
    k2, v2 = k.clone(), v.clone()
    k2[..., -1, :] += 1.0
    v2[..., -1, :] -= 2.0
    after, _ = sdpa(q, k2, v2, None, True)
    return compare_tensors(before[..., :-1, :], after[..., :-1, :],
                           "outputs of earlier positions after changing the last key and value")


def _torch_mha(inputs: s.MHAInputs) -> torch.nn.MultiheadAttention:
    torch.manual_seed(inputs.seed)
    return torch.nn.MultiheadAttention(inputs.embed_dim, inputs.num_heads, bias=inputs.bias,
                                       batch_first=True).to(inputs.query.dtype)


def copy_weights(theirs: torch.nn.MultiheadAttention, ours: torch.nn.Module) -> None:
    """Copy torch's packed in_proj into q_proj/k_proj/v_proj and its out_proj into out_proj."""
    e = theirs.embed_dim
    with torch.no_grad():
        for index, name in enumerate(("q_proj", "k_proj", "v_proj")):
            getattr(ours, name).weight.copy_(theirs.in_proj_weight[index * e:(index + 1) * e])
            if theirs.in_proj_bias is not None:
                getattr(ours, name).bias.copy_(theirs.in_proj_bias[index * e:(index + 1) * e])
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        if theirs.out_proj.bias is not None:
            ours.out_proj.bias.copy_(theirs.out_proj.bias)


def matches_torch_mha(mha_class, inputs: s.MHAInputs) -> Mismatch | None:
    """Agree with torch.nn.MultiheadAttention(batch_first=True) on every query row that has an allowed key."""
    theirs = _torch_mha(inputs)
    ours = mha_class(inputs.embed_dim, inputs.num_heads, inputs.bias).to(inputs.query.dtype)
    copy_weights(theirs, ours)
    lq, lk = inputs.query.shape[1], inputs.key.shape[1]
    allowed = torch.ones(inputs.query.shape[0], 1, lq, lk, dtype=torch.bool)
    if inputs.attn_mask is not None and inputs.attn_mask.dtype == torch.bool:
        allowed = allowed & inputs.attn_mask
    if inputs.key_padding_mask is not None:
        allowed = allowed & inputs.key_padding_mask[:, None, None, :]
    if inputs.is_causal:
        allowed = allowed & torch.ones(lq, lk, dtype=torch.bool).tril()
    float_mask = inputs.attn_mask if inputs.attn_mask is not None and inputs.attn_mask.is_floating_point() else None
    # torch's boolean masks mean the opposite (True = masked out), and its is_causal needs a mask anyway.
    torch_mask = torch.zeros(allowed.shape, dtype=inputs.query.dtype).masked_fill(~allowed, -math.inf)
    if float_mask is not None:
        torch_mask = torch_mask + float_mask
    torch_mask = torch_mask.expand(-1, inputs.num_heads, -1, -1).reshape(-1, lq, lk)
    with torch.no_grad():
        expected, expected_weights = theirs(inputs.query, inputs.key, inputs.value, attn_mask=torch_mask,
                                            average_attn_weights=False)
        output, weights = ours(inputs.query, inputs.key, inputs.value, attn_mask=inputs.attn_mask,
                               key_padding_mask=inputs.key_padding_mask, is_causal=inputs.is_causal)
    live = allowed.any(-1)[:, 0, :, None]  # (B, Lq, 1): the rows torch defines
    return (compare_live_rows(expected, output, live, "output")
            or compare_live_rows(expected_weights, weights, live[:, None], "weights (one per head)"))


def compare_live_rows(expected: torch.Tensor, received: object, live: torch.Tensor, what: str) -> Mismatch | None:
    """Compare only where `live` is True (torch gives NaN on rows with no allowed key)."""
    if type(received) is not torch.Tensor or received.shape != expected.shape or received.dtype != expected.dtype:
        return compare_tensors(expected, received, what)
    zero = torch.zeros((), dtype=expected.dtype)
    return compare_tensors(torch.where(live, expected, zero), torch.where(live, received.detach(), zero), what)


def self_attention_is_permutation_equivariant(mha_class, inputs: s.MHAInputs) -> Mismatch | None:
    """Without masks, permuting the tokens of x permutes the rows of mha(x, x, x) the same way."""
    torch.manual_seed(inputs.seed)
    mha = mha_class(inputs.embed_dim, inputs.num_heads, inputs.bias).to(inputs.query.dtype)
    x = inputs.query
    order = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(inputs.seed))
    with torch.no_grad():
        out, _ = mha(x, x, x)
        permuted, _ = mha(x[:, order], x[:, order], x[:, order])
    return compare_tensors(out[:, order], permuted, "output for permuted tokens")


def rejects_indivisible_heads(mha_class, sizes: tuple[int, int]) -> Mismatch | None:
    embed_dim, num_heads = sizes
    try:
        mha_class(embed_dim, num_heads)
    except ValueError:
        return None
    return Mismatch("MultiHeadAttention", f"accepted embed_dim={embed_dim}, num_heads={num_heads} "
                                          "without raising ValueError")


def _golden_attention(seed: int, lq: int, lk: int, masked: bool) -> tuple[tuple, dict]:
    q, k, v = s.values((2, lq, 3), seed), s.values((2, lk, 3), seed + 1), s.values((2, lk, 2), seed + 2)
    mask = torch.ones(lq, lk, dtype=torch.bool).triu(1) if masked else None
    return (q, k, v), {"attn_mask": mask, "is_causal": False}


GOLDEN_CALLS = {
    "causal_mask": [((1,), {}), ((4,), {})],
    "scaled_dot_product_attention": [_golden_attention(1, 3, 3, False), _golden_attention(2, 2, 4, True)],
}

def leaves_inputs_alone(sdpa, inputs: s.AttentionInputs) -> Mismatch | None:
    """q, k, v and the mask are the same after the call."""
    before = [t.clone() for t in (inputs.q, inputs.k, inputs.v, inputs.attn_mask) if t is not None]
    sdpa(inputs.q, inputs.k, inputs.v, inputs.attn_mask, inputs.is_causal)
    after = [t for t in (inputs.q, inputs.k, inputs.v, inputs.attn_mask) if t is not None]
    for name, old, new in zip(("q", "k", "v", "attn_mask"), before, after):
        if not torch.equal(old.nan_to_num(), new.nan_to_num()):
            return Mismatch("scaled_dot_product_attention", f"modified {name} in place")
    return None


def padded_rows_get_zero_weights(mha_class, inputs: s.MHAInputs) -> Mismatch | None:
    """A batch row whose keys are all padding gets all-zero weights in every head."""
    torch.manual_seed(inputs.seed)
    mha = mha_class(inputs.embed_dim, inputs.num_heads, inputs.bias).to(inputs.query.dtype)
    padding = inputs.key_padding_mask.clone()
    padding[0] = False
    with torch.no_grad():
        _, weights = mha(inputs.query, inputs.key, inputs.value, key_padding_mask=padding)
    if type(weights) is not torch.Tensor or weights.dim() != 4:
        return compare_tensors(torch.zeros(1), weights, "weights")
    return compare_tensors(torch.zeros_like(weights[0]), weights[0], "weights of the fully padded batch row 0")


def _sdpa_gradient_call(inputs: s.AttentionInputs) -> tuple[tuple, dict, tuple[int, ...]]:
    return (inputs.q, inputs.k, inputs.v), {"attn_mask": inputs.attn_mask, "is_causal": inputs.is_causal}, (0, 1, 2)


LIVE = {"masks": ("none", "bool"), "causal": False, "rows": "live"}

register("causal_mask",
         VisibleCheck("a bool matrix, True on and below the diagonal", MASK_HINT,
                      st.integers(1, 9), lambda n, f: lower_triangular(f, n), max_examples=10,
                      concepts=("core", "dtype_device")),
         golden_check("causal_mask", MASK_HINT))
register("scaled_dot_product_attention",
         golden_check("scaled_dot_product_attention", SDPA_HINT),
         VisibleCheck("agrees with torch's F.scaled_dot_product_attention", SDPA_HINT, s.attention_inputs(),
                      lambda inputs, f: matches_torch_sdpa(f, inputs),
                      concepts=("core", "float_mask", "causal", "causal_with_mask", "empty_rows", "dtype_device")),
         VisibleCheck("is causal: later keys never change earlier outputs", SDPA_HINT, s.attention_inputs(),
                      lambda inputs, f: causal_prefix_invariance(f, inputs), max_examples=15, concepts=("causal",)),
         VisibleCheck("leaves q, k, v and the mask unchanged", SDPA_HINT, s.attention_inputs(),
                      lambda inputs, f: leaves_inputs_alone(f, inputs), max_examples=10,
                      concepts=("inputs_untouched",)),
         gradient_check("scaled_dot_product_attention", SDPA_HINT, s.attention_inputs(**LIVE), _sdpa_gradient_call),
         rejects("scaled_dot_product_attention",
                 [("an integer attn_mask", s.attention_bad_mask_args(), {})], SDPA_HINT))
register("MultiHeadAttention",
         VisibleCheck("agrees with torch.nn.MultiheadAttention with the same weights", MHA_HINT, s.mha_inputs(),
                      lambda inputs, cls: matches_torch_mha(cls, inputs), max_examples=20,
                      concepts=("core", "key_padding_mask", "masks_together", "dtype_device")),
         VisibleCheck("unmasked self-attention is permutation-equivariant", MHA_HINT, s.mha_inputs(),
                      lambda inputs, cls: self_attention_is_permutation_equivariant(cls, inputs), max_examples=10),
         VisibleCheck("a fully padded row gets zero weights", MHA_HINT, s.mha_inputs(padding=True), lambda inputs, cls:
                      padded_rows_get_zero_weights(cls, inputs), max_examples=5, concepts=("empty_rows",)),
         VisibleCheck("refuses embed_dim not divisible by num_heads", "embed_dim must split evenly across heads",
                      st.sampled_from([(6, 4), (5, 2), (3, 2)]), lambda sizes, cls: rejects_indivisible_heads(cls, sizes),
                      max_examples=3, concepts=("bad_arguments",)))
