"""The class report on a class of student-shaped submissions (tests/class_batch.py).

Most tests read results built in the shape the engine records per check (tests[i].extra_data.checks);
one fixture grades part of the class with the real grader, whose current results carry no per-check
data, so the report's fallback and the forbidden-call detection are tested on real output too.
"""
from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from autograder import report
from autograder.class_report import collect, write_class_report
from autograder.cli import main
from autograder.grade import Assignment
from autograder.rubrics.attention import RUBRIC
from autograder.similarity import DEFAULT_THRESHOLD

from .class_batch import STUDENTS, write_batch

pytestmark = [pytest.mark.grader, pytest.mark.xdist_group("release")]

# The engine's mismatch signature for each mistake: the same mistake gives the same string.
UNSCALED = "output: values differ at [0, 0] on q(1,2) k(2,2) v(2,1)"
INVERTED = "output: values differ at [0, 0] on bool attn_mask (1,1)"
NO_DIAGONAL = "values differ at [0, 0]: True expected"
NOT_DONE = "raised NotImplementedError"
MISTAKES = {  # student -> {(item, check id): signature}
    "dev": {("scaled_dot_product_attention", "core"): UNSCALED},
    "eve": {("scaled_dot_product_attention", "core"): UNSCALED},
    "finn": {("scaled_dot_product_attention", "core"): INVERTED},
    "gus": {("causal_mask", "core"): NO_DIAGONAL},
    "hana": {("causal_mask", "core"): NO_DIAGONAL},
}
VERSION = Assignment.load("attention").version   # what a grading with this rubric records
UNFINISHED = {"dev", "eve", "finn", "gus", "hana", "ivy"}  # left MultiHeadAttention as released
STARTED_ONLY = {"gus", "hana"}                            # ... and scaled_dot_product_attention too


def contract_result(student: str, notebook: Path) -> dict:
    """The result the engine records for `student` (per-check data as in the helpers' shared contract)."""
    mistakes = dict(MISTAKES.get(student, {}))
    for item in RUBRIC.items:
        for check in item.checks:
            blank = (student == "jo" or (student in UNFINISHED and item.name == "MultiHeadAttention")
                     or (student in STARTED_ONLY and item.name == "scaled_dot_product_attention"))
            if blank:
                mistakes[item.name, check.id] = NOT_DONE
    tests = []
    for item in RUBRIC.items:
        core_failed = any(check.core and (item.name, check.id) in mistakes for check in item.checks)
        checks = []
        for check in item.checks:
            signature = mistakes.get((item.name, check.id))
            share = item.points_of(check)
            earned = 0.0 if signature or (core_failed and not check.core) else share  # the engine's gating
            checks.append({"id": check.id, "title": check.title, "passed": signature is None,
                           "points": earned, "max_points": share, "signature": signature,
                           "example": f"smallest input for {signature}" if signature else None,
                           "message": f"{item.name}: {signature}" if signature else None, "hint": check.hint})
        score = sum(c["points"] for c in checks)
        forbidden = []
        if student == "ivy" and item.name == "scaled_dot_product_attention":
            forbidden = [{"call": "torch.nn.functional.scaled_dot_product_attention", "count": 132, "deducted": 5.0}]
            score = 0.0
        tests.append({"name": item.name, "score": round(score, 4), "max_score": item.points,
                      "status": "passed" if score == item.points else "failed", "visibility": "visible",
                      "output": "(feedback text)", "extra_data": {"item": item.name, "checks": checks,
                                                                   "forbidden": forbidden, "dependency": None}})
    notes = []
    if student == "kai":
        notes = ["could not grade: not a notebook: the file is not valid JSON"]
        for test in tests:
            test.update(score=0.0, status="failed", output="✗ not graded: not a notebook")
            test["extra_data"]["checks"] = []
    return {"score": round(sum(t["score"] for t in tests), 4), "execution_time": 1.0 + STUDENTS.index(student) / 10,
            "output": "", "tests": tests,
            "extra_data": {"submission": student, "assignment": "attention", "rubric_version": VERSION,
                           "isolation": "bwrap", "notes": notes, "submission_sha256": "0" * 64,
                           "source_path": str(notebook)}}


