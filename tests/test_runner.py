"""The search itself: the examples a check draws depend on the check alone, and replaying them changes nothing."""
from __future__ import annotations

import dataclasses
import importlib
import sys

import pytest
import torch
from hypothesis import strategies as st

from autograder.checks import Call, matches_reference
from autograder.common.compare import Mismatch
from autograder.replays import Replays
from autograder.rubric import Check
from autograder.runner import CHUNK_ENDS, NotOneCall, draw, run_check
from autograder.sandbox.pool import CallResult
from autograder.student import Student

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


def test_a_failing_submission_runs_the_list_to_the_end_of_the_failing_chunk_and_leaves_the_list_to_the_next():
    check, replays = doubling_check([]), Replays()
    wrong = Recorder(WRONG["wrong_above_a_value"])
    assert not run_check(check, wrong, replays).passed
    listed = [example for example, _ in replays.get(check)]
    assert listed == [example for example, _ in draw(check)], "the list is the passing search's, whoever came first"
    first_wrong = next(i for i, example in enumerate(listed) if WRONG["wrong_above_a_value"](example, 0))
    chunk_end = min(end for end in (*CHUNK_ENDS, len(listed)) if end > first_wrong)
    assert wrong.calls[:chunk_end] == listed[:chunk_end] and len(wrong.calls) > chunk_end  # then the search


# --- a chunk of one-call examples goes to the worker in one request -----------------------------

class LocalSession:
    """A session that calls `function` in this process and logs every call; `batch` (when given) also logs the
    size of each batch."""

    def __init__(self, function, batches: list[int] | None = None):
        self.function = function
        self.calls: list[float] = []
        if batches is not None:
            self.batches = batches
            self.batch = self._batch

    def call(self, target, args, kwargs, seed=0, *, grad_inputs=None, grad_outputs=None, args_after=False):
        self.calls.append(float(args[0]))
        try:
            return CallResult(True, self.function(*args, **kwargs), list(args))
        except ValueError as error:
            return CallResult(False, error_type="ValueError", message=str(error))

    def _batch(self, calls):
        self.batches.append(len(calls))
        return (getattr(self, method)(*args, **kwargs) for method, args, kwargs in calls)


def halving_check(**options) -> Check:
    strategy = st.integers(0, 1000).map(lambda n: Call(args=(torch.tensor([float(n)]),)))
    return matches_reference("half", lambda x: x / 2, strategy, check_id="core", title="halves", sentence="s",
                             hint="h", max_examples=80, **options)


def stateful(wrong_from_call: int):
    """Right for its first calls, then wrong: what a function that depends on earlier calls looks like."""
    made = []

    def half(x):
        made.append(x)
        return x / 2 if len(made) < wrong_from_call else x / 2 + 1
    return half


@pytest.mark.parametrize("wrong_from_call", [10**6, 1, 3, 30], ids=["right", "wrong", "wrong_in_a_chunk", "late"])
def test_batched_chunks_give_the_outcome_and_the_calls_of_one_call_at_a_time(wrong_from_call):
    check, replays = halving_check(), Replays()
    batches: list[int] = []
    alone, batched = LocalSession(stateful(wrong_from_call)), LocalSession(stateful(wrong_from_call), batches)
    one_at_a_time, in_batches = run_check(check, Student(alone, "half"), replays), run_check(
        check, Student(batched, "half"), replays)
    assert (in_batches.passed, in_batches.message) == (one_at_a_time.passed, one_at_a_time.message)
    assert batched.calls == alone.calls
    # The first example alone, then one batch per chunk, up to the chunk with the first wrong example.
    listed = len(replays.get(check))
    bounds = [1, *(end for end in CHUNK_ENDS[1:] if end < listed), listed]
    chunks = [(begin, end) for begin, end in zip(bounds, bounds[1:])]
    assert batches == [end - begin for begin, end in chunks if begin < wrong_from_call]


def test_a_check_marked_one_call_that_makes_another_call_is_the_graders_error():
    inner = halving_check()

    def twice(call, expected, student):
        inner.run(call, expected, student)
        return inner.run(call, expected, student)
    check = dataclasses.replace(inner, run=twice)
    with pytest.raises(NotOneCall):
        run_check(check, Student(LocalSession(lambda x: x / 2, []), "half"), Replays())
