"""The search itself: the examples a check draws depend on the check alone, and replaying them changes nothing."""
from __future__ import annotations

import importlib
import sys

import pytest
from hypothesis import strategies as st

from autograder.common.compare import Mismatch
from autograder.rubric import Check
from autograder.replays import Replays
from autograder.runner import run_check

pytestmark = pytest.mark.grader


def drawn_examples() -> list[int]:
    """Every example one passing search draws, in order."""
    seen: list[int] = []
    check = Check(id="core", title="records its inputs", hint="", strategy=st.integers(0, 2**20),
                  run=lambda example, expected, student: seen.append(example), max_examples=300)
    assert run_check(check, student=None).passed
    return seen


def test_examples_do_not_depend_on_the_directory_or_on_modules_imported_before(tmp_path, monkeypatch):
    before = drawn_examples()
    # A module under the working directory full of numbers in the strategy's range: hypothesis would mine
    # them as "local constants" and draw some of them.
    constants = ", ".join(str(100_003 + 7919 * i) for i in range(200))
    (tmp_path / "grader_neighbour.py").write_text(f"NUMBERS = [{constants}]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("grader_neighbour")
    try:
        assert drawn_examples() == before
    finally:
        sys.modules.pop("grader_neighbour", None)


class Recorder:
    """A stand-in for a submission: answers each example through `wrong(example, call_number)` and logs calls."""

    def __init__(self, wrong=lambda example, call: False):
        self.wrong = wrong
        self.calls: list[int] = []

    def check(self, example: int, expected: int) -> Mismatch | None:
        self.calls.append(example)
        if self.wrong(example, len(self.calls)):
            return Mismatch("f", f"f({example}) should be {expected}", kind="values:all")
        return None


def doubling_check(expected_log: list[int], drawn_log: list[int] | None = None) -> Check:
    def expect(example: int) -> int:
        expected_log.append(example)
        return 2 * example

    def drawn(example: int) -> int:
        (drawn_log if drawn_log is not None else []).append(example)
        return example

    return Check(id="core", title="doubles", hint="", strategy=st.integers(0, 1000).map(drawn), max_examples=60,
                 run=lambda example, expected, student: student.check(example, expected), expect=expect)


def test_a_replay_calls_the_student_on_the_same_examples_in_order_without_drawing_or_the_reference():
    references, draws = [], []
    check, replays = doubling_check(references, draws), Replays()
    first = Recorder()
    assert run_check(check, first, replays).passed
    computed, drawn = len(references), len(draws)
    second = Recorder()
    assert run_check(check, second, replays).passed
    assert second.calls == first.calls and (len(references), len(draws)) == (computed, drawn)
    assert replays.get(check) is not None and run_check(check, Recorder()).passed  # no replays: a plain search


WRONG = {
    "wrong_above_a_value": lambda example, call: example > 600 and example % 2 == 1,
    "wrong_after_many_calls": lambda example, call: call >= 40,
    "wrong_once": lambda example, call: call == 30,
}


@pytest.mark.parametrize("wrong", WRONG.values(), ids=WRONG.keys())
def test_a_failing_submission_gets_the_outcome_and_the_calls_it_would_get_without_a_replay(wrong):
    check, replays = doubling_check([]), Replays()
    assert run_check(check, Recorder(), replays).passed
    plain, replayed = Recorder(wrong), Recorder(wrong)
    without, with_replay = run_check(check, plain), run_check(check, replayed, replays)
    assert not without.passed
    assert (with_replay.message, with_replay.example, with_replay.form) == (without.message, without.example,
                                                                              without.form)
    assert replayed.calls == plain.calls


def test_a_failing_first_submission_keeps_nothing_to_replay():
    check, replays = doubling_check([]), Replays()
    assert not run_check(check, Recorder(WRONG["wrong_above_a_value"]), replays).passed
    assert replays.get(check) is None
