"""Notebooks: built from the references, released without them, runnable, and graded right."""
from __future__ import annotations

import ast
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import build
from autograder.batch import discover, grade_batch
from autograder.grade import Assignment, known_assignments
from autograder.release import execute
from autograder.samples import variants, write_samples

pytestmark = [pytest.mark.notebooks, pytest.mark.xdist_group("release")]
GRADED = known_assignments()
NAMES = build.assignment_names()


def test_every_graded_assignment_has_a_notebook():
    assert set(GRADED) <= set(NAMES) and {"positional", "attention", "vit", "mae", "finetune"} <= set(GRADED)


def test_committed_source_notebooks_match_a_fresh_build():
    assert build.stale() == [], "run `make notebooks` and commit assignments/source"


def reference_body_lines() -> set[str]:
    """Lines of the references' function bodies (below signatures and docstrings): what students must not get."""
    lines = set()
    for path in (build.ROOT / "solutions").glob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                for statement in body:
                    for line in ast.get_source_segment(text, statement).splitlines():
                        if len(line.strip()) >= 25 and not line.strip().startswith("#"):
                            lines.add(line.strip())
    return lines


def released_texts(released: dict[str, Path]) -> dict[Path, str]:
    texts = {}
    for notebook in released.values():
        for path in notebook.parent.rglob("*"):
            if path.is_file() and path.suffix in (".py", ".ipynb", ".json", ".jsonl"):
                texts[path] = path.read_text()
    return texts


def test_releases_hold_no_reference_code_no_rubric_and_no_answers(released):
    secret = reference_body_lines()
    for path, text in released_texts(released).items():
        assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN" not in text, path
        assert "RUBRIC = Rubric(" not in text and "from solutions" not in text, path
        leaked = [line for line in secret if line in text]
        assert not leaked, f"{path} contains reference lines: {leaked[:3]}"


def test_embedded_checks_hold_no_reference_code(released):
    secret = reference_body_lines()
    for name, notebook in released.items():
        nb = nbformat.read(notebook, as_version=4)
        cell = next((c for c in nb.cells if c.metadata.get("course", {}).get("role") == "selfcheck"), None)
        if cell is None or "_COURSE_CHECKS" not in cell.source:
            continue
        blob = "".join(part.strip().strip('"') for part in cell.source.split("_COURSE_CHECKS = (")[1].split(")")[0].split())
        with zipfile.ZipFile(io.BytesIO(base64.b64decode(blob))) as archive:
            for member in archive.namelist():
                if member.endswith(".py"):
                    text = archive.read(member).decode()
                    assert not [line for line in secret if line in text], f"{name}: {member}"


def test_released_notebooks_validate(released):
    for notebook in released.values():
        nbformat.validate(nbformat.read(notebook, as_version=4))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_released_notebooks_load_through_a_jupyter_server(released):
    port, token = _free_port(), "course-test-token"
    root = build.ROOT / "assignments" / "release"
    server = subprocess.Popen([sys.executable, "-m", "jupyter_server", f"--ServerApp.port={port}",
                               f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
                               f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1", "--allow-root"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        for name in released:
            url = f"http://127.0.0.1:{port}/api/contents/{name}/{name}.ipynb?content=1&token={token}"
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        model = json.loads(response.read())
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            assert model["type"] == "notebook" and model["content"]["cells"]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_source_notebook_runs_top_to_bottom_in_fast_mode(name, released, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    nb = nbformat.read(build.source_path(name), as_version=4)
    execute(nb, build.SOURCE / name, timeout=600)
    checks = [o.get("text", "") for c in nb.cells if c.metadata.get("course", {}).get("role") == "check"
              for o in c.get("outputs", [])]
    assert all(text.startswith("✓") for text in checks), checks
    assert checks or name not in GRADED


def test_the_embedded_checks_work_with_the_notebook_alone(released, tmp_path):
    """The released attention notebook's first cell, run where neither the project nor course_checks/ exists."""
    nb = nbformat.read(released["attention"], as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("course", {}).get("role") == "selfcheck")
    script = cell.source + "\nimport torch\ncheck('causal_mask', lambda n, device=None: torch.ones(n, n, dtype=torch.bool).tril())\n" \
                           "check('causal_mask', lambda n, device=None: torch.ones(n, n, dtype=torch.bool))\n"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    run = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "✓ causal_mask" in run.stdout and "✗ causal_mask" in run.stdout and "smallest failing input" in run.stdout


@pytest.mark.parametrize("name", [n for n in GRADED if n != "attention"])
def test_reference_scores_full_untouched_zero_and_every_wrong_sample_loses_points(name, released, tmp_path):
    write_samples(name, tmp_path / "submitted")
    assignment = Assignment.load(name)
    results = {r["extra_data"]["submission"]: r
               for r in grade_batch(assignment, discover([tmp_path / "submitted"], name), tmp_path / "out",
                                    jobs=2, progress=None)}
    assert set(results) == set(variants(name))
    assert results["reference"]["score"] == assignment.rubric.total
    assert results["untouched"]["score"] == 0
    for variant, result in results.items():
        if variant not in ("reference", "untouched"):
            assert result["score"] < assignment.rubric.total, variant
            failed = [t for t in result["tests"] if t["score"] < t["max_score"]]
            assert all("hint:" in t["output"] for t in failed), variant
