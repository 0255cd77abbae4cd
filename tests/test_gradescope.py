"""The Gradescope package: run_autograder grades a submission in a tree shaped like Gradescope's."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from autograder.gradescope import package

pytestmark = [pytest.mark.grader, pytest.mark.xdist_group("release")]


def test_package_holds_setup_run_script_and_no_test_data(tmp_path, released_attention):
    path = package("attention", tmp_path / "attention.zip")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert {"setup.sh", "run_autograder", "source/requirements.txt",
                "source/assignments/source/attention/attention.ipynb"} <= names
        assert archive.getinfo("run_autograder").external_attr >> 16 & 0o111
        assert "chmod -R go-rwx solutions autograder/rubrics" in archive.read("setup.sh").decode()


def test_run_autograder_writes_results_json(tmp_path, attention_samples, released_attention):
    root = tmp_path / "autograder"
    with zipfile.ZipFile(package("attention", tmp_path / "attention.zip")) as archive:
        archive.extractall(root)
    (root / "submission").mkdir()
    shutil.copy(attention_samples / "unscaled_scores" / "attention" / "attention.ipynb", root / "submission")
    script = root / "run_autograder"
    script.chmod(0o755)
    env = dict(os.environ, GRADESCOPE_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable)
    run = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads((root / "results" / "results.json").read_text())
    scores = {t["name"]: t["score"] for t in result["tests"]}
    assert scores["causal_mask"] == 2 and scores["scaled_dot_product_attention"] < 5
    assert result["score"] == sum(scores.values())
