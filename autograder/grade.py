"""Grade submissions: one result record per submission, whatever the submission does.

For each submission: recover its cells (`submission`), run them in a fresh
sandboxed session, run every check of the rubric (`runner`), and turn the
outcomes into a Gradescope-schema result. A check that kills or stalls the
worker scores 0 and the session is restarted for the next check, so one bad
item never costs the others.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import platform
import time
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from . import build
from .rubric import Item, Rubric
from .runner import Outcome, run_check
from .sandbox import Limits, WorkerError, WorkerPool
from .student import Student
from .submission import recover

PACKAGES = ("torch", "numpy", "hypothesis", "nbgrader")
FORBIDDEN_LINE = "forbidden call:"  # starts the feedback line of a forbidden call (the class report skips it)


@dataclass(frozen=True)
class Assignment:
    """What grading one assignment needs: its rubric and the set-up cells of its source notebook."""

    name: str
    rubric: Rubric
    setup_cells: tuple[dict, ...]

    @classmethod
    def load(cls, name: str) -> "Assignment":
        try:
            module = importlib.import_module(f"autograder.rubrics.{name}")
        except ModuleNotFoundError:
            known = ", ".join(known_assignments()) or "none"
            raise SystemExit(f"no rubric for assignment {name!r}; graded assignments: {known}") from None
        source = build.source_path(name)
        if not source.exists():
            raise SystemExit(f"{source} is missing: run `make notebooks` to build it")
        nb = json.loads(source.read_text())
        setup = tuple({"id": c["metadata"]["nbgrader"]["grade_id"], "source": "".join(c["source"])}
                      for c in nb["cells"] if c["cell_type"] == "code"
                      and c.get("metadata", {}).get("course", {}).get("role") == "setup")
        return cls(name, module.RUBRIC, setup)

    @property
    def item_names(self) -> list[str]:
        return [item.name for item in self.rubric.items]


def known_assignments() -> list[str]:
    folder = Path(__file__).parent / "rubrics"
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _item_result(item: Item, outcomes: list[Outcome]) -> dict:
    total_weight = sum(check.weight for check in item.checks)
    earned = sum(o.check.weight for o in outcomes if o.passed)
    score = round(item.points * earned / total_weight, 4) if total_weight else 0.0
    lines = []
    for outcome in outcomes:
        mark = "✓" if outcome.passed else "✗"
        lines.append(f"{mark} {outcome.check.title}")
        if not outcome.passed:
            lines.extend("  " + line for line in outcome.message.splitlines())
    return {"name": item.name, "score": score, "max_score": item.points, "output": "\n".join(lines),
            "status": "passed" if score == item.points else "failed", "visibility": "visible"}


class Grader:
    """Grades submissions of one assignment with one worker pool (one per job slot)."""

    def __init__(self, assignment: Assignment, pool: WorkerPool, limits: Limits):
        self.assignment = assignment
        self.pool = pool
        self.limits = limits

    def grade(self, path: Path, submission_id: str) -> dict:
        start = time.perf_counter()
        rubric = self.assignment.rubric
        recovered = recover(path, list(self.assignment.setup_cells), self.assignment.item_names)
        notes = list(recovered.notes)
        tests = []
        if recovered.unreadable:
            notes.append(f"could not grade: {recovered.unreadable}")
            tests = [{"name": item.name, "score": 0.0, "max_score": item.points, "status": "failed",
                      "visibility": "visible", "output": f"✗ not graded: {recovered.unreadable}"}
                     for item in rubric.items]
        else:
            tests = self._run_items(recovered.cells, notes)
        score = round(sum(t["score"] for t in tests), 4)
        return {
            "score": score,
            "execution_time": round(time.perf_counter() - start, 3),
            "output": _summary(score, rubric.total, notes, self.pool.level),
            "tests": tests,
            "extra_data": {
                "submission": submission_id,
                "assignment": rubric.assignment,
                "rubric_version": rubric.version,
                "isolation": self.pool.level,
                "versions": versions(),
                "notes": notes,
                "submission_sha256": _sha256(path),
            },
        }

    def _run_items(self, cells: list[dict], notes: list[str]) -> list[dict]:
        deadline = time.monotonic() + self.limits.submission_wall_s
        tests = []
        session = None
        fatal = ""  # once running the cells themselves kills the worker, every later check fails with it
        try:
            for item in self.assignment.rubric.items:
                outcomes = []
                uses: Counter[str] = Counter()  # forbidden calls the worker counted while this item was graded
                for check in item.checks:
                    if not fatal and time.monotonic() > deadline:
                        fatal = f"not run: the submission used up its {self.limits.submission_wall_s:.0f} s time budget"
                    if not fatal and session is None:
                        try:
                            session = self._start(cells, notes)
                        except WorkerError as error:
                            fatal = f"not run: the worker stopped while running your cells: {error}"
                    if fatal:
                        outcomes.append(Outcome(check, False, fatal))
                        continue
                    student = Student(session, item.name)
                    outcome = run_check(check, student)
                    uses.update(student.forbidden)
                    outcomes.append(outcome)
                    if outcome.worker_lost:
                        session.close()
                        session = None
                tests.append(_with_forbidden(_item_result(item, outcomes), item, uses))
        finally:
            if session is not None:
                session.close()
        return tests

    def _start(self, cells: list[dict], notes: list[str]):
        """A fresh session with the submission's cells run in it; cell errors become notes."""
        session = self.pool.session()
        try:
            results = session.exec_cells(cells, watch=self.assignment.rubric.watched_calls)
        except WorkerError:
            session.close()
            raise
        for result in results:
            if not result.ok:
                note = f"cell {result.id} raised an error: {_last_line(result.error)}"
                if note not in notes:
                    notes.append(note)
        return session


def _with_forbidden(test: dict, item: Item, uses: Counter) -> dict:
    """Record in `test` the item's forbidden calls that were used, and take off what the rubric deducts."""
    if not item.forbidden:
        return test
    found, lines = [], []
    for rule in item.forbidden:
        count = uses.get(rule.call, 0)
        if not count:
            continue
        taken = min(rule.deduct, test["score"])
        test["score"] = round(test["score"] - taken, 4)
        found.append({"call": rule.call, "count": count, "deducted": taken})
        cost = f"{taken:g} points taken off" if taken else "flagged for the course staff, no points taken off"
        lines.append(f"✗ {FORBIDDEN_LINE} {rule.call}, called {count} times while graded; the task does not "
                     f"allow it: {cost}")
    test.setdefault("extra_data", {"item": item.name})["forbidden"] = found
    if lines:
        test["output"] = "\n".join([test["output"], *lines]).strip("\n")
        test["status"] = "passed" if test["score"] == test["max_score"] else "failed"
    return test


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def _summary(score: float, total: float, notes: list[str], level: str) -> str:
    lines = [f"Score: {score:g} / {total:g}", f"Isolation: {level}"]
    lines += [f"Note: {note}" for note in notes]
    return "\n".join(lines)


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
