"""The hostile corpus, graded as one batch next to honest submissions: contain every attack, lose nothing."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder.batch import discover, grade_batch
from autograder.build import ROOT, source_path
from autograder.grade import Assignment
from autograder.sandbox import Limits, detect_level

from .hostile.attention import BROKEN, FULL, HONEST_MASK, HOSTILE, MARKER, PLACED

pytestmark = [pytest.mark.hostile, pytest.mark.slow, pytest.mark.xdist_group("release")]
HONEST = ("honest_first", "honest_last")  # sorted around the hostile ones, so they share the batch with them
LIMITS = Limits(call_cpu_s=3.0, memory_bytes=3 * 2**30)


def project_fingerprint() -> str:
    """A hash of every file of the project outside build output, caches and the virtual environment."""
    digest = hashlib.sha256()
    skip = {".venv", ".git", "build", "__pycache__", ".pytest_cache", ".hypothesis", "release"}
    for path in sorted(ROOT.rglob("*")):
        if path.is_file() and not skip & set(path.relative_to(ROOT).parts) and path.name != "gradebook.db":
            digest.update(str(path).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def write(folder: Path, name: str, data: bytes) -> None:
    path = folder / name / "attention" / "attention.ipynb"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)


def place(folder: Path, case, mask_only: bytes) -> None:
    path = folder / case.path
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.content.startswith("link:"):
        target = case.content.removeprefix("link:")
        os.symlink(source_path("attention") if target == "SOURCE" else os.path.relpath(folder / target, path.parent),
                   path)
    else:
        path.write_bytes(mask_only if case.content == "mask_only" else source_path(case.content).read_bytes())


def answer_causal_mask_only(release: bytes) -> bytes:
    nb = json.loads(release)
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "causal_mask":
            cell["source"] = HONEST_MASK
    return json.dumps(nb).encode()


@pytest.fixture(scope="module")
def batch(attention_samples, tmp_path_factory):
    """Every case graded in one batch: (folder, output folder, results by id, project fingerprint)."""
    reference = (attention_samples / "reference" / "attention" / "attention.ipynb").read_bytes()
    release = (attention_samples / "untouched" / "attention" / "attention.ipynb").read_bytes()
    folder = tmp_path_factory.mktemp("hostile-submissions")
    for name in HONEST:
        write(folder, name, reference)
    for case in HOSTILE:
        nb = json.loads(reference)
        for cell in nb["cells"]:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id in case.cells:
                cell["source"] = case.cells[grade_id]
        write(folder, case.name, json.dumps(nb).encode())
    for case in BROKEN:
        write(folder, case.name, case.rewrite(json.loads(reference)))
    for case in PLACED:
        place(folder, case, answer_causal_mask_only(release))
    before = project_fingerprint()
    out = tmp_path_factory.mktemp("hostile-grades")
    results = grade_batch(Assignment.load("attention"), discover([folder], "attention"), out, jobs=2,
                          limits=LIMITS, progress=None)
    return folder, out, {r["extra_data"]["submission"]: r for r in results}, before


@pytest.fixture(scope="module")
def corpus(batch):
    """(results by case name, project fingerprint before) for the honest, hostile and broken cases."""
    _, _, results, before = batch
    names = {*HONEST, *(c.name for c in HOSTILE), *(c.name for c in BROKEN)}
    return {name: r for name, r in results.items() if name in names}, before


@pytest.fixture(scope="module")
def placed(batch) -> dict[str, dict]:
    """Results of the placed cases, by case name, found through the path each result records."""
    folder, _, results, _ = batch
    by_path = {r["extra_data"]["source_path"]: r for r in results.values()}
    return {case.name: by_path[str(folder / case.path)] for case in PLACED}


def item(result: dict, name: str) -> dict:
    return next(t for t in result["tests"] if t["name"] == name)


def test_every_submission_has_a_result_for_every_item(corpus):
    results, _ = corpus
    assert set(results) == {*HONEST, *(c.name for c in HOSTILE), *(c.name for c in BROKEN)}
    assert all([t["name"] for t in r["tests"]] == list(FULL) for r in results.values())
    assert all(t["max_score"] == FULL[t["name"]] for r in results.values() for t in r["tests"])


@pytest.mark.parametrize("case", HOSTILE + BROKEN, ids=lambda c: c.name)
def test_each_case_earns_exactly_what_its_honest_parts_earn(corpus, case):
    result = corpus[0][case.name]
    assert {t["name"]: t["score"] for t in result["tests"]} == case.scores
    if case.says:
        where = item(result, getattr(case, "item", "causal_mask"))["output"] + "\n".join(result["extra_data"]["notes"])
        assert case.says in where


@pytest.mark.parametrize("case", PLACED, ids=lambda c: c.name)
def test_every_placed_notebook_earns_what_its_parts_earn(placed, case):
    result = placed[case.name]
    assert {t["name"]: t["score"] for t in result["tests"]} == case.scores
    assert case.says in "\n".join(t["output"] for t in result["tests"]) + "\n".join(result["extra_data"]["notes"])


def test_every_notebook_found_has_a_result_of_its_own_and_a_row(batch):
    folder, out, results, _ = batch
    notebooks = {str(p) for p in folder.rglob("*.ipynb")}
    assert sorted(r["extra_data"]["source_path"] for r in results.values()) == sorted(notebooks)
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert sorted(row["submission"] for row in rows) == sorted(results)
    assert {row["rubric_version"] for row in rows} == {Assignment.load("attention").version}


def test_honest_neighbours_are_graded_as_if_alone(corpus, attention_grades):
    alone = attention_grades["reference"]
    for name in HONEST:
        result = corpus[0][name]
        assert result["tests"] == alone["tests"] and result["score"] == alone["score"] == sum(FULL.values())
        assert result["extra_data"]["notes"] == []


def test_no_file_outside_the_output_folder_changed(corpus):
    assert project_fingerprint() == corpus[1]
    assert not Path("/tmp/pwned-by-pickle").exists()


def test_no_process_started_by_a_submission_survives(corpus):
    survivors = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and MARKER.encode() in Path(f"/proc/{entry}/environ").read_bytes():
                survivors.append(int(entry))
        except OSError:
            pass
    assert survivors == []


def test_isolation_level_is_recorded(corpus):
    assert {r["extra_data"]["isolation"] for r in corpus[0].values()} == {detect_level()}


def test_a_grader_killed_mid_batch_resumes_without_losing_or_redoing_work(attention_samples, tmp_path):
    out = tmp_path / "grades"
    command = [sys.executable, "-m", "autograder", "grade", "attention", str(attention_samples), "--out", str(out)]
    grader = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(out.glob("*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(grader.pid, signal.SIGKILL)
    grader.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert len(finished) >= 2 and not list(out.glob(".*.tmp"))
    assert all(json.loads((out / name).read_text())["tests"] for name in finished)
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "already graded" in rerun.stderr
    results = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert len(results) == len(list(attention_samples.iterdir()))
    assert all(results[name] == stamp for name, stamp in finished.items())