@pytest.fixture(scope="module")
def notebooks(released_attention, tmp_path_factory) -> dict[str, Path]:
    return write_batch(tmp_path_factory.mktemp("class"))


@pytest.fixture
def grades(notebooks, tmp_path) -> Path:
    """A grades folder holding the contract-shaped result of every student."""
    for student, path in notebooks.items():
        report.write_result(tmp_path, contract_result(student, path))
    return tmp_path


@pytest.fixture(scope="module")
def graded(notebooks, tmp_path_factory) -> Path:
    """Part of the class graded by the real grader (sandboxed worker), with its current result format."""
    from autograder.batch import Submission, grade_batch
    from autograder.grade import Assignment

    out = tmp_path_factory.mktemp("graded")
    chosen = ["ana", "dev", "eve", "finn", "ivy", "kai"]
    grade_batch(Assignment.load("attention"), [Submission(s, notebooks[s]) for s in chosen], out, jobs=2,
                progress=None)
    return out


def clusters_by_key(data) -> dict[tuple[str, str], list[str]]:
    return {(c.concept, c.signature): c.students for c in data.clusters}


# --- mistake clusters ----------------------------------------------------------------------------

def test_clusters_group_exactly_the_students_with_the_same_mistake(grades):
    data = collect(RUBRIC, grades)
    clusters = clusters_by_key(data)
    assert clusters["scaled_dot_product_attention/core", UNSCALED] == ["dev", "eve"]
    assert clusters["scaled_dot_product_attention/core", INVERTED] == ["finn"]
    assert clusters["causal_mask/core", NO_DIAGONAL] == ["gus", "hana"]
    assert clusters["MultiHeadAttention/core", NOT_DONE] == sorted([*UNFINISHED, "jo"])
    sizes = [len(c.students) for c in data.clusters]
    assert sizes == sorted(sizes, reverse=True), "largest cluster first"
    assert not any("kai" in c.students for c in data.clusters), "an unreadable file has no checks to cluster"
    unscaled = next(c for c in data.clusters if c.signature == UNSCALED)
    assert unscaled.example == f"smallest input for {UNSCALED}"
    assert unscaled.hint == RUBRIC.item("scaled_dot_product_attention").checks[0].hint


def test_real_results_cluster_the_same_mistake_together(graded):
    data = collect(RUBRIC, graded)
    sdpa = [c for c in data.clusters if c.concept == "scaled_dot_product_attention/core"]
    assert sorted(c.students for c in sdpa) == [["dev", "eve"], ["finn"]], "same mistake together, others apart"
    assert all(c.example and c.hint for c in sdpa)
    assert dict(data.zeros)["kai"].startswith("unreadable")


def test_zeros_come_with_their_reasons(grades):
    zeros = dict(collect(RUBRIC, grades).zeros)
    assert zeros["jo"].startswith("blank") and zeros["kai"].startswith("unreadable: not a notebook")
    assert zeros["gus"] == zeros["hana"] == "answered, but every check failed"
    assert set(zeros) == {"jo", "kai", "gus", "hana"}


# --- forbidden shortcuts -------------------------------------------------------------------------

def test_the_forbidden_alias_is_found_by_the_real_grader_and_costs_the_item(graded):
    ivy = json.loads((graded / "ivy.json").read_text())
    sdpa = next(t for t in ivy["tests"] if t["name"] == "scaled_dot_product_attention")
    [use] = sdpa["extra_data"]["forbidden"]
    assert use["call"] == "torch.nn.functional.scaled_dot_product_attention" and use["count"] > 0
    assert sdpa["score"] == 0 and "forbidden call:" in sdpa["output"]
    assert next(t for t in ivy["tests"] if t["name"] == "causal_mask")["score"] == 2
    ana = json.loads((graded / "ana.json").read_text())
    assert ana["score"] == RUBRIC.total, "an honest solution loses nothing"
    assert all(t["extra_data"]["forbidden"] == [] for t in ana["tests"] if "extra_data" in t)
    data = collect(RUBRIC, graded)
    assert [(s, i, c) for s, i, c, _ in data.forbidden_uses] == [
        ("ivy", "scaled_dot_product_attention", "torch.nn.functional.scaled_dot_product_attention")]


