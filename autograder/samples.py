"""Sample submissions made from a released notebook: the demo's batch and the grader's test corpus.

A sample is the released notebook with its solution cells filled in:
- "untouched": exactly as released (every task still raises NotImplementedError);
- "reference": every cell holds the reference code;
- any file `assignments/samples/<assignment>/<variant>.py`: the names it
  defines replace the reference's (a wrong implementation a student might
  write; its module docstring says what is wrong), the rest stay reference.
"""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat

from .build import BEGIN, END, ROOT, SolutionSource
from .release import released_notebook

SAMPLES = ROOT / "assignments" / "samples"


def variants(assignment: str) -> list[str]:
    """Every sample of `assignment`: untouched, reference, then the wrong ones by file name."""
    wrong = sorted(p.stem for p in (SAMPLES / assignment).glob("*.py"))
    return ["untouched", "reference", *wrong]


def description(assignment: str, variant: str) -> str:
    if variant in ("untouched", "reference"):
        return {"untouched": "the release as handed out", "reference": "the reference solution"}[variant]
    doc = ast.get_docstring(ast.parse((SAMPLES / assignment / f"{variant}.py").read_text())) or ""
    return doc.splitlines()[0] if doc else variant


def _reference_code(assignment: str) -> dict[str, str]:
    source = SolutionSource(assignment)
    return {name: "\n".join(line for line in source.cell(name).splitlines() if line.strip() not in (BEGIN, END))
            for name in source.defs if not name.startswith("_")}


def implementation_code(path: Path) -> dict[str, str]:
    """Each top-level function or class of the file at `path`, with the file's imports in front of it."""
    text = path.read_text()
    tree = ast.parse(text)
    lines = text.splitlines()
    imports = [ast.get_source_segment(text, n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    code = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            code[node.name] = "\n".join([*imports, "", *lines[start - 1:node.end_lineno]]).strip()
    return code


def filled_notebook(assignment: str, code: dict[str, str]) -> nbformat.NotebookNode:
    """The released notebook of `assignment` with the reference in every solution cell, except the names in
    `code`, whose cells hold that code instead."""
    nb = nbformat.read(released_notebook(assignment), as_version=4)
    code = {**_reference_code(assignment), **code}
    for cell in nb.cells:
        nbg = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and nbg.get("solution") and nbg.get("grade_id") in code:
            cell.source = code[nbg["grade_id"]]
    return nb


def make_submission(assignment: str, variant: str) -> nbformat.NotebookNode:
    """The released notebook of `assignment` filled in as `variant` would have it."""
    if variant == "untouched":
        return nbformat.read(released_notebook(assignment), as_version=4)
    path = SAMPLES / assignment / f"{variant}.py"
    return filled_notebook(assignment, implementation_code(path) if variant != "reference" else {})


def write_samples(assignment: str, folder: Path) -> list[Path]:
    """Write every sample in nbgrader's layout: folder/<variant>/<assignment>/<assignment>.ipynb."""
    paths = []
    for variant in variants(assignment):
        path = folder / variant / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(make_submission(assignment, variant), path)
        paths.append(path)
    return paths


def concept_lines(result: dict) -> list[str]:
    """Per item that lost points: its score and each failing concept check with the points it was worth."""
    lines = []
    for test in result["tests"]:
        checks = test.get("extra_data", {}).get("checks", [])
        failed = [c for c in checks if not c["passed"]]
        if not failed:
            continue
        concepts = ", ".join(f"{c['id']} ({c['max_points']:g})" for c in failed)
        lines.append(f"      {test['name']} {test['score']:g}/{test['max_score']:g}: failed {concepts}")
    return lines
