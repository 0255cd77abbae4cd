"""Run one check: hypothesis searches for an example the student gets wrong and shrinks it.

Everything that decides the outcome happens here, in the grader's process:
the student's code only ever runs in the worker behind `student`.

Whatever the student's code returns, the outcome is this check's alone: an
exception raised while checking a returned value (a tuple too short for the
property that inspects it, say) is a failure of the check with its reason,
and a function that is wrong once but right when hypothesis replays the same
input fails with the input it was wrong on.

With `Replays` (see `autograder.replays`) a submission is first run on the
examples a passing search drew, with the reference's side of each: no
drawing, no reference. Only when one of them fails does hypothesis search,
and the examples the replay already ran are then answered from it, so the
student's code sees exactly the calls it would have seen without a replay and
the outcome is the same.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky
from hypothesis.internal.conjecture import providers

from .common.compare import Mismatch, describe_example, input_form
from .replays import Replays, same_example
from .rubric import Check
from .sandbox import WorkerError

# Hypothesis mixes numbers and strings it finds in the source of "local" modules (those under the current
# directory that happen to be imported) into the examples it draws. Examples would then depend on where
# grading runs and on what was imported before a check: a grade must not. Only its fixed global constants stay.
_NO_LOCAL_CONSTANTS = providers.Constants()
providers._get_local_constants = lambda: _NO_LOCAL_CONSTANTS


class _Failed(Exception):
    """A failing example; hypothesis shrinks while this is raised."""

    def __init__(self, mismatch: Mismatch, example: object):
        super().__init__(str(mismatch))
        self.mismatch = mismatch
        self.example = example


class _WorkerLost(BaseException):
    """The worker timed out or died: stop searching at once (a BaseException, so hypothesis does not shrink)."""

    def __init__(self, error: WorkerError):
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Outcome:
    check: Check
    passed: bool
    message: str = ""            # why it failed, with the minimal example; empty when passed
    worker_lost: bool = False    # the session must be restarted before the next check
    seconds: float = 0.0
    mismatch: Mismatch | None = None  # what differed on the minimal failing input
    example: str | None = None        # that input as shown to the student
    form: str = ""                    # that input's form without its values (see input_form)


def run_check(check: Check, student: object, replays: Replays | None = None) -> Outcome:
    """Search for a counterexample to `check`; return the minimal one if any. With `replays`, the examples
    of an earlier passing search are tried first (see the module's docstring); the outcome is the same."""
    start = time.perf_counter()
    replayed = replays.get(check) if replays is not None else None
    answers: list[Mismatch | None] = []   # the replay's verdicts, in order, until the first failing one
    if replayed is not None:
        try:
            for example, expected in replayed:
                answers.append(_verdict(check, example, student, expected)[1])
                if answers[-1] is not None:
                    break
        except WorkerError as error:
            return _lost(check, error, start)
        if answers and answers[-1] is None:  # every example of the replay passed
            return Outcome(check, True, seconds=time.perf_counter() - start)
    drawn: list[tuple[Any, Any]] = []    # (example, expected) of every call, in order
    failures: list[_Failed] = []   # failing examples in the order seen; the shrinker only tries smaller ones
    answering = bool(answers)      # still answering from the replay (until past it, or if the draws differ)

    @settings(derandomize=True, database=None, deadline=None, max_examples=check.max_examples,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              phases=(Phase.explicit, Phase.generate, Phase.shrink), print_blob=False)
    @given(check.strategy)
    def search(example: object) -> None:
        nonlocal answering
        index = len(drawn)
        answering = answering and index < len(answers) and same_example(example, replayed[index][0])
        if answering:
            expected, mismatch = replayed[index][1], answers[index]
        else:
            try:
                expected, mismatch = _verdict(check, example, student)
            except WorkerError as error:
                raise _WorkerLost(error) from None
        drawn.append((example, expected))
        if mismatch is not None:
            failures.append(_Failed(mismatch, example))
            raise failures[-1]

    try:
        search()
    except _Failed as failure:
        return _failed(check, failure, start)
    except Flaky:
        if not failures:
            raise
        last = failures[-1]
        flaky = _Failed(Mismatch(last.mismatch.what, "gave different results for the same input: wrong the "
                                 f"first time, as below, and right when the input was tried again "
                                 f"(a function must not depend on earlier calls)\n{last.mismatch}",
                                 kind="flaky"), last.example)
        return _failed(check, flaky, start)
    except _WorkerLost as lost:
        return _lost(check, lost.error, start)
    if replays is not None and replayed is None:
        replays.keep(check, drawn)
    return Outcome(check, True, seconds=time.perf_counter() - start)


_UNSET = object()


def _verdict(check: Check, example: object, student: object, expected: Any = _UNSET) -> tuple[Any, Mismatch | None]:
    """(the reference's side, what differed or None) for one example; `expected` is computed unless given.
    WorkerError passes through: the worker is lost, not the check failed."""
    try:
        if expected is _UNSET:
            expected = check.expect(example) if check.expect is not None else None
        return expected, check.run(example, expected, student)
    except WorkerError:
        raise
    except Exception as error:  # noqa: BLE001 - raised while checking what the student's code gave back
        return expected, Mismatch(check.title, f"could not be checked on what your code returned "
                                               f"({type(error).__name__}: {str(error)[:300]}); does it return "
                                               "what the task asks for (types, shapes, a tuple of the right "
                                               "length)?", kind="uncheckable")


def _lost(check: Check, error: WorkerError, start: float) -> Outcome:
    return Outcome(check, False, f"{error}\n  hint: {check.hint}", worker_lost=True,
                   seconds=time.perf_counter() - start)


def _failed(check: Check, failure: _Failed, start: float) -> Outcome:
    example = describe_example(failure.example) if check.show_example else None
    return Outcome(check, False, _failure_text(check, failure), seconds=time.perf_counter() - start,
                   mismatch=failure.mismatch, example=example,
                   form=input_form(failure.example) if check.show_example else "")


def _failure_text(check: Check, failure: _Failed) -> str:
    example = f"  smallest failing input:\n{describe_example(failure.example)}\n" if check.show_example else ""
    return f"{failure.mismatch}\n{example}  hint: {check.hint}"