# --- similarity ----------------------------------------------------------------------------------

def test_near_copies_are_flagged_and_independent_solutions_are_not(grades):
    pairs = collect(RUBRIC, grades).pairs
    assert [(p.a.student, p.b.student, p.identical) for p in pairs] == [("ben", "cleo", True), ("ana", "lu", False)]
    assert pairs[1].score >= DEFAULT_THRESHOLD


def test_the_threshold_is_the_tas_choice(grades):
    strict = collect(RUBRIC, grades, similarity_threshold=0.95).pairs
    assert [(p.a.student, p.b.student) for p in strict] == [("ben", "cleo")], "identical pairs are always listed"
    loose = collect(RUBRIC, grades, similarity_threshold=0.0).pairs
    assert len(loose) > 2


def test_similarity_needs_the_notebooks_and_says_so(grades, notebooks):
    for path in grades.glob("*.json"):
        result = json.loads(path.read_text())
        del result["extra_data"]["source_path"]
        path.write_text(json.dumps(result))
    data = collect(RUBRIC, grades)
    assert data.pairs == [] and "--submissions" in data.similarity_note
    found = collect(RUBRIC, grades, submissions=notebooks["ana"].parents[2])
    assert [(p.a.student, p.b.student) for p in found.pairs] == [("ben", "cleo"), ("ana", "lu")]


# --- overrides and history -----------------------------------------------------------------------

def write_overrides(grades: Path, rows: list[str]) -> None:
    """overrides.csv as a TA types it: a header, then one comma-separated row per line."""
    (grades / "overrides.csv").write_text("student,item,points,comment\n" + "\n".join(rows) + "\n")


def test_overrides_apply_to_results_grades_csv_and_report(grades):
    engine = next(t["score"] for t in json.loads((grades / "dev.json").read_text())["tests"]
                  if t["name"] == "scaled_dot_product_attention")
    write_overrides(grades, ["dev,scaled_dot_product_attention,4.5,scaling is right in the written answer"])
    path = write_class_report("attention", grades)
    dev = json.loads((grades / "dev.json").read_text())
    sdpa = next(t for t in dev["tests"] if t["name"] == "scaled_dot_product_attention")
    assert sdpa["score"] == 4.5 and sdpa["extra_data"]["override"]["original_score"] == engine
    assert dev["score"] == 2 + 4.5 and dev["extra_data"]["override"]["original_score"] == pytest.approx(2 + engine)
    rows = {r["submission"]: r for r in csv.DictReader(io.StringIO((grades / "grades.csv").read_text()))}
    assert rows["dev"]["scaled_dot_product_attention"] == "4.5" and rows["dev"]["total"] == "6.5"
    assert "scaling is right in the written answer" in path.read_text()
    write_overrides(grades, [])  # the TA deletes the row: the engine's score comes back
    write_class_report("attention", grades)
    dev = json.loads((grades / "dev.json").read_text())
    assert dev["score"] == pytest.approx(2 + engine) and "override" not in dev["extra_data"]


@pytest.mark.parametrize("row, words", [
    ("zed,causal_mask,1,", "row 2: no graded submission 'zed'"),
    ("ana,causal,1,", "row 2: 'ana' has no graded item 'causal'"),
    ("ana,causal_mask,3,", "row 2: 3 points for causal_mask is outside 0..2"),
    ("ana,causal_mask,-1,", "row 2: -1 points"),
    ("ana,causal_mask,two,", "row 2: points 'two' is not a number"),
])
def test_a_bad_override_row_is_an_error_naming_the_row(grades, row, words, capsys):
    write_overrides(grades, [row])
    assert main(["report", "attention", str(grades)]) == 2
    assert words in capsys.readouterr().err
    assert not (grades / "report.html").exists()


