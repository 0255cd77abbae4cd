"""Grade a batch: find submissions, skip finished ones, fan out over job slots, write results as they finish.

Each job slot is a separate grader process (started fresh, never forked from
this one) with its own worker pool, so `--jobs 2` grades two submissions at
once and gives exactly the results of `--jobs 1`.

Nothing one submission does stops the batch. Everything a slot raises while
grading one submission becomes that submission's zero with the reason; a slot
process that dies (the grader ran out of memory, say) takes down only the
submissions it was grading: those are graded again one at a time in a fresh
slot, and the one that kills its slot alone gets a zero with the reason.

Ctrl-C stops the slots within seconds: finished results stay, grades.csv is
written for them, and the same command resumes (`BatchInterrupted`).
"""
from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Callable, TextIO

from . import replays, report
from .discovery import Skipped, Submission, discover_all
from .grade import Assignment, Grader, _plain, _sha256, not_graded
from .overrides import archive_previous
from .sandbox import Limits, WorkerPool, detect_level

__all__ = ["BatchInterrupted", "OutputLock", "Submission", "discover", "grade_batch"]
SLOT_STOP_S = 30   # how long an interrupted slot may take to close its workers before it is killed


class BatchInterrupted(Exception):
    """Grading stopped on Ctrl-C; finished results and grades.csv are on disk."""


class SlotFailed(RuntimeError):
    """A job slot could not start: the grading host's problem, never a submission's, so the batch stops."""


def discover(paths: list[Path], assignment: str, *, log: TextIO | None = sys.stderr) -> list[Submission]:
    """Submissions of `assignment` under `paths` (see `autograder.discovery`); what is found but skipped is
    printed to `log`, grouped by reason."""
    submissions, skipped = discover_all(paths, assignment)
    if log:
        print_skipped(skipped, log)
    return submissions


def print_skipped(skipped: list[Skipped], log: TextIO) -> None:
    by_reason: dict[str, list[Path]] = {}
    for item in skipped:
        by_reason.setdefault(item.reason, []).append(item.path)
    for reason, paths in by_reason.items():
        more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        print(f"skipped {paths[0]}{more}: {reason}", file=log)


