"""The attention references against PyTorch's own kernels (torch.nn.functional, torch.nn.MultiheadAttention)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings

from autograder import strategies as s
from autograder.common.tolerances import tolerance_for
from autograder.selfcheck.attention import copy_weights, matches_torch_mha, matches_torch_sdpa
from solutions.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention

pytestmark = pytest.mark.attention


def test_causal_mask_is_lower_triangular_bool(device):
    mask = causal_mask(4, device=device)
    assert mask.dtype == torch.bool and mask.device.type == device
    assert mask.cpu().tolist() == [[j <= i for j in range(4)] for i in range(4)]
    assert causal_mask(0).shape == (0, 0)


@given(s.attention_inputs())
def test_sdpa_agrees_with_torch(inputs):
    assert matches_torch_sdpa(scaled_dot_product_attention, inputs) is None


def test_a_query_with_no_allowed_key_gets_zeros_not_nan():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.equal(out[:, 1], torch.zeros(2, 6)) and torch.equal(weights[:, 1], torch.zeros(2, 5))
    assert torch.isfinite(out).all() and torch.allclose(weights[:, [0, 2]].sum(-1), torch.ones(2, 2))


def test_is_causal_is_top_left_aligned_when_lq_differs_from_lk():
    q, k, v = torch.randn(2, 4), torch.randn(5, 4), torch.randn(5, 3)
    _, weights = scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (weights[0, 1:] == 0).all() and (weights[1, 2:] == 0).all() and (weights[1, :2] > 0).all()
    expected = torch.nn.functional.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True)[0]
    assert torch.allclose(scaled_dot_product_attention(q, k, v, is_causal=True)[0], expected, atol=1e-6)


def test_mask_and_is_causal_both_apply():
    q = k = v = torch.randn(3, 3, 2)
    mask = torch.tensor([[True, False, True]] * 3)
    _, weights = scaled_dot_product_attention(q, k, v, mask, is_causal=True)
    assert (weights[:, :, 1] == 0).all() and (weights[:, 0, 2] == 0).all() and (weights[:, 2, 2] > 0).all()


def test_integer_masks_are_refused():
    q = torch.randn(2, 2)
    with pytest.raises(ValueError, match="bool"):
        scaled_dot_product_attention(q, q, q, torch.ones(2, 2, dtype=torch.int64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_sdpa_keeps_dtype_and_device_and_is_accurate(device, dtype):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=generator, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(5, 5, generator=generator) > 0.3
    exact, _ = scaled_dot_product_attention(q, k, v, mask)
    out, weights = scaled_dot_product_attention(*(t.to(device, dtype) for t in (q, k, v)), mask.to(device))
    assert out.dtype == dtype and weights.dtype == dtype and out.device.type == device
    tol = tolerance_for(dtype)
    assert torch.allclose(out.double().cpu(), exact, rtol=tol.rtol, atol=tol.atol)


@settings(max_examples=40)
@given(s.mha_inputs())
def test_mha_agrees_with_torch_multihead_attention(inputs):
    assert matches_torch_mha(MultiHeadAttention, inputs) is None


def test_mha_gradients_agree_with_torch():
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True).double()
    ours = MultiHeadAttention(8, 2).double()
    copy_weights(theirs, ours)
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    real = torch.tensor([[True] * 5, [True, True, True, False, False]])
    out_t, _ = theirs(y, x, x, key_padding_mask=~real)
    out_o, _ = ours(y, x, x, key_padding_mask=real)
    grads_t = torch.autograd.grad(out_t.sum(), [x, y, theirs.in_proj_weight, theirs.out_proj.weight])
    grads_o = torch.autograd.grad(out_o.sum(), [x, y, ours.q_proj.weight, ours.out_proj.weight])
    for theirs_grad, our_grad in zip(grads_t, grads_o):
        assert torch.allclose(theirs_grad[: our_grad.shape[0]], our_grad, atol=1e-10)


def test_mha_causal_self_attention_matches_torch_with_an_explicit_mask():
    torch.manual_seed(1)
    theirs = torch.nn.MultiheadAttention(6, 3, batch_first=True, bias=False)
    ours = MultiHeadAttention(6, 3, bias=False)
    copy_weights(theirs, ours)
    x = torch.randn(2, 4, 6)
    expected, expected_w = theirs(x, x, x, attn_mask=~causal_mask(4), average_attn_weights=False)
    out, weights = ours(x, x, x, is_causal=True)
    assert torch.allclose(out, expected, atol=1e-6) and torch.allclose(weights, expected_w, atol=1e-6)
    assert weights.shape == (2, 3, 4, 4)


def test_mha_parameter_names_are_the_contract():
    names = {name for name, _ in MultiHeadAttention(4, 2).named_parameters()}
    assert names == {f"{p}.{w}" for p in ("q_proj", "k_proj", "v_proj", "out_proj") for w in ("weight", "bias")}
    assert {n for n, _ in MultiHeadAttention(4, 2, bias=False).named_parameters()} == {
        f"{p}.weight" for p in ("q_proj", "k_proj", "v_proj", "out_proj")}


def test_mha_refuses_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(6, 4)


def test_scores_are_scaled_by_sqrt_e():
    q = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    k = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    _, weights = scaled_dot_product_attention(q, k, torch.eye(2))
    assert torch.allclose(weights[0, 0], torch.sigmoid(torch.tensor(4 / math.sqrt(4))))