def test_a_second_row_for_the_same_item_is_an_error(grades, capsys):
    write_overrides(grades, ["ana,causal_mask,1,", "ana,causal_mask,2,"])
    assert main(["report", "attention", str(grades)]) == 2
    assert "row 3: ana / causal_mask was already overridden in row 2" in capsys.readouterr().err


def test_regrading_keeps_the_history_and_the_report_shows_the_change(grades):
    from autograder.overrides import archive_previous, archived

    first = archive_previous(grades, "finn")
    assert first == grades / "history" / "finn" / "0001.json"
    assert archive_previous(grades, "finn") is None, "an unchanged result is not archived twice"
    regraded = json.loads((grades / "finn.json").read_text())
    sdpa = next(t for t in regraded["tests"] if t["name"] == "scaled_dot_product_attention")
    sdpa["score"], regraded["score"] = 5.0, regraded["score"] + 5.0 - sdpa["score"]
    report.write_result(grades, regraded)
    assert archive_previous(grades, "missing-student") is None
    html = write_class_report("attention", grades).read_text()
    assert "scaled_dot_product_attention: 0 → 5" in html, "finn's inverted mask failed the core check"
    archive_previous(grades, "finn")
    assert [p.name for p in archived(grades, "finn")] == ["0001.json", "0002.json"]


# --- the files -----------------------------------------------------------------------------------

