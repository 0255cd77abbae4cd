"""Rubric: causal masking and multi-head attention, one check per concept the notebook states."""
from __future__ import annotations

from functools import partial

from hypothesis import strategies as st

from solutions import attention as ref

from .. import strategies as s
from ..checks import BadCall, Call, ModuleCall, matches_reference, module_matches_reference, rejects_bad_arguments
from ..rubric import Forbidden, Item, Rubric
from ..selfcheck.attention import MASK_HINT, MHA_HINT, SDPA_HINT


@st.composite
def causal_mask_calls(draw) -> Call:
    return Call((draw(st.integers(1, 12)),), names=("seq_len",))


@st.composite
def attention_calls(draw, grad: bool = False, **kinds) -> Call:
    inputs = draw(s.attention_inputs(**kinds))
    return Call((inputs.q, inputs.k, inputs.v), {"attn_mask": inputs.attn_mask, "is_causal": inputs.is_causal},
                seed=inputs.seed, names=("q", "k", "v"), grad_inputs=(0, 1, 2) if grad else ())


@st.composite
def mha_calls(draw, **kinds) -> ModuleCall:
    inputs = draw(s.mha_inputs(**kinds))
    cross = inputs.key is not inputs.query
    return ModuleCall(init_args=(inputs.embed_dim, inputs.num_heads, inputs.bias),
                      args=(inputs.query, inputs.key, inputs.value),
                      kwargs={"attn_mask": inputs.attn_mask, "key_padding_mask": inputs.key_padding_mask,
                              "is_causal": inputs.is_causal},
                      grad_inputs=(0, 1, 2) if cross else (0,), dtype=inputs.query.dtype, seed=inputs.seed,
                      names=("query", "key", "value"))


# Ordinary inputs: no mask or a bool mask, no is_causal, every query with an allowed key.
ORDINARY = {"masks": ("none", "bool"), "causal": False, "rows": "live"}

sdpa = partial(matches_reference, "scaled_dot_product_attention", ref.scaled_dot_product_attention,
               hint=SDPA_HINT, parts=("output", "weights"))
mha = partial(module_matches_reference, "MultiHeadAttention", ref.MultiHeadAttention, hint=MHA_HINT,
              parts=("output", "weights"))

