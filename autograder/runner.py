"""Run one check: hypothesis searches for an example the student gets wrong and shrinks it.

Everything that decides the outcome happens here, in the grader's process:
the student's code only ever runs in the worker behind `student`.

Whatever the student's code returns, the outcome is this check's alone: an
exception raised while checking a returned value (a tuple too short for the
property that inspects it, say) is a failure of the check with its reason,
and a function that is wrong once but right when hypothesis replays the same
input fails with the input it was wrong on.

Every check first runs its *listed* examples: those a passing search draws,
in order, each with the reference's side (`draw`; `Replays` keeps the lists,
see `autograder.replays`). They run in chunks (CHUNK_ENDS), and the run stops
at the end of the first chunk with a failure. Only then does hypothesis
search, and the examples the list already ran are answered from it, up to
the first one the search draws differently. The student's code therefore sees
the same calls whether the lists were drawn now or loaded from a file, and a
chunk of calls whose outcome does not depend on earlier answers goes to the
worker in one request.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from hypothesis import HealthCheck, Phase, given, seed, settings
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
# Examples are drawn with this fixed seed, so they depend on the rubric and the strategies alone (hypothesis's
# derandomize would hash the source of the search function here). It is the seed derandomize used to derive,
# kept so that no example changed.
SEED = 35401236209418031901725317961645626989826389983500101851031222757370291916316237325103835382432441316191604849312036
# A check runs its listed examples in chunks ending here (and at the list's end) and stops at the end of the first
# chunk with a failure: a wrong submission usually fails the first example, and a chunk goes to the worker in one
# request.
CHUNK_ENDS = (1, 4, 16, 64)


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
    """Run `check`'s listed examples (see the module's docstring), then, if one failed, search from there for
    the minimal failing example. `replays` keeps each check's list, drawn once (or loaded from a file)."""
    start = time.perf_counter()
    listed = replays.get(check) if replays is not None else None
    if listed is None:
        listed = draw(check)
        if replays is not None:
            replays.keep(check, listed)
    try:
        answers = _run_listed(check, listed, student)
    except WorkerError as error:
        return _lost(check, error, start)
    if all(answer is None for answer in answers):
        return Outcome(check, True, seconds=time.perf_counter() - start)
    failures: list[_Failed] = []   # failing examples in the order seen; the shrinker only tries smaller ones
    index = 0                      # how many examples the search has drawn
    answering = True               # still answering from the list (until past the answers, or if the draws differ)

    def test(example: object) -> None:
        nonlocal answering, index
        answering = answering and index < len(answers) and same_example(example, listed[index][0])
        if answering:
            mismatch = answers[index]
        else:
            try:
                mismatch = _verdict(check, example, student)[1]
            except WorkerError as error:
                raise _WorkerLost(error) from None
        index += 1
        if mismatch is not None:
            failures.append(_Failed(mismatch, example))
            raise failures[-1]

    try:
        _hypothesis(check, test)
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
    return Outcome(check, True, seconds=time.perf_counter() - start)


def draw(check: Check) -> list[tuple[Any, Any]]:
    """The examples a passing search of `check` draws, in order, each with the reference's side of it."""
    drawn: list[tuple[Any, Any]] = []
    _hypothesis(check, lambda example: drawn.append((example, check.expect(example) if check.expect else None)))
    return drawn


def _hypothesis(check: Check, test: Callable[[Any], None]) -> None:
    """Hypothesis on `check.strategy`: `test` each example drawn, then shrink the first one it raises _Failed on."""
    @seed(SEED)
    @settings(derandomize=True, database=None, deadline=None, max_examples=check.max_examples,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              phases=(Phase.explicit, Phase.generate, Phase.shrink), print_blob=False)
    @given(check.strategy)
    def search(example: object) -> None:
        test(example)

    search()


