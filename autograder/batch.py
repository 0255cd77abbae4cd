"""Grade a batch: find submissions, skip finished ones, fan out over job slots, write results as they finish.

Each job slot is a separate grader process (started fresh, never forked from
this one) with its own worker pool, so `--jobs 2` grades two submissions at
once and gives exactly the results of `--jobs 1`.
"""
from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing.util import Finalize
from pathlib import Path

from . import report
from .grade import Assignment, Grader, _sha256
from .sandbox import Limits, WorkerPool


@dataclass(frozen=True)
class Submission:
    id: str
    path: Path


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@+-]", "_", text).strip(".") or "submission"


def discover(paths: list[Path], assignment: str) -> list[Submission]:
    """Submissions under `paths`: notebooks, or folders in nbgrader's submitted/<student>/<assignment>/ layout.

    A student folder for this assignment with no notebook still yields a submission (graded 0, with the reason),
    so nobody is skipped silently.
    """
    found: dict[str, Path] = {}

    def add(student: str, notebook: Path) -> None:
        key = _safe_id(student)
        if key in found and found[key] != notebook:
            key = _safe_id(f"{student}--{notebook.stem}")
        found[key] = notebook

    for path in paths:
        if path.is_file():
            parent = path.parent
            student = parent.parent.name if parent.name == assignment else path.stem
            add(student, path)
            continue
        if not path.is_dir():
            raise SystemExit(f"{path}: no such file or directory")
        if path.name == assignment:            # submitted/<student>/<assignment>
            assignment_dirs = [path]
        elif (path / assignment).is_dir():         # submitted/<student>
            assignment_dirs = [path / assignment]
        else:                                      # submitted/
            assignment_dirs = sorted(d for d in path.glob(f"*/{assignment}") if d.is_dir())
        if assignment_dirs:
            for folder in assignment_dirs:
                student = folder.parent.name
                notebooks = sorted(p for p in folder.glob("*.ipynb") if p.is_file())
                for notebook in notebooks or [folder / f"{assignment}.ipynb"]:
                    add(student if len(notebooks) <= 1 else f"{student}--{notebook.stem}", notebook)
        else:
            for notebook in sorted(path.rglob("*.ipynb")):
                if ".ipynb_checkpoints" not in notebook.parts:
                    add(notebook.stem, notebook)
    return [Submission(k, v) for k, v in sorted(found.items())]


def _is_current(out: Path, submission: Submission, rubric_version: str) -> bool:
    path = report.result_path(out, submission.id)
    try:
        extra = json.loads(path.read_text())["extra_data"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return extra.get("rubric_version") == rubric_version and extra.get("submission_sha256") == _sha256(submission.path)


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


# --- one job slot (runs in its own process) --------------------------------------------------

_slot: Grader | None = None


def _init_slot(assignment: str, level: str | None, limits: Limits, device: str) -> None:
    global _slot
    import torch

    torch.set_num_threads(1)  # references run single-threaded: same rounding whatever the machine
    pool = WorkerPool(level=level, limits=limits, device=device)
    pool.start()
    # Job slots end through multiprocessing, which runs its finalizers but not atexit handlers.
    Finalize(pool, pool.close, exitpriority=10)
    _slot = Grader(Assignment.load(assignment), pool, limits)


def _grade_in_slot(submission: Submission, out: str) -> tuple[str, float, float]:
    result = _slot.grade(submission.path, submission.id)
    report.write_result(Path(out), result)
    return submission.id, result["score"], result["execution_time"]


def grade_batch(assignment: Assignment, submissions: list[Submission], out: Path, *, jobs: int = 1,
                force: bool = False, level: str | None = None, limits: Limits = Limits(),
                device: str = "cpu", progress=sys.stderr) -> list[dict]:
    """Grade every submission not already graded in `out`; return all results in `out`."""
    with OutputLock(out):
        todo = [s for s in submissions if force or not _is_current(out, s, assignment.rubric.version)]
        skipped = len(submissions) - len(todo)
        if skipped and progress:
            print(f"{skipped} submission(s) already graded in {out}; use --force to regrade", file=progress)
        if todo:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo))), mp_context=context,
                                     initializer=_init_slot,
                                     initargs=(assignment.name, level, limits, device)) as executor:
                futures = [executor.submit(_grade_in_slot, s, str(out)) for s in todo]
                start = time.perf_counter()
                for done, future in enumerate(as_completed(futures), 1):
                    submission_id, score, seconds = future.result()
                    if progress:
                        print(f"[{done}/{len(todo)}] {submission_id}: {score:g}/{assignment.rubric.total:g} "
                              f"({seconds:.1f} s; {time.perf_counter() - start:.0f} s elapsed)", file=progress)
        report.write_grades_csv(out, assignment.item_names)
    return [r for r in report.read_results(out) if r["extra_data"]["assignment"] == assignment.name]
