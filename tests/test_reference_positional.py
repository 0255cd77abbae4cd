"""The positional references against the formulas of SPEC.md, computed independently in float64."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder import strategies as s
from solutions.positional import apply_rotary, relative_position_bias, sinusoidal_encoding

pytestmark = pytest.mark.positional


@given(st.integers(0, 12), st.integers(1, 12), st.sampled_from([10000.0, 100.0, 7.5]))
def test_sinusoidal_values_follow_the_formula(seq_len, d_model, base):
    pe = sinusoidal_encoding(seq_len, d_model, base, dtype=torch.float64)
    for p in range(seq_len):
        for col in range(d_model):
            angle = p / base ** ((col - col % 2) / d_model)
            assert pe[p, col].item() == pytest.approx(math.sin(angle) if col % 2 == 0 else math.cos(angle), abs=1e-12)


def test_sinusoidal_defaults_keep_range_dtype_and_device(device):
    pe = sinusoidal_encoding(50, 7, device=device)
    assert pe.dtype == torch.float32 and pe.shape == (50, 7) and pe.device.type == device
    assert pe.abs().max() <= 1
    assert sinusoidal_encoding(3, 4, dtype=torch.bfloat16).dtype == torch.bfloat16


@given(st.integers(2, 16), st.sampled_from([2, 4, 8, 16]))
def test_gram_matrix_depends_only_on_the_offset(seq_len, d_model):
    pe = sinusoidal_encoding(seq_len, d_model, dtype=torch.float64)
    gram = pe @ pe.T
    for offset in range(-seq_len + 1, seq_len):
        diagonal = torch.diagonal(gram, offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-9)


@pytest.mark.parametrize("seq_len, d_model", [(-1, 4), (3, 0)])
def test_sinusoidal_refuses_bad_sizes(seq_len, d_model):
    with pytest.raises(ValueError):
        sinusoidal_encoding(seq_len, d_model)


@given(s.relative_bias_inputs())
def test_relative_bias_indexes_by_offset_and_is_toeplitz(inputs):
    out = relative_position_bias(inputs.table, inputs.q_len, inputs.k_len)
    heads, width = inputs.table.shape
    max_len = (width + 1) // 2
    assert out.shape == (heads, inputs.q_len, inputs.k_len)
    for i in range(inputs.q_len):
        for j in range(inputs.k_len):
            assert torch.equal(out[:, i, j], inputs.table[:, i - j + max_len - 1])
            if i and j:
                assert torch.equal(out[:, i, j], out[:, i - 1, j - 1])


def test_relative_bias_table_has_2t_minus_1_entries_per_head():
    heads, t = 3, 5
    table = torch.arange(heads * (2 * t - 1), dtype=torch.float32).reshape(heads, 2 * t - 1)
    out = relative_position_bias(table, t, t)
    assert table.numel() == (2 * t - 1) * heads
    assert len(torch.unique(out[0])) == 2 * t - 1  # every learned offset is used


@pytest.mark.parametrize("shape, q_len, k_len", [((2, 4), 2, 2), ((2, 5), 4, 2), ((2, 5), 0, 2)])
def test_relative_bias_refuses_bad_shapes(shape, q_len, k_len):
    with pytest.raises(ValueError):
        relative_position_bias(torch.zeros(shape), q_len, k_len)


@given(s.rotary_inputs())
def test_rotary_matches_the_rotation_formula_and_keeps_norms(inputs):
    out = apply_rotary(inputs.x, inputs.positions)
    x = inputs.x.double()
    d = x.shape[-1]
    theta = inputs.positions.double()[..., None] * 10000.0 ** (-torch.arange(0, d, 2).double() / d)
    expected = torch.empty(torch.broadcast_shapes(x.shape, (*theta.shape[:-1], d)), dtype=torch.float64)
    expected[..., 0::2] = x[..., 0::2] * torch.cos(theta) - x[..., 1::2] * torch.sin(theta)
    expected[..., 1::2] = x[..., 0::2] * torch.sin(theta) + x[..., 1::2] * torch.cos(theta)
    assert out.dtype == inputs.x.dtype
    assert torch.allclose(out.double(), expected.to(inputs.x.dtype).double(), atol=1e-5)
    assert torch.allclose(out.double().norm(dim=-1), x.norm(dim=-1).expand(out.shape[:-1]), atol=1e-4)


@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40))
def test_rotary_scores_depend_only_on_the_offset(m, n, shift):
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, generator=generator, dtype=torch.float64), torch.randn(8, generator=generator, dtype=torch.float64)
    score = apply_rotary(q, torch.tensor(m)) @ apply_rotary(k, torch.tensor(n))
    shifted = apply_rotary(q, torch.tensor(m + shift)) @ apply_rotary(k, torch.tensor(n + shift))
    assert score.item() == pytest.approx(shifted.item(), abs=1e-9)


def test_rotary_refuses_odd_dimensions_and_float_positions():
    with pytest.raises(ValueError, match="even"):
        apply_rotary(torch.ones(3), torch.tensor(1))
    with pytest.raises(ValueError, match="integer"):
        apply_rotary(torch.ones(4), torch.tensor(1.0))
