"""Discussion worksheets: every question of the worksheet under its own number with a worked answer, none of it in
the student version, and solutions that render clean.

The expected question numbers come from the worksheets themselves (the course materials in the project's shared
folder, `../shared/course-materials` from the repository root), not from the notebooks being checked.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from autograder import build
from autograder.release import SOLUTIONS_BANNER, render_solutions, solution_notebook

pytestmark = [pytest.mark.discussions, pytest.mark.xdist_group("release")]

MATERIALS = build.ROOT.parent / "shared" / "course-materials"
# Each notebook answers the worksheets whose title line matches (the fine-tuning review also takes the in-class
# exercises of the EEP 596 lecture on fine-tuning BERT).
SOURCES = {
    "discussion10": [r"^#+ *Discussion 10 *$"],
    "discussion11": [r"^#+ *Discussion 11 *$"],
    "finetuning_review": [r"^Review: Fine-tuning *$", r"^#+ *EEP 596\b"],
}
SECTION = re.compile(r"^#+ *(\d+)\. ")
ITEM = re.compile(r"^\s*(?:- )?(?:\(([a-z]+)\)|([ivx]+)\.)\s")
EXERCISE = re.compile(r"^#+ *(ICE\b.*?)(?: continued)? *$")
ROMAN = ("i", "ii", "iii", "iv", "v", "vi")
HEADING = re.compile(r"^### (.+)$", re.M)


def worksheet_questions(text: str) -> list[str]:
    """The question numbers of one worksheet, in order: `Q1(c)`, `Q1(c)(i)`, ..., and `ICE ...` exercise titles.

    A section may first list things that are not questions with letters — the three models of Discussion 11 Q1,
    the four steps of a ViT — and then restart at (a) for the questions: only a section's last run of letters
    counts. "(i)" is the letter after (h), and otherwise the first of a question's roman-numbered parts."""
    labels, section, run, letter = [], None, [], ""
    for line in text.splitlines():
        if match := SECTION.match(line):
            labels += run
            section, run, letter = match.group(1), [], ""
        elif match := EXERCISE.match(line):
            labels += run
            section, run, letter = None, [], ""
            if match.group(1) not in labels:
                labels.append(match.group(1))
        elif section and (match := ITEM.match(line)):
            name = match.group(1) or match.group(2)
            if match.group(1) and (name == "a" or (len(name) == 1 and ord(name) == ord(letter or "`") + 1)):
                if name == "a":
                    run = []  # a fresh run: what came before was a list, not questions
                letter = name
                run.append(f"Q{section}({letter})")
            elif name in ROMAN and letter:
                run.append(f"Q{section}({letter})({name})")
    return labels + run


def expected_questions(name: str) -> list[str]:
    if not MATERIALS.is_dir():
        pytest.skip(f"the worksheets are not at {MATERIALS}")
    texts = [path.read_text() for path in sorted(MATERIALS.glob("*.txt"))]
    labels = []
    for title in SOURCES[name]:
        (text,) = [t for t in texts if re.search(title, t, re.M)]
        labels += worksheet_questions(text)
    return labels


def cells(name: str) -> list:
    return nbformat.read(build.source_path(name), as_version=4).cells


def role(cell) -> str | None:
    return cell.metadata.get("course", {}).get("role")


def matches(heading: str, label: str) -> bool:
    """`Q1(c)(ii) — relative biases` is question Q1(c)(ii) (not Q1(c)); `ICE #1: dimensions` is ICE #1."""
    heading, label = heading.lower().replace("-", ""), label.lower().replace("-", "")
    return heading == label or (heading.startswith(label) and heading[len(label)] in " :")


def question_headings(notebook: list) -> list[tuple[str, int]]:
    """(heading, cell index) of every `### ` heading in the plain markdown cells students receive."""
    return [(heading.strip(), index) for index, cell in enumerate(notebook)
            if cell.cell_type == "markdown" and role(cell) is None for heading in HEADING.findall(cell.source)]


