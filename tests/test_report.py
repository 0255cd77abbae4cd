"""Result files: atomic, resumable, and summarised in grades.csv."""
from __future__ import annotations

import csv
import io
import json

import pytest

from autograder import report

pytestmark = pytest.mark.grader


def result(submission: str, scores: dict[str, float], notes=()) -> dict:
    return {"score": sum(scores.values()), "execution_time": 1.5, "output": "",
            "tests": [{"name": n, "score": s, "max_score": 5.0, "output": "", "status": "failed",
                       "visibility": "visible"} for n, s in scores.items()],
            "extra_data": {"submission": submission, "notes": list(notes)}}


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "a.json"
    report.atomic_write(path, "old")
    report.atomic_write(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    report.atomic_write(path, "old")
    monkeypatch.setattr(report.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        report.atomic_write(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_read_results_skips_partial_and_foreign_files(tmp_path):
    report.write_result(tmp_path, result("alice", {"causal_mask": 5}))
    (tmp_path / "bob.json").write_text('{"score": 3, "tes')          # a half-written file from another tool
    (tmp_path / "notes.json").write_text(json.dumps({"hello": 1}))
    assert [r["extra_data"]["submission"] for r in report.read_results(tmp_path)] == ["alice"]


def test_grades_csv_has_a_column_per_item_and_keeps_notes(tmp_path):
    report.write_result(tmp_path, result("bob", {"causal_mask": 2.5, "MultiHeadAttention": 0}, ["JSON is broken"]))
    report.write_result(tmp_path, result("alice", {"causal_mask": 5, "MultiHeadAttention": 5}))
    rows = list(csv.DictReader(io.StringIO(report.write_grades_csv(tmp_path, ["causal_mask", "MultiHeadAttention"])
                                           .read_text())))
    assert [r["submission"] for r in rows] == ["alice", "bob"]
    assert rows[1]["causal_mask"] == "2.5" and rows[1]["total"] == "2.5" and rows[1]["max_score"] == "10"
    assert rows[1]["notes"] == "JSON is broken"


def test_without_timing_drops_only_timing_fields():
    r = result("a", {"x": 1})
    assert report.without_timing(r) == {k: v for k, v in r.items() if k != "execution_time"}


def test_table_lists_every_submission():
    text = report.table([result("alice", {"causal_mask": 5})], ["causal_mask"])
    assert "alice" in text and "5/5" in text