def _run_listed(check: Check, listed: list[tuple[Any, Any]], student: object) -> list[Mismatch | None]:
    """The verdicts on the listed examples, in order, up to the end of the first chunk (see CHUNK_ENDS) with a
    failure, or of the list. WorkerError passes through."""
    answers: list[Mismatch | None] = []
    begin = 0
    for end in [*(end for end in CHUNK_ENDS if end < len(listed)), len(listed)]:
        answers += _verdicts(check, listed[begin:end], student)
        begin = end
        if any(answer is not None for answer in answers):
            break
    return answers


def _verdicts(check: Check, pairs: list[tuple[Any, Any]], student: object) -> list[Mismatch | None]:
    """The verdicts on (example, expected) `pairs`, in order. When the check makes one call per example and the
    session can batch, the calls go to the worker in one request (see `_Planner`); else one at a time."""
    session = getattr(student, "session", None)
    if not (check.one_call and hasattr(session, "batch") and len(pairs) > 1):
        return [_verdict(check, example, student, expected)[1] for example, expected in pairs]
    calls = [_Planner.call_of(check, example, expected, student) for example, expected in pairs]
    results = session.batch([call for call in calls if call is not None])
    verdicts = []
    for (example, expected), call in zip(pairs, calls):
        student.session = _Answered(call, next(results) if call is not None else None)
        try:
            verdicts.append(_verdict(check, example, student, expected)[1])
        finally:
            student.session = session
    return verdicts


class NotOneCall(RuntimeError):
    """A check marked `one_call` made another call than the one planned: a bug of the check, not the student's."""


class _Planned(BaseException):
    """Stops a check's run at its call: only the call was wanted (a BaseException, so the run cannot catch it)."""


class _Planner:
    """A session stand-in that notes the call a check's run makes for one example and stops the run there."""

    def __init__(self) -> None:
        self.planned: tuple[str, tuple, dict] | None = None

    @classmethod
    def call_of(cls, check: Check, example: Any, expected: Any, student: Any) -> tuple[str, tuple, dict] | None:
        """(method, args, kwargs) of the session call `check.run` makes for `example`; None when it makes none."""
        session, student.session = student.session, cls()
        try:
            check.run(example, expected, student)
        except (_Planned, Exception):  # noqa: BLE001 - an error before any call: the verdict's run reports it
            pass
        finally:
            planner, student.session = student.session, session
        return planner.planned

    def call(self, *args: Any, **kwargs: Any) -> Any:
        self.planned = ("call", args, kwargs)
        raise _Planned

    def call_module(self, *args: Any, **kwargs: Any) -> Any:
        self.planned = ("call_module", args, kwargs)
        raise _Planned


class _Answered:
    """A session stand-in that answers the one planned call with the result the worker sent for it."""

    def __init__(self, planned: tuple[str, tuple, dict] | None, result: Any):
        self.planned = planned
        self.result = result

    def _answer(self, method: str, args: tuple, kwargs: dict) -> Any:
        if self.planned is None or not _same_call(self.planned, (method, args, kwargs)):
            raise NotOneCall("the check made another call than the one planned for this example")
        self.planned = None
        return self.result

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self._answer("call", args, kwargs)

    def call_module(self, *args: Any, **kwargs: Any) -> Any:
        return self._answer("call_module", args, kwargs)


def _same_call(a: Any, b: Any) -> bool:
    """Whether two calls pass the same objects (containers may be rebuilt; what they hold must be identical)."""
    if a is b:
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_same_call, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_call(a[k], b[k]) for k in a)
    return not isinstance(a, torch.Tensor) and type(a) is type(b) and a == b


_UNSET = object()


def _verdict(check: Check, example: object, student: object, expected: Any = _UNSET) -> tuple[Any, Mismatch | None]:
    """(the reference's side, what differed or None) for one example; `expected` is computed unless given.
    WorkerError passes through: the worker is lost, not the check failed."""
    try:
        if expected is _UNSET:
            expected = check.expect(example) if check.expect is not None else None
        return expected, check.run(example, expected, student)
    except (WorkerError, NotOneCall):
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