def test_the_worksheet_parser_reads_the_numbering_as_printed():
    text = "\n".join(["## 1. Models", "- (a) **BERT** encoder", "- (b) T5", "- (a) State the objective.",
                      "- (b) Consider MNLI.", "(i)\tWith each model, say whether.", "- (ii) With finetuning, how?",
                      "#### 2. More", "- (a) Why?", "  - i. Which bias?", "  - ii. How many?",
                      *[f"({letter}) Question {letter}?" for letter in "bcdefgh"], "(i) Encoder or decoder?",
                      "# ICE #1", "Some text (a) in passing.", "# ICE #1 continued"])
    assert worksheet_questions(text) == ["Q1(a)", "Q1(b)", "Q1(b)(i)", "Q1(b)(ii)", "Q2(a)", "Q2(a)(i)", "Q2(a)(ii)",
                                         *[f"Q2({letter})" for letter in "bcdefghi"], "ICE #1"]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_worksheet_question_has_its_heading_in_order_with_the_question_and_an_answer(name):
    expected = expected_questions(name)
    assert len(expected) >= 10, f"only {expected} read from the worksheets: has their layout changed?"
    notebook = cells(name)
    headings = question_headings(notebook)
    found = []
    for label in expected:
        places = [position for position, (heading, _) in enumerate(headings) if matches(heading, label)]
        assert places, f"{name}: no `### {label}` heading (the worksheet asks it)"
        found.append(places[0])
    assert found == sorted(found), f"{name}: questions out of the worksheet's order: {expected}"
    for position in found:
        heading, start = headings[position]
        end = headings[position + 1][1] if position + 1 < len(headings) else len(notebook)
        asked = notebook[start].source.split(f"### {heading}", 1)[1].split("\n#")[0]
        assert asked.strip(), f"{name}: {heading} has a heading but does not say what it asks"
        label = next(label for label in expected if matches(heading, label))
        parts = [other for other in expected if other.startswith(label) and other != label]
        answered = [c for c in notebook[start + 1:end] if role(c) == "answer" and c.cell_type == "markdown"]
        assert answered or parts, f"{name}: {heading} has no worked answer before the next question"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_student_version_has_no_answers_no_demonstrations_and_boxes_only_under_questions(name, released):
    student = nbformat.read(released[name], as_version=4)
    text = "\n".join(c.source for c in student.cells)
    for cell in cells(name):
        if role(cell) == "answer":
            lines = [line for line in cell.source.splitlines() if len(line.strip()) > 30]
            assert not any(line in text for line in lines), f"{name}: an answer survives: {lines[:1]}"
    assert "from solutions" not in text
    assert "solution" not in student.cells[0].source.lower(), f"{name}: the student version opens as solutions"
    section_asks = False
    for cell in student.cells:
        if cell.cell_type == "markdown" and role(cell) is None:
            section_asks = bool(HEADING.search(cell.source))
        if role(cell) == "answer":
            assert section_asks, f"{name}: an answer box under a section that asks nothing: {cell.source[:60]!r}"


def test_solutions_render_to_self_contained_html_without_solution_markers(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    (path,) = render_solutions(["discussion10"], tmp_path)
    html = path.read_text()
    assert path.name == "discussion10.html" and "Q1(c)(ii)" in html and "Solutions — for staff" in html
    assert "data:image/png;base64" in html and "(2T-1)m" in html.replace(" ", "")
    assert "BEGIN SOLUTION" not in html and "END SOLUTION" not in html


@pytest.mark.parametrize("name", ["attention", "finetuning_review"])
def test_solution_notebooks_keep_every_answer_and_lose_only_the_markers(name):
    rendered = solution_notebook(name)
    text = "\n".join(cell.source for cell in rendered.cells)
    assert build.BEGIN not in text and build.END not in text
    assert rendered.cells[1].source == SOLUTIONS_BANNER
    source = [cell.source for cell in cells(name)]
    kept = [line for cell in source for line in cell.splitlines() if line.strip() not in (build.BEGIN, build.END)]
    assert kept == [line for cell in rendered.cells[:1] + rendered.cells[2:] for line in cell.source.splitlines()]
