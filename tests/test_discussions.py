"""Discussion worksheets: every question under its worksheet number, a worked answer each, none in the student version."""
from __future__ import annotations

import re

import nbformat
import pytest

from autograder import build
from autograder.release import render_solutions

pytestmark = [pytest.mark.discussions, pytest.mark.xdist_group("release")]

HEADINGS = {
    "discussion10": ["Q1(a)", "Q1(b)", "Q1(c)(i)", "Q1(c)(ii)", "Q1(d)", "Q1(e)", "Q1(f)", "Q1(g)", "Q1(h)", "Q1(i)"],
    "discussion11": ["Q1(a)", "Q1(b)", "Q1(b)(i)", "Q1(b)(ii)", "Q1(c)", "Q2(a)", "Q2(b)", "Q2(c)", "Q2(d)", "Q2(e)",
                     "Q2(f)", "Q2(g)"],
    "finetuning_review": ["Q1(a)", "Q1(b)", "Q1(c)", "Q1(c)(i)", "Q1(c)(ii)", "Q1(c)(iii)", "Q1(c)(iv)", "Q2(a)",
                          "Q2(b)", "ICE: supervised or unsupervised?", "ICE #1", "ICE #2"],
}
HEADING = re.compile(r"^#{2,4} (.+)$", re.M)


def cells(name: str) -> list:
    return nbformat.read(build.source_path(name), as_version=4).cells


def role(cell) -> str | None:
    return cell.metadata.get("course", {}).get("role")


@pytest.mark.parametrize("name", sorted(HEADINGS))
def test_every_question_has_its_numbered_heading_and_a_worked_answer(name):
    notebook = cells(name)
    found = {}
    for index, cell in enumerate(notebook):
        if cell.cell_type == "markdown" and role(cell) is None:
            for heading in HEADING.findall(cell.source):
                found[heading.split(" —")[0].strip()] = index
    missing = [h for h in HEADINGS[name] if not any(f.startswith(h) for f in found)]
    assert not missing, f"{name} lacks headings {missing}"
    # Each heading's question is answered before the next question starts (a heading that only introduces
    # sub-questions, like Q1(b) above Q1(b)(i), is answered through them).
    questions = sorted(found.items(), key=lambda item: item[1])
    for (heading, start), (_, end) in zip(questions, questions[1:] + [("", len(notebook))]):
        answered = any(role(c) == "answer" and c.cell_type == "markdown" for c in notebook[start + 1:end])
        introduces = any(other.startswith(heading) and other != heading for other in found)
        assert answered or introduces or not heading.startswith(("Q", "ICE")), f"{name}: {heading} has no answer"


@pytest.mark.parametrize("name", sorted(HEADINGS))
def test_student_version_has_no_answers_and_no_demonstrations(name, released):
    student = nbformat.read(released[name], as_version=4)
    text = "\n".join(c.source for c in student.cells)
    for cell in cells(name):
        if role(cell) == "answer":
            lines = [line for line in cell.source.splitlines() if len(line.strip()) > 30]
            assert not any(line in text for line in lines), f"{name}: an answer survives: {lines[:1]}"
    assert "from solutions" not in text


def test_solutions_render_to_self_contained_html(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    (path,) = render_solutions(["discussion10"], tmp_path)
    html = path.read_text()
    assert path.name == "discussion10.html" and "Q1(c)(ii)" in html
    assert "data:image/png;base64" in html and "(2T-1)m" in html.replace(" ", "")
