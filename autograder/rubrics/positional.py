"""Rubric: positional encodings."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from solutions import positional as ref

from .. import strategies as s
from ..checks import BadCall, Call, holds, matches_reference, rejects_bad_arguments
from ..rubric import Item, Rubric
from ..selfcheck.positional import BIAS_HINT, ROTARY_HINT, SINUSOID_HINT, rotary_score_depends_on_offset


@st.composite
def sinusoid_calls(draw) -> Call:
    kwargs = {"dtype": draw(st.sampled_from([None, torch.float32, torch.float64]))}
    if draw(st.booleans()):
        kwargs["base"] = draw(st.sampled_from([10000.0, 100.0, 2.5]))
    return Call((draw(st.integers(0, 16)), draw(st.integers(1, 12))), kwargs, names=("seq_len", "d_model"))


@st.composite
def bias_calls(draw) -> Call:
    inputs = draw(s.relative_bias_inputs())
    return Call((inputs.table, inputs.q_len, inputs.k_len), names=("table", "q_len", "k_len"))


@st.composite
def rotary_calls(draw) -> Call:
    inputs = draw(s.rotary_inputs())
    return Call((inputs.x, inputs.positions), names=("x", "positions"))


RUBRIC = Rubric(
    assignment="positional",
    version="1",
    items=(
        Item("sinusoidal_encoding", 4.0, (
            matches_reference("sinusoidal_encoding", ref.sinusoidal_encoding, sinusoid_calls(), hint=SINUSOID_HINT,
                              weight=4.0),
            rejects_bad_arguments("sinusoidal_encoding", [BadCall("d_model=0", (3, 0))],
                                  hint="a zero-width encoding is a mistake worth reporting"),
        )),
        Item("relative_position_bias", 3.0, (
            matches_reference("relative_position_bias", ref.relative_position_bias, bias_calls(), hint=BIAS_HINT,
                              weight=4.0),
            rejects_bad_arguments("relative_position_bias", [
                BadCall("q_len=4 with a table for max_len=2", (torch.zeros(1, 3), 4, 1))],
                hint="q_len and k_len cannot exceed the max_len the table was made for"),
        )),
        Item("apply_rotary", 2.0, (
            matches_reference("apply_rotary", ref.apply_rotary, rotary_calls(), hint=ROTARY_HINT, weight=3.0),
            holds("relative_scores", "scores depend only on the offset between positions",
                  rotary_score_depends_on_offset, "apply_rotary",
                  st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 30), s.seeds()),
                  hint=ROTARY_HINT, max_examples=30),
            rejects_bad_arguments("apply_rotary", [BadCall("an odd last dimension D=3", (torch.zeros(2, 3),
                                                                                        torch.tensor([0, 1])))],
                                  hint="rotary embeddings rotate pairs of features, so D must be even"),
        )),
    ),
)
