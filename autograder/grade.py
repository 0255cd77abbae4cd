"""Grade submissions: one result record per submission, whatever the submission does.

For each submission: recover its cells (`submission`), run them in a fresh
sandboxed session, run every check of the rubric (`runner`), and turn the
outcomes into a Gradescope-schema result. A check that kills or stalls the
worker, or that the grader itself fails to complete, scores 0 with the reason
and the session is restarted for the next check, so one bad item never costs
the others.

The rubric version recorded with every result is computed from what decides
a grade (see `grading_files`), so a changed check, tolerance or reference
makes earlier results stale without anyone remembering to bump a number.
"""
from __future__ import annotations

import ast
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
from .checks import signature
from .discovery import known_assignments
from .trusted import described
from .rubric import Item, Rubric
from .replays import Replays
from .runner import Outcome, run_check
from .sandbox import Limits, WorkerError, WorkerPool
from .student import Student
from .submission import recover

PACKAGES = ("torch", "numpy", "hypothesis", "nbgrader")
GRADE_DECIDING_PACKAGES = ("torch", "hypothesis")   # numerics and the examples drawn
# Modules whose code decides a grade, followed through their imports from this project (see grading_files).
GRADE_DECIDING_MODULES = ("autograder.runner", "autograder.submission")
FORBIDDEN_LINE = "forbidden call:"  # starts the feedback line of a forbidden call (the class report skips it)


@dataclass(frozen=True)
class Assignment:
    """What grading one assignment needs: its rubric, the set-up cells of its source notebook, the version
    of everything that decides a grade, and the grade ids of every assignment's source (to recognise a
    notebook of another assignment)."""

    name: str
    rubric: Rubric
    setup_cells: tuple[dict, ...]
    version: str = ""
    grade_ids: tuple[tuple[str, frozenset[str]], ...] = ()   # (assignment, ids no other assignment uses)

    @classmethod
    def load(cls, name: str) -> "Assignment":
        if name not in known_assignments():
            known = ", ".join(known_assignments()) or "none"
            raise SystemExit(f"no rubric for assignment {name!r}; graded assignments: {known}")
        module = importlib.import_module(f"autograder.rubrics.{name}")
        source = build.source_path(name)
        if not source.exists():
            raise SystemExit(f"{source} is missing: run `make notebooks` to build it")
        nb = json.loads(source.read_text())
        setup = tuple({"id": c["metadata"]["nbgrader"]["grade_id"], "source": "".join(c["source"])}
                      for c in nb["cells"] if c["cell_type"] == "code"
                      and c.get("metadata", {}).get("course", {}).get("role") == "setup")
        return cls(name, module.RUBRIC, setup, rubric_version(name, module.RUBRIC, setup), _distinct_grade_ids())

    @property
    def item_names(self) -> list[str]:
        return [item.name for item in self.rubric.items]

    def other_assignment(self, grade_ids: set[str]) -> str | None:
        """The assignment a notebook with these cell grade ids belongs to, when it is clearly not this one."""
        ids = dict(self.grade_ids)
        if grade_ids & ids.get(self.name, frozenset()):
            return None
        overlap = {name: len(grade_ids & theirs) for name, theirs in ids.items() if name != self.name}
        best = max(overlap, key=overlap.get, default=None)
        return best if best is not None and overlap[best] else None


def _distinct_grade_ids() -> tuple[tuple[str, frozenset[str]], ...]:
    """Per graded assignment, the grade ids of its source notebook's code cells that no other one uses."""
    ids = {}
    for name in known_assignments():
        try:
            nb = json.loads(build.source_path(name).read_text())
        except (OSError, ValueError):
            continue
        ids[name] = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.get("cells", [])
                     if c.get("cell_type") == "code"} - {None}
    shared = {i for name, mine in ids.items() for other, theirs in ids.items() if name != other for i in mine & theirs}
    return tuple((name, frozenset(mine - shared)) for name, mine in sorted(ids.items()))