class Structure(HTMLParser):
    """Collects tags, checks that every element that must be closed is closed in order, and every URL."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "rect", "path", "line", "circle"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value or "" for name, value in attrs if name in ("src", "href", "xlink:href", "action")]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def parse(text: str) -> Structure:
    parser = Structure()
    parser.feed(text)
    parser.close()
    return parser


def test_the_report_is_valid_self_contained_and_has_its_plots(grades):
    text = write_class_report("attention", grades).read_text()
    page = parse(text)
    assert page.errors == [] and page.stack == []
    assert not [u for u in page.urls if u.startswith(("http://", "https://", "//"))]
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert page.tags.count("svg") == 1 + len(RUBRIC.items) + 1, "total, one per item, failure rates"
    assert page.tags.count("rect") > 10
    for heading in ("Scores", "Failure rate per concept check", "Mistake clusters", "Forbidden shortcuts",
                    "Similar solution code", "Overrides", "Grading facts"):
        assert f"<h2>{heading}</h2>" in text
    assert re.search(r"mean \d+(\.\d+)?, median \d+(\.\d+)?", text)
    assert "ivy" in text.split("Forbidden shortcuts")[1].split("Similar solution code")[0]
    assert "kai (2.1 s), jo (2.0 s)" in text, "the slowest submissions are named"


HOSTILE_ID = '<script>alert("id")</script>'
HOSTILE_CODE = 'x = "</pre><script>alert(1)</script>"  # <img src=x onerror=alert(2)>'


def test_student_controlled_text_is_escaped(grades, notebooks):
    import nbformat

    nb = nbformat.read(notebooks["ben"], as_version=4)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "causal_mask":
            cell.source += "\n" + HOSTILE_CODE
    hostile_notebook = grades / "hostile.ipynb"
    nbformat.write(nb, hostile_notebook)
    result = contract_result("ben", hostile_notebook)
    result["extra_data"]["submission"] = HOSTILE_ID
    result["tests"][0]["extra_data"]["checks"][0].update(passed=False, signature='<b onmouseover="x()">',
                                                           message="</pre><script>alert(3)</script>")
    (grades / "hostile.json").write_text(json.dumps(result))
    quoted = HOSTILE_ID.replace('"', '""')
    write_overrides(grades, [f'"{quoted}",causal_mask,1,<img src=x onerror=alert(4)>'])
    text = write_class_report("attention", grades).read_text()
    page = parse(text)
    assert page.errors == [] and "script" not in page.tags and "img" not in page.tags
    assert "&lt;b onmouseover=&quot;x()&quot;&gt;" in text
    assert "&lt;script&gt;alert(&quot;id&quot;)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(4)&gt;" in text
    assert 'onerror=alert(2)' not in re.sub(r"&lt;img src=x onerror=alert\(\d\)&gt;", "", text)


def test_concepts_csv_has_a_row_per_student_and_a_column_per_check(grades):
    write_class_report("attention", grades)
    rows = list(csv.reader(io.StringIO((grades / "concepts.csv").read_text())))
    concepts = [f"{item.name}/{check.id}" for item in RUBRIC.items for check in item.checks]
    assert rows[0] == ["student", *concepts, "total"]
    table = {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert sorted(table) == sorted(STUDENTS)
    assert table["dev"]["scaled_dot_product_attention/core"] == "0"
    sdpa = RUBRIC.item("scaled_dot_product_attention")
    assert table["ana"]["scaled_dot_product_attention/core"] == f"{sdpa.points_of(sdpa.checks[0]):g}"
    assert table["kai"]["causal_mask/core"] == "", "no check ran on an unreadable file"


def test_the_report_command_writes_both_files(grades, notebooks, capsys):
    assert main(["report", "attention", str(grades), "--submissions", str(notebooks["ana"].parents[2]),
                 "--similarity-threshold", "0.5"]) == 0
    assert "report.html" in capsys.readouterr().out
    assert (grades / "report.html").exists() and (grades / "concepts.csv").exists()
    assert main(["report", "attention", str(grades / "nowhere")]) == 2


# --- reading any result ----------------------------------------------------------------------------

def engine_result(outputs: list[str], notes=()) -> dict:
    return {"score": 0.0, "tests": [{"name": f"item{i}", "score": 0.0, "max_score": 1.0, "output": text}
                                    for i, text in enumerate(outputs)],
            "extra_data": {"submission": "s", "notes": list(notes)}}


@pytest.mark.parametrize("outputs, notes, reason", [
    (["✗ not graded: the file is empty"], ["could not grade: the file is empty"], "unreadable: the file is empty"),
    (["✗ core\n  timed out after 10 s of CPU time"], [], "timed out"),
    (["✗ core\n  the worker process running your code was killed by SIGKILL (out of memory?)"], [], "crashed"),
    (["✗ core\n  not run: the worker stopped while running your cells: boom"], [], "crashed"),
    (["✗ a\n  f: raised NotImplementedError", "✗ b\n  g: raised NotImplementedError"], [], "blank"),
    (["✗ a\n  f: values differ", "✗ b\n  g: raised NotImplementedError"], [], "answered, but every check failed"),
])
def test_every_zero_gets_a_reason_a_ta_can_act_on(outputs, notes, reason):
    from autograder.class_report import zero_reason

    assert zero_reason(engine_result(outputs, notes)).startswith(reason)


def test_feedback_without_check_lines_counts_as_one_check_per_item():
    from autograder.class_report import checks_of

    [check] = checks_of({"name": "f", "score": 0.5, "max_score": 1.0, "output": "something went wrong"})
    assert (check.concept, check.passed, check.signature) == ("f/item", False, "failed")
    assert checks_of({"name": "f", "score": 1.0, "max_score": 1.0, "output": ""})[0].passed


def test_applying_overrides_twice_changes_nothing(grades):
    from autograder.overrides import apply_overrides

    write_overrides(grades, ["ana,causal_mask,1.5,late"])
    results = report.read_results(grades)
    once = apply_overrides(results, grades)
    assert apply_overrides(once, grades) == once
    assert next(r for r in once if r["extra_data"]["submission"] == "ana")["score"] == RUBRIC.total - 0.5
    assert results == report.read_results(grades), "the results passed in are not modified"
