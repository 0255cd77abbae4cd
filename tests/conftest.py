"""Shared test set-up: one hypothesis profile, a device parameter, and one release + grading of the samples.

The notebooks are released once per test run (a lock keeps two workers from
releasing at once). Tests that grade the sample corpus carry
`xdist_group("release")`, so under `pytest -n 2 --dist loadgroup` they run in
one worker and the expensive grading fixtures below are built once.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("course", deadline=None, derandomize=True, database=None, print_blob=False,
                          max_examples=50, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("course")

os.environ.setdefault("COURSE_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
               not torch.cuda.is_available(), reason="needs a CUDA device")])]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def released() -> dict[str, Path]:
    """Every notebook released once per test run, by whichever worker asks first: name -> released notebook.
    Other workers wait on the lock and reuse that release, so none reads a release another is rewriting."""
    from autograder.build import ROOT, assignment_names
    from autograder.release import release, released_notebook

    names = assignment_names()
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"pid-{os.getpid()}")
    stamp = ROOT / "build" / "released-for-test-run"
    stamp.parent.mkdir(exist_ok=True)
    with open(ROOT / "build" / "release.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != run:
            stamp.unlink(missing_ok=True)
            release(names)
            stamp.write_text(run)
    return {name: released_notebook(name) for name in names}


@pytest.fixture(scope="session")
def released_attention(released) -> Path:
    return released["attention"]


@pytest.fixture(scope="session")
def attention_samples(released_attention, tmp_path_factory) -> Path:
    from autograder.samples import write_samples

    folder = tmp_path_factory.mktemp("attention-samples")
    write_samples("attention", folder)
    return folder


@pytest.fixture(scope="session")
def attention_grades(attention_samples, tmp_path_factory) -> dict[str, dict]:
    """Every sample of the attention assignment graded once, as one batch with two job slots."""
    from autograder.batch import discover, grade_batch
    from autograder.grade import Assignment

    out = tmp_path_factory.mktemp("attention-grades")
    results = grade_batch(Assignment.load("attention"), discover([attention_samples], "attention"), out,
                          jobs=2, progress=None)
    return {r["extra_data"]["submission"]: r for r in results}
