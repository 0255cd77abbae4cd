"""Shared test set-up: one hypothesis profile, a device parameter, and one release + grading of the samples.

Everything that releases notebooks or grades the sample corpus carries
`xdist_group("release")`, so under `pytest -n 2 --dist loadgroup` it runs in
one worker and the expensive fixtures below are built once.
"""
from __future__ import annotations

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
    """Every notebook released once: name -> released notebook."""
    from autograder.build import assignment_names
    from autograder.release import release

    names = assignment_names()
    return dict(zip(names, release(names)))


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
