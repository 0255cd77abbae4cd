"""Rubric: positional encodings, one check per concept the notebook states."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from solutions import positional as ref

from .. import strategies as s
from ..checks import BadCall, Call, matches_reference, rejects_bad_arguments
from ..rubric import Item, Rubric
from ..selfcheck.positional import BIAS_HINT, ROTARY_HINT, SINUSOID_HINT


@st.composite
def sinusoid_calls(draw) -> Call:
    kwargs = {"dtype": draw(st.sampled_from([None, torch.float32, torch.float64]))}
    if draw(st.booleans()):
        kwargs["base"] = draw(st.sampled_from([10000.0, 100.0, 2.5]))
    return Call((draw(st.integers(1, 16)), draw(st.integers(1, 12))), kwargs, names=("seq_len", "d_model"))


@st.composite
def bias_calls(draw) -> Call:
    inputs = draw(s.relative_bias_inputs())
    return Call((inputs.table, inputs.q_len, inputs.k_len), names=("table", "q_len", "k_len"), grad_inputs=(0,))


@st.composite
def rotary_calls(draw) -> Call:
    inputs = draw(s.rotary_inputs())
    return Call((inputs.x, inputs.positions), names=("x", "positions"), grad_inputs=(0,))


RUBRIC = Rubric(
    assignment="positional",
    version="2",
    items=(
        Item("sinusoidal_encoding", 4.0, (
            matches_reference("sinusoidal_encoding", ref.sinusoidal_encoding, sinusoid_calls(), check_id="core",
                              core=True, weight=3.2, title="interleaved sines and cosines of p / base**(2i/d)",
                              sentence="the sine in the even column, the cosine in the odd one", hint=SINUSOID_HINT),
            matches_reference("sinusoidal_encoding", ref.sinusoidal_encoding, sinusoid_calls(),
                              check_id="dtype_device", aspect="dtype_device", weight=0.4,
                              title="float32 unless dtype is given",
                              sentence="`float32` unless `dtype` is given", hint=SINUSOID_HINT),
            rejects_bad_arguments("sinusoidal_encoding", [BadCall("d_model=0", (3, 0))], weight=0.4,
                                  sentence="A non-positive `d_model` raises `ValueError`.",
                                  hint="a zero-width encoding is a mistake worth reporting"),
        )),
        Item("relative_position_bias", 3.0, (
            matches_reference("relative_position_bias", ref.relative_position_bias, bias_calls(), check_id="core",
                              core=True, weight=2.2, title="out[h, i, j] = table[h, (i - j) + max_len - 1]",
                              sentence="`out[h, i, j] = table[h, (i - j) + max_len - 1]`", hint=BIAS_HINT),
            matches_reference("relative_position_bias", ref.relative_position_bias, bias_calls(),
                              check_id="gradient", aspect="gradient", weight=0.4,
                              title="gradients reach the table", hint=BIAS_HINT,
                              sentence="The table is learned: gradients must flow back into `table`."),
            rejects_bad_arguments("relative_position_bias", [
                BadCall("q_len=4 with a table for max_len=2", (torch.zeros(1, 3), 4, 1))], weight=0.4,
                sentence="must be between 1 and `max_len`, else `ValueError`.",
                hint="q_len and k_len cannot exceed the max_len the table was made for"),
        )),
        Item("apply_rotary", 2.0, (
            matches_reference("apply_rotary", ref.apply_rotary, rotary_calls(), check_id="core", core=True,
                              weight=1.3, title="rotates each pair (x[2i], x[2i+1]) by position * base**(-2i/D)",
                              sentence="`out[..., 2i] = x[..., 2i] cos a_i - x[..., 2i+1] sin a_i`",
                              hint=ROTARY_HINT),
            matches_reference("apply_rotary", ref.apply_rotary, rotary_calls(), check_id="dtype_device",
                              aspect="dtype_device", weight=0.2, title="keeps the dtype of x",
                              sentence="in the dtype of `x`.", hint=ROTARY_HINT),
            matches_reference("apply_rotary", ref.apply_rotary, rotary_calls(), check_id="gradient",
                              aspect="gradient", weight=0.2, title="gradients reach x",
                              sentence="Gradients must flow back to `x`.", hint=ROTARY_HINT),
            rejects_bad_arguments("apply_rotary", [BadCall("an odd last dimension D=3", (torch.zeros(2, 3),
                                                                                        torch.tensor([0, 1])))],
                                  weight=0.3, sentence="`x` is `(..., D)` with `D` even (else `ValueError`)",
                                  hint="rotary embeddings rotate pairs of features, so D must be even"),
        )),
    ),
)
