"""The replay file: what it holds comes back exactly, for its own rubric version only, and never as code."""
from __future__ import annotations

import json
import stat
import struct
from pathlib import Path

import pytest

from autograder import replays
from autograder.build import source_path
from autograder.discovery import known_assignments
from autograder.grade import Assignment
from autograder.inprocess import InProcessSession
from autograder.runner import run_check
from autograder.student import Student
from autograder.submission import recover

pytestmark = pytest.mark.grader


@pytest.fixture(scope="module")
def recorded() -> dict[str, tuple[Assignment, replays.Replays]]:
    found = {}
    for name in known_assignments():
        assignment = Assignment.load(name)
        found[name] = assignment, replays.record(assignment)
    return found


def test_every_check_is_recorded_and_the_reference_passes_all_its_listed_examples(recorded):
    for name, (assignment, kept) in recorded.items():
        missing = [f"{i.name}/{c.id}" for i in assignment.rubric.items for c in i.checks if not kept.get(c)]
        assert not missing, (name, missing)
        cells = recover(source_path(name), list(assignment.setup_cells), assignment.item_names).cells
        for item in assignment.rubric.items:
            session = InProcessSession()
            session.exec_cells(cells)
            failed = [c.id for c in item.checks if not run_check(c, Student(session, item.name), kept).passed]
            assert not failed, (name, item.name, failed)


def test_a_saved_file_gives_back_the_same_examples_and_reference_outputs(recorded, tmp_path):
    for name, (assignment, kept) in recorded.items():
        target = tmp_path / f"{name}.replays"
        assert replays.save(kept, assignment, target) == len(kept)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600, "the file holds the reference's answers"
        loaded = replays.load(assignment, target)
        for item in assignment.rubric.items:
            for check in item.checks:
                before, after = kept.get(check), loaded.get(check)
                assert len(before) == len(after), (name, check.id)
                for (example, expected), (example_back, expected_back) in zip(before, after):
                    assert replays.same_example(example, example_back), (name, check.id, example)
                    assert replays.same_example(expected, expected_back), (name, check.id, expected)


def _rewritten(target: Path, change) -> None:
    """Rewrite the header of the replay file at `target` with `change(header)`."""
    data = target.read_bytes()
    (length,) = struct.unpack(">Q", data[:8])
    header = json.loads(data[8:8 + length])
    change(header)
    body = json.dumps(header).encode()
    target.write_bytes(struct.pack(">Q", len(body)) + body + data[8 + length:])


def _another_version(header: dict) -> None:
    header["key"]["version"] = "0-000000000000"


def _unknown_class(header: dict) -> None:
    header["checks"][0][2] = {"t": "list", "items": [{"t": "dict", "items": [["@", {"t": "str", "v": "system"}]]}]}


@pytest.mark.parametrize("damage", [
    _another_version, _unknown_class,
    lambda target: target.write_bytes(target.read_bytes()[:-100]),
    lambda target: target.write_bytes(b"\x80\x04\x95 a pickle, say"),
], ids=["another_rubric_version", "unknown_class", "truncated", "not_a_replay_file"])
def test_a_stale_or_damaged_file_is_ignored_and_written_again(recorded, tmp_path, monkeypatch, damage):
    assignment, kept = recorded["positional"]
    target = tmp_path / "positional.replays"
    replays.save(kept, assignment, target)
    if damage in (_another_version, _unknown_class):
        _rewritten(target, damage)
    else:
        damage(target)
    assert replays.load(assignment, target) is None
    monkeypatch.setattr(replays, "path", lambda name: tmp_path / f"{name}.replays")
    assert len(replays.prepared(assignment)) == len(kept)
    assert replays.load(assignment, target) is not None, "prepared() wrote a good file in its place"


def test_a_missing_file_is_recorded_and_written(recorded, tmp_path, monkeypatch):
    assignment, kept = recorded["vit"]
    monkeypatch.setattr(replays, "path", lambda name: tmp_path / "new" / f"{name}.replays")
    assert len(replays.prepared(assignment)) == len(kept)
    assert (tmp_path / "new" / "vit.replays").is_file()
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700, "nobody else may even list the folder"


def test_an_install_where_the_file_cannot_be_written_still_grades_with_the_recording(recorded, tmp_path,
                                                                                      monkeypatch):
    assignment, kept = recorded["vit"]
    (tmp_path / "build").write_text("a file where the folder should be")
    monkeypatch.setattr(replays, "path", lambda name: tmp_path / "build" / "replays" / f"{name}.replays")
    assert len(replays.prepared(assignment)) == len(kept)
