"""The class report: what a batch of results says about the class, for TAs.

`write_class_report(assignment, grades_dir)` reads every result in
`grades_dir` (with the TA's overrides applied, see `autograder.overrides`)
and writes `report.html` (one self-contained file; `autograder.report_html`
draws it) and `concepts.csv` (a row per student, a column per concept check).

Per-check data comes from `tests[i].extra_data.checks` (id, passed, points,
signature, example, message, hint). Results written before the engine
recorded it are read from the item's feedback text instead (one ✓/✗ line per
check), so an old batch still gets a report, with coarser mistake clusters.
"""
from __future__ import annotations

import csv
import io
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from . import overrides, report, similarity
from .batch import discover
from .grade import FORBIDDEN_LINE, Assignment
from .rubric import Rubric


@dataclass(frozen=True)
class CheckResult:
    """One concept check of one item for one student."""

    item: str
    id: str
    title: str
    passed: bool
    points: float | None
    max_points: float | None
    signature: str | None
    example: str
    message: str
    hint: str

    @property
    def concept(self) -> str:
        """Check ids repeat across items (every item has a matches_reference): the concept is item/check."""
        return f"{self.item}/{self.id}"


def checks_of(test: dict) -> list[CheckResult]:
    """The concept checks of one test (a graded item): from extra_data.checks, else from the feedback text."""
    extra = test.get("extra_data") if isinstance(test.get("extra_data"), dict) else {}
    item = str(test.get("name", "?"))
    recorded = extra.get("checks")
    if isinstance(recorded, list) and recorded:
        return [CheckResult(item, str(c.get("id", "?")), str(c.get("title") or c.get("id", "?")), bool(c.get("passed")),
                            _number(c.get("points")), _number(c.get("max_points")), _text_or_none(c.get("signature")),
                            str(c.get("example") or ""), str(c.get("message") or ""), str(c.get("hint") or ""))
                for c in recorded if isinstance(c, dict)]
    return _checks_from_feedback(item, str(test.get("output", "")), test)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text_or_none(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _checks_from_feedback(item: str, output: str, test: dict) -> list[CheckResult]:
    """Old results: '✓ title' / '✗ title' lines, each failure followed by indented lines (reason, input, hint)."""
    checks: list[CheckResult] = []
    blocks: list[tuple[bool, str, list[str]]] = []
    for line in output.splitlines():
        if line.startswith(("✓ ", "✗ ")):
            blocks.append((line.startswith("✓"), line[2:].strip(), []))
        elif blocks and line.startswith("  "):
            blocks[-1][2].append(line[2:])
    for passed, title, body in blocks:
        if title.startswith(FORBIDDEN_LINE):
            continue  # not a check: recorded in extra_data.forbidden
        if title.startswith("not graded:"):
            return []  # the notebook could not be read: no check ran (the zero's reason says why)
        hint = next((b.strip().removeprefix("hint:").strip() for b in body if b.strip().startswith("hint:")), "")
        message = "\n".join(b for b in body if not b.strip().startswith("hint:"))
        reason, _, example = message.partition("smallest failing input:")
        first = reason.split("\n", 1)[0]
        # The same mistake shrinks to the same smallest input; the reason's numbers (dtype sizes, values) are
        # dropped so that a float64 example of a mistake is not a different mistake.
        signature = None if passed else (re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", f"{title}: {first}")
                                         + (f" on {' '.join(example.split())}" if example else ""))
        checks.append(CheckResult(item, _slug(title), title, passed, None, None, signature, example.strip("\n"),
                                  message, hint))
    if not checks:  # no per-check text at all: the item is one check
        passed = test.get("score") == test.get("max_score")
        checks.append(CheckResult(item, "item", item, passed, _number(test.get("score")), _number(test.get("max_score")),
                                  None if passed else "failed", "", output, ""))
    return checks


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") or "check"


# --- what the report shows -----------------------------------------------------------------------

@dataclass
class Cluster:
    """Students who failed the same check in the same way."""

    concept: str
    title: str
    signature: str
    students: list[str]
    example: str
    message: str
    hint: str


@dataclass
class ClassData:
    """Everything the report shows, gathered once from the results (and notebooks) of one assignment."""

    assignment: str
    item_names: list[str]
    max_scores: dict[str, float]
    results: list[dict]
    checks: dict[str, list[CheckResult]]                  # student -> every check
    concepts: list[tuple[str, str]]                       # (concept, title) in rubric order
    clusters: list[Cluster]
    zeros: list[tuple[str, str]]                          # (student, reason)
    forbidden_rules: dict[str, list[tuple[str, float]]]   # item -> [(call, deduct)]
    forbidden_uses: list[tuple[str, str, str, int]]       # (student, item, call, count)
    pairs: list[similarity.Pair]
    similarity_note: str
    similarity_threshold: float
    applied_overrides: list[tuple[str, str, float, float, str]]  # (student, item, engine score, points, comment)
    changes: list[overrides.Change]

    @property
    def total(self) -> float:
        return sum(self.max_scores.values())


def zero_reason(result: dict) -> str:
    """Why a result scored zero, in the words a TA would use."""
    notes = result["extra_data"].get("notes", [])
    unreadable = [n for n in notes if n.startswith("could not grade")]
    if unreadable:
        return f"unreadable: {unreadable[0].removeprefix('could not grade: ')}"
    # Per item, its feedback text and its checks' messages: either may carry the words.
    outputs = [" ".join([str(t.get("output", "")), *(f"{c.message} {c.signature}" for c in checks_of(t))])
               for t in result["tests"]]
    if any("timed out" in o for o in outputs):
        return "timed out"
    if any("worker process running your code" in o or "worker stopped" in o or "could not be started" in o
           for o in outputs):
        return "crashed"
    if outputs and all("NotImplementedError" in o for o in outputs):
        return "blank: every task still raises NotImplementedError"
    if any(use.get("deducted") for t in result["tests"] for use in (t.get("extra_data") or {}).get("forbidden") or []
           if isinstance(use, dict)):
        return "points taken off for forbidden calls"
    return "answered, but every check failed"


def _clusters(checks: dict[str, list[CheckResult]]) -> list[Cluster]:
    """Failed checks grouped by (concept, signature); the first student's check stands for the group."""
    first: dict[tuple[str, str], CheckResult] = {}
    students: dict[tuple[str, str], list[str]] = defaultdict(list)
    for student in sorted(checks):
        for check in checks[student]:
            if not check.passed:
                key = (check.concept, check.signature or check.message.split("\n", 1)[0] or "failed")
                first.setdefault(key, check)
                students[key].append(student)
    clusters = [Cluster(concept, check.title, signature, students[concept, signature], check.example,
                        check.message, check.hint)
                for (concept, signature), check in first.items()]
    return sorted(clusters, key=lambda c: (-len(c.students), c.concept, c.signature))


def _forbidden_uses(results: list[dict]) -> list[tuple[str, str, str, int]]:
    uses = []
    for result in results:
        for test in result["tests"]:
            extra = test.get("extra_data") if isinstance(test.get("extra_data"), dict) else {}
            for use in extra.get("forbidden") or []:
                if isinstance(use, dict) and isinstance(use.get("count"), int) and use["count"] > 0:
                    uses.append((result["extra_data"]["submission"], test["name"], str(use.get("call")), use["count"]))
    return sorted(uses)


def _notebooks(results: list[dict], assignment: str, submissions: Path | None) -> dict[str, Path]:
    """Where each submitted notebook is: the result's source_path, else its id found under `submissions`."""
    under = {s.id: s.path for s in discover([submissions], assignment)} if submissions is not None else {}
    notebooks = {}
    for result in results:
        student = result["extra_data"]["submission"]
        source = result["extra_data"].get("source_path")
        path = Path(source) if isinstance(source, str) and Path(source).is_file() else under.get(student)
        if path is not None and path.is_file():
            notebooks[student] = path
    return notebooks


def _released(assignment: str) -> Path | None:
    """The released notebook (the starter code every student received); released now when missing."""
    from .release import release, released_notebook

    path = released_notebook(assignment)
    if not path.exists():
        print(f"releasing {assignment} to read its starter code", file=sys.stderr)
        release([assignment])
    return path if path.exists() else None


def _similarity(results: list[dict], rubric: Rubric, submissions: Path | None,
                threshold: float) -> tuple[list[similarity.Pair], str]:
    notebooks = _notebooks(results, rubric.assignment, submissions)
    if not notebooks:
        return [], ("not computed: the results do not say where the notebooks are; "
                    "run `report` with --submissions PATH (the folder that was graded)")
    if len(notebooks) < 2:
        return [], "not computed: one notebook has nothing to be compared with"
    names = [item.name for item in rubric.items]
    starter = similarity.starter_prints(_released(rubric.assignment))
    codes = [similarity.load_code(student, path, names, starter) for student, path in sorted(notebooks.items())]
    missing = len(results) - len(notebooks)
    note = f"compared {len(codes)} notebooks"
    if missing:
        note += f"; {missing} submission(s) whose notebook was not found are left out"
    return similarity.similar_pairs(codes, threshold), note


def collect(rubric: Rubric, grades_dir: Path, *, submissions: Path | None = None,
            similarity_threshold: float = similarity.DEFAULT_THRESHOLD, rubric_version: str | None = None) -> ClassData:
    """Everything the report shows, from the results in `grades_dir` with overrides applied (and written)."""
    item_names = [item.name for item in rubric.items]
    results = overrides.write_overridden(grades_dir, rubric.assignment, item_names, rubric_version)
    checks = {r["extra_data"]["submission"]: [c for t in r["tests"] for c in checks_of(t)] for r in results}
    concepts: dict[str, str] = {}
    for name in item_names:
        for student_checks in checks.values():
            for check in student_checks:
                if check.item == name:
                    concepts.setdefault(check.concept, check.title)
    applied = [(r["extra_data"]["submission"], t["name"], t["extra_data"]["override"]["original_score"],
                t["score"], t["extra_data"]["override"]["comment"])
               for r in results for t in r["tests"] if "override" in (t.get("extra_data") or {})]
    pairs, note = _similarity(results, rubric, submissions, similarity_threshold)
    return ClassData(
        assignment=rubric.assignment, item_names=item_names,
        max_scores={item.name: item.points for item in rubric.items}, results=results, checks=checks,
        concepts=list(concepts.items()), clusters=_clusters(checks),
        zeros=[(r["extra_data"]["submission"], zero_reason(r)) for r in results if r["score"] == 0],
        forbidden_rules={item.name: [(f.call, f.deduct) for f in item.forbidden] for item in rubric.items
                         if item.forbidden},
        forbidden_uses=_forbidden_uses(results), pairs=pairs, similarity_note=note,
        similarity_threshold=similarity_threshold, applied_overrides=applied,
        changes=overrides.last_changes(grades_dir, results))


def concepts_csv(data: ClassData) -> str:
    """A row per student, a column per concept check: points earned (1/0 where the result has no points)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    concepts = [concept for concept, _ in data.concepts]
    writer.writerow(["student", *concepts, "total"])
    for result in data.results:
        student = result["extra_data"]["submission"]
        earned = {c.concept: (c.points if c.points is not None else float(c.passed)) for c in data.checks[student]}
        writer.writerow([student, *(f"{earned[c]:g}" if c in earned else "" for c in concepts),
                         f"{result['score']:g}"])
    return buffer.getvalue()


def summary_numbers(totals: list[float]) -> dict[str, float]:
    if not totals:
        return {"mean": 0.0, "median": 0.0}
    return {"mean": statistics.fmean(totals), "median": statistics.median(totals)}


def write_class_report(assignment_name: str, grades_dir: Path, *, submissions: Path | None = None,
                       similarity_threshold: float = similarity.DEFAULT_THRESHOLD) -> Path:
    """Write `grades_dir/report.html` and `grades_dir/concepts.csv`; return the report's path."""
    from .report_html import render  # it imports this module

    grades_dir = Path(grades_dir)
    assignment = Assignment.load(assignment_name)
    data = collect(assignment.rubric, grades_dir, submissions=submissions, similarity_threshold=similarity_threshold,
                   rubric_version=assignment.version)
    report.atomic_write(grades_dir / "concepts.csv", concepts_csv(data))
    path = grades_dir / "report.html"
    report.atomic_write(path, render(data))
    return path
