"""The hostile corpus, graded as one batch next to honest submissions: contain every attack, lose nothing."""
from __future__ import annotations

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
from autograder.build import ROOT
from autograder.grade import Assignment
from autograder.sandbox import Limits, detect_level

from .hostile.attention import BROKEN, FULL, HOSTILE, MARKER

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


@pytest.fixture(scope="module")
def corpus(attention_samples, tmp_path_factory):
    reference = (attention_samples / "reference" / "attention" / "attention.ipynb").read_bytes()
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
    before = project_fingerprint()
    results = grade_batch(Assignment.load("attention"), discover([folder], "attention"),
                          tmp_path_factory.mktemp("hostile-grades"), jobs=2, limits=LIMITS, progress=None)
    return {r["extra_data"]["submission"]: r for r in results}, before


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
