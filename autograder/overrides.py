"""A TA's overrides of engine scores, and the history of earlier gradings.

`GRADES_DIR/overrides.csv` has the columns `student, item, points, comment`:
one row sets the points of one item of one student. `apply_overrides` puts
them into results (the engine's own score stays beside the override, in the
test's `extra_data.override`), so results JSON, grades.csv and the class
report all show the same numbers. Applying is idempotent: it always starts
from the engine's score, so a row deleted from the CSV restores it.

Regrading overwrites `GRADES_DIR/<submission>.json`; `archive_previous` first
copies the old file to `GRADES_DIR/history/<submission>/<NNNN>.json`, and
`last_changes` says what changed between the two latest gradings.
"""
from __future__ import annotations

import copy
import csv
import json
from dataclasses import dataclass
from pathlib import Path

from . import report

OVERRIDES_FILE = "overrides.csv"
COLUMNS = ("student", "item", "points", "comment")
HISTORY_DIR = "history"


class OverrideError(ValueError):
    """A row of overrides.csv that cannot be applied; the message names the row and what to fix."""


@dataclass(frozen=True)
class Override:
    row: int          # line number in overrides.csv (the header is line 1)
    student: str
    item: str
    points: float
    comment: str


def read_overrides(grades_dir: Path) -> list[Override]:
    """The rows of `grades_dir/overrides.csv` (none when the file does not exist)."""
    path = grades_dir / OVERRIDES_FILE
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS[:3] if c not in (reader.fieldnames or [])]
        if missing:
            raise OverrideError(f"{path}: the header must name the columns {', '.join(COLUMNS)}; "
                                f"missing {', '.join(missing)}")
        rows = []
        for line, record in enumerate(reader, start=2):
            if not any((value or "").strip() for value in record.values() if isinstance(value, str)):
                continue  # a blank line
            text = (record.get("points") or "").strip()
            try:
                points = float(text)
            except ValueError:
                raise OverrideError(f"{path} row {line}: points {text!r} is not a number") from None
            rows.append(Override(line, (record.get("student") or "").strip(), (record.get("item") or "").strip(),
                                 points, (record.get("comment") or "").strip()))
    return rows


def _restore_engine_scores(result: dict) -> dict:
    """A copy of `result` with every earlier override taken out again."""
    result = copy.deepcopy(result)
    for test in result.get("tests", []):
        override = (test.get("extra_data") or {}).pop("override", None)
        if override is not None:
            test["score"] = override["original_score"]
            test["status"] = override.get("original_status", test.get("status"))
    override = result.get("extra_data", {}).pop("override", None)
    if override is not None:
        result["score"] = override["original_score"]
    return result


def apply_overrides(results: list[dict], grades_dir: Path) -> list[dict]:
    """`results` (copies) with the rows of `grades_dir/overrides.csv` applied.

    Raises OverrideError naming the row for an unknown student or item, points outside [0, max_score] or a
    second row for the same student and item: a bad row is never skipped silently."""
    results = [_restore_engine_scores(r) for r in results]
    overrides = read_overrides(grades_dir)
    if not overrides:
        return results
    by_student = {r["extra_data"]["submission"]: r for r in results}
    seen: dict[tuple[str, str], int] = {}
    where = grades_dir / OVERRIDES_FILE
    for row in overrides:
        result = by_student.get(row.student)
        if result is None:
            raise OverrideError(f"{where} row {row.row}: no graded submission {row.student!r} in {grades_dir}")
        tests = {t["name"]: t for t in result["tests"]}
        test = tests.get(row.item)
        if test is None:
            raise OverrideError(f"{where} row {row.row}: {row.student!r} has no graded item {row.item!r}; "
                                f"items are {', '.join(tests)}")
        if not 0 <= row.points <= test["max_score"]:
            raise OverrideError(f"{where} row {row.row}: {row.points:g} points for {row.item} is outside "
                                f"0..{test['max_score']:g}")
        if (row.student, row.item) in seen:
            raise OverrideError(f"{where} row {row.row}: {row.student} / {row.item} was already overridden in "
                                f"row {seen[row.student, row.item]}; keep one row per student and item")
        seen[row.student, row.item] = row.row
        test.setdefault("extra_data", {})["override"] = {
            "points": row.points, "comment": row.comment, "original_score": test["score"],
            "original_status": test.get("status")}
        test["score"] = row.points
        test["status"] = "passed" if row.points == test["max_score"] else "failed"
    for result in results:
        overridden = [t["name"] for t in result["tests"] if "override" in t.get("extra_data", {})]
        if overridden:
            result["extra_data"]["override"] = {"original_score": result["score"], "items": overridden}
            result["score"] = round(sum(t["score"] for t in result["tests"]), 4)
    return results