RUBRIC = Rubric(
    assignment="attention",
    version="3",
    items=(
        Item("causal_mask", 2.0, (
            matches_reference("causal_mask", ref.causal_mask, causal_mask_calls(), check_id="core", core=True,
                              title="True exactly where key j <= query i", weight=1.6,
                              sentence=r"query $i$ may attend to key $j$ exactly when $j \le i$",
                              hint=MASK_HINT),
            matches_reference("causal_mask", ref.causal_mask, causal_mask_calls(), check_id="dtype_device",
                              aspect="dtype_device", title="a torch.bool tensor", weight=0.4,
                              sentence="returns a `torch.bool` tensor of shape `(seq_len, seq_len)` on `device`",
                              hint="build the mask with dtype=torch.bool (comparisons and tril of a bool tensor "
                                   "give bool)"),
        )),
        Item("scaled_dot_product_attention", 5.0, (
            sdpa(attention_calls(**ORDINARY), check_id="core", core=True, weight=3.0,
                 title="softmax(q k^T / sqrt(E)) v with a bool mask, every query having an allowed key",
                 sentence="the comparisons become weights through a softmax; the output is the weighted "
                          "average of the values"),
            sdpa(attention_calls(masks=("float",), causal=False, rows="live"), check_id="float_mask",
                 weight=0.4, title="a float mask is added to the scores",
                 sentence="a float tensor (added to the scores)"),
            sdpa(attention_calls(masks=("none",), causal=True), check_id="causal", weight=0.4,
                 title="is_causal hides key j > i, aligned top left when Lq != Lk",
                 sentence="`is_causal=True` also applies a causal mask aligned at the **top left**"),
            sdpa(attention_calls(masks=("bool", "float"), causal=True, rows="live"), check_id="causal_with_mask",
                 weight=0.3, title="attn_mask and is_causal together both apply",
                 sentence="Given together, `attn_mask` and `is_causal` both apply."),
            sdpa(attention_calls(masks=("bool", "float"), rows="empty"), check_id="empty_rows", weight=0.3,
                 title="a query with no allowed key gets zero weights and zero output",
                 sentence="such a query gets **all-zero weights and an all-zero output**."),
            sdpa(attention_calls(**ORDINARY), check_id="dtype_device", aspect="dtype_device", weight=0.15,
                 title="output and weights keep the dtype of q",
                 sentence="(the softmax probabilities), in the dtype of `q`."),
            sdpa(attention_calls(masks=("none", "bool", "float"), rows="live"), check_id="inputs_untouched",
                 aspect="inputs_untouched", weight=0.15, title="q, k, v and the mask are left unchanged",
                 sentence="Leave the inputs as they are: never write into `q`, `k`, `v` or `attn_mask`."),
            sdpa(attention_calls(grad=True, **ORDINARY), check_id="gradient", aspect="gradient", weight=0.2,
                 title="gradients reach q, k and v",
                 sentence="Gradients must flow back to `q`, `k` and `v`"),
            rejects_bad_arguments("scaled_dot_product_attention", [
                BadCall("an integer attn_mask (masks are bool or floating)", s.attention_bad_mask_args(), {}),
            ], weight=0.1, sentence="Any other dtype raises `ValueError`.",
                hint="check the dtype of attn_mask and raise ValueError for anything but bool or floating"),
        ), forbidden=(
            # The task text forbids torch's kernel: it is the exercise. Its lower-level routes count as the same call.
            Forbidden("torch.nn.functional.scaled_dot_product_attention", deduct=5.0,
                      routes=("torch._C._nn.scaled_dot_product_attention", "torch.ops.aten.scaled_dot_product_attention",
                              "torch.ops.aten._scaled_dot_product_attention_math",
                              "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu")),
        )),
        Item("MultiHeadAttention", 5.0, (
            mha(mha_calls(masks=("none", "bool"), padding=False, causal=False, rows="live"), check_id="core",
                core=True, weight=3.0, title="outputs, weights and gradients of self- and cross-attention, "
                                            "with the reference's weights loaded",
                sentence="Head `h` uses features `[h*E/H, (h+1)*E/H)` of each projection"),
            mha(mha_calls(masks=("none",), padding=True, causal=False, rows="live"), check_id="key_padding_mask",
                weight=0.7, title="keys marked False in key_padding_mask are ignored",
                sentence="`key_padding_mask: (B, Lk)` bool, **True = real token**"),
            mha(mha_calls(masks=("bool", "float"), causal=True, rows="live"), check_id="masks_together",
                weight=0.5, title="attn_mask (bool or float), padding and is_causal apply together",
                sentence="every given mask and `is_causal` apply together"),
            mha(mha_calls(rows="empty"), check_id="empty_rows", aspect="outputs", weight=0.3,
                title="a query whose keys are all padding gets zero weights",
                sentence="A query whose keys are all padding gets all-zero weights in every head"),
            mha(mha_calls(**ORDINARY), check_id="dtype_device", aspect="dtype_device", weight=0.2,
                title="output and weights keep the dtype of query",
                sentence="both in the dtype of `query`"),
            rejects_bad_arguments("MultiHeadAttention", [
                BadCall("embed_dim=6 with num_heads=4 (6 is not divisible by 4)", (6, 4)),
            ], weight=0.3, sentence="If `embed_dim` is not divisible by `num_heads`, raise `ValueError`.",
                hint="embed_dim must split evenly across the heads"),
        ), trusted={"scaled_dot_product_attention": ref.scaled_dot_product_attention}, forbidden=(
            Forbidden("torch.nn.MultiheadAttention", deduct=5.0),
            Forbidden("torch.nn.functional.multi_head_attention_forward", deduct=5.0),
        )),
    ),
)