def _is_current(out: Path, submission: Submission, version: str) -> bool:
    path = report.result_path(out, submission.id)
    try:
        extra = json.loads(path.read_text())["extra_data"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (extra.get("rubric_version") == version and extra.get("source_path") == str(submission.path)
            and extra.get("submission_sha256") == ("" if submission.refused else _sha256(submission.path)))


class OutputLock:
    """One grading run per output folder: a second one is refused with a clear message."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / ".grading.lock"
        self.handle = None

    def __enter__(self) -> "OutputLock":
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "unknown"
            self.handle.close()
            raise SystemExit(f"another grading run (pid {owner}) is writing to {self.path.parent}; "
                             "wait for it to finish or choose another --out") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def _refuse_other_assignments(out: Path, assignment: str) -> None:
    others = sorted({r["extra_data"].get("assignment") for r in report.read_results(out)} - {assignment})
    if others:
        raise SystemExit(f"{out} holds results of {', '.join(map(repr, others))}, not {assignment!r}: grade each "
                         "assignment into its own --out folder, so that grades.csv never mixes them")


def _stale(out: Path, assignment: Assignment, submissions: list[Submission], log: TextIO | None) -> list[Submission]:
    """Results in `out` graded with another rubric version whose submission is not in this run: those whose
    notebook is still there are graded again (under their old id); the others are reported."""
    wanted = {s.id for s in submissions}
    again, gone = [], []
    for result in report.read_results(out):
        extra = result["extra_data"]
        if extra.get("rubric_version") == assignment.version or extra["submission"] in wanted:
            continue
        source = extra.get("source_path")
        found = discover_all([Path(source)], assignment.name)[0] if source and os.path.lexists(source) else []
        if found:
            again.append(Submission(extra["submission"], found[0].path, found[0].refused))
        else:
            gone.append(extra["submission"])
    if log and again:
        print(f"{len(again)} result(s) in {out} were graded with an older rubric; grading them again", file=log)
    if log and gone:
        print(f"left out of grades.csv: {', '.join(gone)} (graded with an older rubric, and the notebook is no "
              "longer where it was; grade it again with its path)", file=log)
    return again


# --- one job slot (runs in its own process) --------------------------------------------------

class _Interrupted(BaseException):
    """The batch was interrupted: stop grading this submission now (a BaseException, so no check absorbs it)."""


_slot: Grader | None = None
_slot_error = ""        # why this slot could not start; every task it is given reports it
_state = "starting"     # "starting", "idle", "busy", or "stopping" (asked to stop while starting)


def _stop_slot(signum: int, frame: object) -> None:
    """SIGTERM from the batch (and SIGALRM, its repeat): stop what this slot is doing now."""
    global _state
    if _state == "busy":
        # The exception unwinds the grading, which closes the submission's session on its way out. A handler
        # runs wherever Python happens to be, and an exception raised inside a garbage-collector callback or a
        # finaliser is dropped (see _quiet), so it is raised again every 0.2 s until it lands.
        signal.setitimer(signal.ITIMER_REAL, 0.2, 0.2)
        raise _Interrupted()
    if _state == "idle":
        _leave()
    _state = "stopping"       # starting: skip the rest of the start-up, then leave


def _quiet(unraisable: "sys.UnraisableHookArgs") -> None:
    """An _Interrupted dropped inside a callback is raised again (see _stop_slot): nothing to print."""
    if not isinstance(unraisable.exc_value, _Interrupted):
        sys.__unraisablehook__(unraisable)


def _leave() -> None:
    """End this slot at once: close its worker pool and skip the interpreter's teardown (seconds with torch)."""
    if _slot is not None:
        _slot.pool.close()
    os._exit(0)


def _init_slot(assignment: str, level: str | None, limits: Limits, device: str, replay: bool) -> None:
    global _slot, _slot_error, _state
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a terminal's Ctrl-C reaches every slot: the batch decides
    signal.signal(signal.SIGTERM, _stop_slot)
    signal.signal(signal.SIGALRM, _stop_slot)
    sys.unraisablehook = _quiet
    try:
        import torch

        torch.set_num_threads(1)  # references run single-threaded: same rounding whatever the machine
        if _state == "stopping":
            return
        pool = WorkerPool(level=level, limits=limits, device=device)
        pool.start()
        # Job slots end through multiprocessing, which runs its finalizers but not atexit handlers.
        Finalize(pool, pool.close, exitpriority=10)
        loaded = Assignment.load(assignment)
        _slot = Grader(loaded, pool, limits, replays=replays.prepared(loaded) if replay else None)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - reported by the first task (else only logged)
        _slot_error = _plain(error)
    if _state == "stopping":
        _leave()
    _state = "idle"


def _slot_ready() -> None:
    if _slot_error:
        raise SlotFailed(f"a job slot could not start: {_slot_error}")


def _grade_in_slot(submission: Submission, out: str) -> tuple[str, float, float, str]:
    global _state
    _slot_ready()
    _state = "busy"
    try:
        result = _graded(_slot, submission)
        _record(Path(out), result)
    except _Interrupted:
        _leave()
    finally:
        _state = "idle"
    return submission.id, result["score"], result["execution_time"], _slot.pool.level


def _record(out: Path, result: dict) -> None:
    """Write `result`, keeping the one it replaces in the submission's regrade history."""
    archive_previous(out, result["extra_data"]["submission"])
    report.write_result(out, result)


def _graded(grader: Grader, submission: Submission) -> dict:
    """The result of `submission`; a failure of the grader itself is this submission's zero, with the reason."""
    try:
        return grader.grade(submission.path, submission.id, refused=submission.refused)
    except Exception as error:  # noqa: BLE001 - the grader's failure on this submission is this submission's
        return not_graded(grader.assignment, submission.id, submission.path,
                          f"the grader failed on this submission ({_plain(error)}); tell your TA", grader.pool.level)


def _grade_here(assignment: Assignment, submission: Submission, out: Path, pool: WorkerPool | None, level: str | None,
                limits: Limits, device: str, replay: bool) -> tuple[str, float, float, str]:
    """Grade one submission in this process, as a job slot would, without starting a slot (a cold start costs
    less: this is the path of a single regrade and of Gradescope). Uses `pool` if given, else starts one."""
    import torch

    torch.set_num_threads(1)  # as in a slot: references give the same rounding whatever the machine
    own = pool is None
    if own:
        pool = WorkerPool(level=level, limits=limits, device=device)
        pool.start()
    try:
        result = _graded(Grader(assignment, pool, limits, replays=replays.prepared(assignment) if replay else None),
                         submission)
        _record(out, result)
    finally:
        if own:
            pool.close()
    return submission.id, result["score"], result["execution_time"], pool.level


# --- the batch (this process) ------------------------------------------------------------------

class _Slots:
    """Job slots for one batch, restarted whenever one dies. Each slot runs `initializer(*initargs)` once,
    then `task(submission, out)` per submission, which returns what `on_done` takes."""

    def __init__(self, out: Path, jobs: int, initargs: tuple, on_done: Callable[..., None], *,
                 initializer: Callable[..., None] | None = None, task: Callable[..., tuple] | None = None):
        self.out = out
        self.jobs = jobs
        self.initializer = initializer or _init_slot
        self.initargs = initargs
        self.task = task or _grade_in_slot
        self.on_done = on_done
        self.executor: ProcessPoolExecutor | None = None   # the one running now

    def grade(self, todo: list[Submission]) -> list[Submission]:
        """Grade `todo`; return the submissions that killed their slot even when graded alone."""
        queue, killers = deque(todo), []
        while queue:
            for suspect in self._run(queue, self.jobs):
                killers += self._run(deque([suspect]), 1, probe=True)   # alone, so a death names its cause
        return killers

    def _run(self, queue: deque[Submission], workers: int, probe: bool = False) -> list[Submission]:
        """Grade from `queue`, keeping at most `workers` submissions in flight; stop when a slot dies and
        return the submissions that were in flight then (the rest stay queued). With `probe`, the (single)
        slot first shows that it started, so that a death afterwards is the submission's doing."""
        context = multiprocessing.get_context("spawn")
        self.executor = ProcessPoolExecutor(max_workers=max(1, min(workers, len(queue))), mp_context=context,
                                            initializer=self.initializer, initargs=self.initargs)
        running: dict = {}
        try:
            if probe:
                try:
                    self.executor.submit(os.getpid).result()   # returns once the slot has started
                except BrokenProcessPool:
                    raise SlotFailed("a job slot stopped while starting (is the host out of memory?)") from None
            while queue or running:
                while queue and len(running) < workers:
                    submission = queue.popleft()
                    running[self.executor.submit(self.task, submission, str(self.out))] = submission
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    submission = running.pop(future)
                    try:
                        self.on_done(*future.result())
                    except BrokenProcessPool:
                        return [submission, *running.values()]
            return []
        except KeyboardInterrupt:
            self._stop()
            raise
        finally:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def _stop(self) -> None:
        """Ask every slot to stop grading now (they close their workers), and kill any that will not."""
        processes = list(self.executor._processes.values())   # the executor offers no public handle on them
        self.executor.shutdown(wait=False, cancel_futures=True)   # no more work: idle slots leave
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + SLOT_STOP_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()


def grade_batch(assignment: Assignment, submissions: list[Submission], out: Path, *, jobs: int = 1,
                force: bool = False, level: str | None = None, limits: Limits = Limits(),
                device: str = "cpu", progress: TextIO | None = sys.stderr, pool: WorkerPool | None = None,
                replay: bool = True) -> list[dict]:
    """Grade every submission not already graded in `out` with this rubric version, and any stale result whose
    notebook is still there; write grades.csv; return the results of this version in `out`. A single
    submission to grade is graded in this process (with `pool` if given); more go to `jobs` job slots. With
    `replay`, every check's examples and the reference's outputs come from the replay file instead of being
    drawn afresh for every submission (see `autograder.replays`; same grades).

    Raises BatchInterrupted on Ctrl-C, after writing grades.csv for what is finished."""
    with OutputLock(out):
        _refuse_other_assignments(out, assignment.name)
        todo = [s for s in submissions if force or not _is_current(out, s, assignment.version)]
        skipped = len(submissions) - len(todo)
        todo += _stale(out, assignment, submissions, progress)
        if skipped and progress:
            print(f"{skipped} submission(s) already graded in {out}; use --force to regrade", file=progress)
        start, finished, levels = time.perf_counter(), [0], []

        def on_done(submission_id: str, score: float, seconds: float, slot_level: str) -> None:
            finished[0] += 1
            levels.append(slot_level)
            if progress:
                print(f"[{finished[0]}/{len(todo)}] {submission_id}: {score:g}/{assignment.rubric.total:g} "
                      f"({seconds:.1f} s; {time.perf_counter() - start:.0f} s elapsed)", file=progress)

        try:
            if len(todo) == 1:
                killers = []
                on_done(*_grade_here(assignment, todo[0], out, pool, level, limits, device, replay))
            else:
                killers = _Slots(out, jobs, (assignment.name, level, limits, device, replay), on_done).grade(todo)
        except KeyboardInterrupt:
            report.write_grades_csv(out, assignment.item_names, assignment.version)
            graded = sum(_is_current(out, s, assignment.version) for s in todo)
            raise BatchInterrupted(f"interrupted: {graded} of {len(todo)} submission(s) graded in this run; "
                                   f"finished results are kept in {out} and in its grades.csv. Run the same "
                                   "command again to grade the rest.") from None
        for submission in killers:
            reason = ("the grader's process stopped while grading this submission (it may have returned "
                      "something too large to check); nothing else was affected")
            slot_level = levels[-1] if levels else detect_level(level)
            _record(out, not_graded(assignment, submission.id, submission.path, reason, slot_level))
            on_done(submission.id, 0.0, 0.0, slot_level)
        report.write_grades_csv(out, assignment.item_names, assignment.version)
    return [r for r in report.read_results(out) if r["extra_data"].get("assignment") == assignment.name
            and r["extra_data"].get("rubric_version") == assignment.version]