def _module_file(module: str) -> Path | None:
    base = build.ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path, module: str) -> set[str]:
    """Modules (and maybe attributes: callers keep those that are files) that `path` imports, anywhere in it."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def grading_files(name: str) -> list[Path]:
    """Every file of this project that decides a grade of `name`: its rubric, the runner and the recovery of
    cells, and all they import from `autograder` and `solutions` (checks, strategies, tolerances and
    comparison, self-checks, the reference solution), plus grade.py, which turns outcomes into points."""
    todo = [f"autograder.rubrics.{name}", *GRADE_DECIDING_MODULES]
    seen: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        path = _module_file(module) if module.split(".")[0] in ("autograder", "solutions") else None
        if path is None or module in seen:
            continue
        seen[module] = path
        todo.extend(_imported(path, module))
    return sorted({*seen.values(), Path(__file__).resolve()})


def rubric_version(name: str, rubric: Rubric, setup_cells: tuple[dict, ...]) -> str:
    """The rubric's own version plus a hash of everything that decides a grade: the files of `grading_files`,
    the set-up cells, and the versions of torch and hypothesis."""
    digest = hashlib.sha256()
    for path in grading_files(name):
        digest.update(path.relative_to(build.ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for cell in setup_cells:
        digest.update(cell["source"].encode() + b"\0")
    for package in GRADE_DECIDING_PACKAGES:
        digest.update(f"{package}={versions()[package]}".encode() + b"\0")
    return f"{rubric.version}-{digest.hexdigest()[:12]}"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _check_points(item: Item, outcomes: list[Outcome]) -> list[float]:
    """Points earned per outcome: a check's share of the item when it passed; convention checks earn nothing
    while the core check fails (no credit for edge cases of maths that is not there)."""
    core_passed = all(o.passed for o in outcomes if o.check.core)
    return [round(item.points_of(o.check), 4) if o.passed and (o.check.core or core_passed) else 0.0
            for o in outcomes]


def _check_record(item: Item, outcome: Outcome, points: float) -> dict:
    check = outcome.check
    if outcome.passed:
        sig = None
    elif outcome.mismatch is not None:
        sig = signature(check.id, outcome.mismatch, outcome.form)
    else:
        sig = f"{check.id}|{'worker_lost' if outcome.worker_lost else 'not_run'}"
    return {"id": check.id, "title": check.title, "passed": outcome.passed, "points": points,
            "max_points": round(item.points_of(check), 4), "signature": sig, "example": outcome.example,
            "message": None if outcome.passed else (str(outcome.mismatch) if outcome.mismatch else outcome.message),
            "hint": check.hint, "sentence": check.sentence}


def _item_result(item: Item, outcomes: list[Outcome], dependency: str | None = None) -> dict:
    """One Gradescope test per item: a line per concept check with its points, every failing concept with its
    own minimal input, and the per-check records in `extra_data`."""
    points = _check_points(item, outcomes)
    score = item.points if all(o.passed for o in outcomes) else round(sum(points), 4)
    core_passed = all(o.passed for o in outcomes if o.check.core)
    lines = [f"(graded with {dependency})"] if dependency else []
    for outcome, earned in zip(outcomes, points):
        check = outcome.check
        mark = "✓" if outcome.passed else "✗"
        worth = f"{earned:g}/{item.points_of(check):.4g}"
        gated = "" if core_passed or check.core or not outcome.passed else ", no credit until the core check passes"
        lines.append(f"{mark} [{check.id}] {check.title} ({worth}{gated})")
        if not outcome.passed:
            lines.extend("  " + line for line in outcome.message.splitlines())
            lines.append(f'  the notebook says: "{check.sentence}"')
    return {"name": item.name, "score": score, "max_score": item.points, "output": "\n".join(lines),
            "status": "passed" if score == item.points else "failed", "visibility": "visible",
            "extra_data": {"item": item.name,
                           "checks": [_check_record(item, o, p) for o, p in zip(outcomes, points)],
                           "dependency": dependency}}


class Grader:
    """Grades submissions of one assignment with one worker pool (one per job slot). With `replays`, every
    check's listed examples come from them instead of being drawn (see `autograder.runner`); the grades are the same."""

    def __init__(self, assignment: Assignment, pool: WorkerPool, limits: Limits, *, replays: Replays | None = None):
        self.assignment = assignment
        self.pool = pool
        self.limits = limits
        self.replays = replays

    def grade(self, path: Path, submission_id: str, *, refused: str = "") -> dict:
        """The result for the notebook at `path`; `refused` (a reason) grades it zero without reading it."""
        start = time.perf_counter()
        if refused:
            return not_graded(self.assignment, submission_id, path, refused, self.pool.level, sha256="")
        try:
            recovered = recover(path, list(self.assignment.setup_cells), self.assignment.item_names)
        except Exception as error:  # noqa: BLE001 - whatever the file does to the parser, this submission only
            recovered, unreadable = None, f"the notebook could not be read ({_plain(error)})"
        else:
            unreadable = recovered.unreadable
        other = recovered and self.assignment.other_assignment(recovered.grade_ids)
        if other:
            unreadable = (f"this is a notebook of the {other!r} assignment (its cells carry {other}'s grade ids), "
                          f"not of {self.assignment.name!r}: grade it with `grade {other}`, or ask for the "
                          f"{self.assignment.name}.ipynb notebook")
        if unreadable:
            return not_graded(self.assignment, submission_id, path, unreadable, self.pool.level,
                              notes=recovered.notes if recovered else [])
        notes = list(recovered.notes)
        tests = self._run_items(recovered.cells, notes)
        return result_record(self.assignment, submission_id, path, tests, notes, self.pool.level,
                             time.perf_counter() - start)

    def _run_items(self, cells: list[dict], notes: list[str]) -> list[dict]:
        deadline = time.monotonic() + self.limits.submission_wall_s
        tests = []
        session = None
        fatal = ""  # once running the cells themselves kills the worker, every later check fails with it
        try:
            for item in self.assignment.rubric.items:
                outcomes = []
                if item.trusted and session is not None:
                    session.close()  # trusted stand-ins get a fresh session, after their own items were graded
                    session = None
                uses: Counter[str] = Counter()  # forbidden calls the worker counted while this item was graded
                for check in item.checks:
                    if not fatal and time.monotonic() > deadline:
                        fatal = f"not run: the submission used up its {self.limits.submission_wall_s:.0f} s time budget"
                    if not fatal and session is None:
                        try:
                            session = self._start(cells, notes, deadline)
                            if item.trusted:
                                session.trust(item.trusted)
                        except WorkerError as error:
                            fatal = f"not run: the worker stopped while running your cells: {error}"
                        except Exception as error:  # noqa: BLE001 - the grader's fault; this submission only
                            fatal = f"not run: the grader failed to start your code ({_plain(error)})"
                    if fatal:
                        outcomes.append(Outcome(check, False, fatal))
                        continue
                    student = Student(session, item.name)
                    outcome = _contained(check, student, self.replays)
                    uses.update(student.forbidden)
                    outcomes.append(outcome)
                    if outcome.worker_lost:
                        session.close()
                        session = None
                tests.append(_with_forbidden(_item_result(item, outcomes, described(list(item.trusted))
                                                          if item.trusted else None), item, uses))
                if item.trusted and session is not None:
                    session.close()
                    session = None
        finally:
            if session is not None:
                session.close()
        return tests

    def _start(self, cells: list[dict], notes: list[str], deadline: float):
        """A fresh session with the submission's cells run in it, stopped by the worker pool even during a
        check when the clock reaches the submission's `deadline`; cell errors become notes."""
        session = self.pool.session(deadline=deadline, watch=self.assignment.rubric.watched_calls)
        try:
            results = session.exec_cells(cells)
        except WorkerError:
            session.close()
            raise
        for result in results:
            if not result.ok:
                note = f"cell {result.id} raised an error: {_last_line(result.error)}"
                if note not in notes:
                    notes.append(note)
        return session