def write_overridden(grades_dir: Path, assignment: str, item_names: list[str],
                     rubric_version: str | None = None) -> list[dict]:
    """Apply overrides.csv to the results of `assignment` in `grades_dir` (of `rubric_version` when given),
    rewrite the result files that changed and grades.csv; return the results as they now stand."""
    stored = [r for r in report.read_results(grades_dir) if isinstance(r["extra_data"], dict)
              and isinstance(r["extra_data"].get("submission"), str)
              and r["extra_data"].get("assignment", assignment) == assignment
              and rubric_version in (None, r["extra_data"].get("rubric_version"))]
    applied = apply_overrides(stored, grades_dir)
    for before, after in zip(stored, applied):
        if before != after:
            report.write_result(grades_dir, after)
    report.write_grades_csv(grades_dir, item_names, rubric_version)
    return applied


# --- regrade history ------------------------------------------------------------------------------

def history_dir(grades_dir: Path, submission_id: str) -> Path:
    return grades_dir / HISTORY_DIR / submission_id


def archive_previous(grades_dir: Path, submission_id: str) -> Path | None:
    """Copy the current result of `submission_id` into its history before a regrade overwrites it.

    Copies are numbered 0001, 0002, ... (the highest is the latest); a result identical to the latest copy is
    not copied again. Returns the copy's path, or None when there was nothing new to keep."""
    current = report.result_path(grades_dir, submission_id)
    try:
        text = current.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    folder = history_dir(grades_dir, submission_id)
    copies = archived(grades_dir, submission_id)
    if copies and copies[-1].read_text(encoding="utf-8") == text:
        return None
    number = int(copies[-1].stem) + 1 if copies else 1
    path = folder / f"{number:04d}.json"
    report.atomic_write(path, text)
    return path


def archived(grades_dir: Path, submission_id: str) -> list[Path]:
    """The history copies of `submission_id`, oldest first."""
    folder = history_dir(grades_dir, submission_id)
    return sorted((p for p in folder.glob("*.json") if p.stem.isdigit()), key=lambda p: int(p.stem))


@dataclass(frozen=True)
class Change:
    """What differs between a student's previous grading and the current one."""

    student: str
    before_total: float
    after_total: float
    items: tuple[tuple[str, float, float], ...]  # (item, before, after) for every item whose score changed
    rubric: tuple[str, str]                      # (before, after) rubric versions


def last_changes(grades_dir: Path, results: list[dict]) -> list[Change]:
    """For every student with a history, the change from the latest archived result to `results`."""
    changes = []
    for result in results:
        student = result["extra_data"]["submission"]
        copies = archived(grades_dir, student)
        if not copies:
            continue
        try:
            before = _restore_engine_scores(json.loads(copies[-1].read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
        after = _restore_engine_scores(result)
        old = {t["name"]: t["score"] for t in before.get("tests", [])}
        new = {t["name"]: t["score"] for t in after["tests"]}
        items = tuple((name, old.get(name, 0.0), new.get(name, 0.0)) for name in dict.fromkeys([*old, *new])
                      if old.get(name, 0.0) != new.get(name, 0.0))
        rubric = (str(before.get("extra_data", {}).get("rubric_version", "")),
                  str(after["extra_data"].get("rubric_version", "")))
        changes.append(Change(student, before.get("score", 0.0), after["score"], items, rubric))
    return changes
