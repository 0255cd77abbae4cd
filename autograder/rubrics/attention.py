"""Rubric: causal masking and multi-head attention."""
from __future__ import annotations

from hypothesis import strategies as st

from solutions import attention as ref

from .. import strategies as s
from ..checks import (BadCall, Call, ModuleCall, holds, matches_reference, module_matches_reference,
                      rejects_bad_arguments)
from ..selfcheck.attention import causal_prefix_invariance
from ..rubric import Forbidden, Item, Rubric


@st.composite
def causal_mask_calls(draw) -> Call:
    return Call((draw(st.integers(0, 12)),), names=("seq_len",))


@st.composite
def attention_calls(draw) -> Call:
    inputs = draw(s.attention_inputs())
    return Call((inputs.q, inputs.k, inputs.v), {"attn_mask": inputs.attn_mask, "is_causal": inputs.is_causal},
                seed=inputs.seed, names=("q", "k", "v"))


@st.composite
def mha_calls(draw) -> ModuleCall:
    inputs = draw(s.mha_inputs())
    cross = inputs.key is not inputs.query
    return ModuleCall(init_args=(inputs.embed_dim, inputs.num_heads, inputs.bias),
                      args=(inputs.query, inputs.key, inputs.value),
                      kwargs={"attn_mask": inputs.attn_mask, "key_padding_mask": inputs.key_padding_mask,
                              "is_causal": inputs.is_causal},
                      grad_inputs=(0, 1, 2) if cross else (0,), dtype=inputs.query.dtype, seed=inputs.seed,
                      names=("query", "key", "value"))


RUBRIC = Rubric(
    assignment="attention",
    version="3",
    items=(
        Item("causal_mask", 2.0, (
            matches_reference("causal_mask", ref.causal_mask, causal_mask_calls(), max_examples=20,
                              hint="query i may attend to keys 0..i: the diagonal is allowed, the future is not; "
                                   "the result is a bool tensor"),
        )),
        Item("scaled_dot_product_attention", 5.0, (
            matches_reference("scaled_dot_product_attention", ref.scaled_dot_product_attention, attention_calls(),
                              parts=("output", "weights"), weight=4.0,
                              hint="softmax(q k^T / sqrt(E) + mask) v, with True = may attend, masked scores set to "
                                   "-inf, is_causal aligned top-left, and all-zero weights for a query with no "
                                   "allowed key"),
            holds("causal_prefix_invariance", "with is_causal, later keys and values never change earlier outputs",
                  causal_prefix_invariance, "scaled_dot_product_attention", s.attention_inputs(), max_examples=30,
                  hint="is_causal must hide every key j > i from query i, in every batch position"),
            rejects_bad_arguments("scaled_dot_product_attention", [
                BadCall("an integer attn_mask (masks are bool or floating)",
                        s.attention_bad_mask_args(), {}),
            ], hint="check the dtype of attn_mask and raise ValueError for anything but bool or floating"),
        ), forbidden=(
            # The task text forbids torch's kernel: it is the exercise. Its lower-level routes count as the same call.
            Forbidden("torch.nn.functional.scaled_dot_product_attention", deduct=5.0,
                      routes=("torch._C._nn.scaled_dot_product_attention", "torch.ops.aten.scaled_dot_product_attention",
                              "torch.ops.aten._scaled_dot_product_attention_math",
                              "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu")),
        )),
        Item("MultiHeadAttention", 5.0, (
            module_matches_reference("MultiHeadAttention", ref.MultiHeadAttention, mha_calls(),
                                     parts=("output", "weights"), weight=4.0,
                                     hint="project with q_proj/k_proj/v_proj, give head h the features "
                                          "[h*E/H, (h+1)*E/H), attend per head with every mask applied, "
                                          "concatenate the heads and apply out_proj"),
            rejects_bad_arguments("MultiHeadAttention", [
                BadCall("embed_dim=6 with num_heads=4 (6 is not divisible by 4)", (6, 4)),
            ], hint="embed_dim must split evenly across the heads"),
        ), forbidden=(
            Forbidden("torch.nn.MultiheadAttention", deduct=5.0),
            Forbidden("torch.nn.functional.multi_head_attention_forward", deduct=5.0),
        )),
    ),
)