def _contained(check, student: Student, replays: Replays | None) -> Outcome:
    """`run_check`, with anything it raises turned into a zero for this check alone; the session is then
    replaced, since nobody knows what state it is in."""
    try:
        return run_check(check, student, replays)
    except Exception as error:  # noqa: BLE001 - a grader-side failure must never cost other checks or submissions
        return Outcome(check, False, f"the grader could not complete this check ({_plain(error)}); "
                                     "this check scores 0, tell your TA", worker_lost=True)


def _plain(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:300]}"


def result_record(assignment: Assignment, submission_id: str, path: Path, tests: list[dict], notes: list[str],
                  level: str, seconds: float, *, sha256: str | None = None) -> dict:
    """The Gradescope-schema result of one submission."""
    score = round(sum(t["score"] for t in tests), 4)
    return {
        "score": score,
        "execution_time": round(seconds, 3),
        "output": _summary(score, assignment.rubric.total, notes, level),
        "tests": tests,
        "extra_data": {
            "submission": submission_id,
            "assignment": assignment.name,
            "rubric_version": assignment.version,
            "isolation": level,
            "versions": versions(),
            "notes": notes,
            "submission_sha256": _sha256(path) if sha256 is None else sha256,
            "source_path": str(path),
        },
    }


def not_graded(assignment: Assignment, submission_id: str, path: Path, reason: str, level: str, *,
               notes: list[str] = (), sha256: str | None = None) -> dict:
    """A zero on every item, with `reason` (plain words) in each item's feedback and in the notes
    (`sha256=""` for a file that must not be read, not even to hash it)."""
    tests = [{"name": item.name, "score": 0.0, "max_score": item.points, "status": "failed",
              "visibility": "visible", "output": f"✗ not graded: {reason}"} for item in assignment.rubric.items]
    return result_record(assignment, submission_id, path, tests, [*notes, f"could not grade: {reason}"], level, 0.0,
                         sha256=sha256)


def _with_forbidden(test: dict, item: Item, uses: Counter) -> dict:
    """Record in `test` the item's forbidden calls that were used, and take off what the rubric deducts."""
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
