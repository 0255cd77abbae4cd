"""Plain nbgrader commands grade with the engine: autograde, generate_feedback and export, end to end.

Every submission here is student-shaped: the notebook nbgrader released, with code written in this file (never
the reference), damaged the ways students damage notebooks. One course is autograded by nbgrader in one run
and graded by the engine in one batch; the two must agree, and nothing a student or TA sees may hold a line of
a reference solution or a model answer.
"""
from __future__ import annotations

import copy
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import build
from autograder.batch import discover, grade_batch
from autograder.build import SolutionSource
from autograder.grade import Assignment
from autograder.nbgrader_plugin import repair
from autograder.release import COURSE_ID, forget_unsubmitted, nbgrader_env, student_version

from .test_notebooks import reference_body_lines

pytestmark = [pytest.mark.grader, pytest.mark.xdist_group("release")]

CAUSAL_MASK = '''def causal_mask(seq_len, *, device=None):
    if seq_len < 0:
        raise ValueError(f"seq_len cannot be negative: {seq_len}")
    position = torch.arange(seq_len, device=device)
    return position[None, :] <= position[:, None]  # key index <= query index
'''

SDPA = '''def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
    if attn_mask is not None and attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise ValueError(f"attn_mask must be bool or floating, not {attn_mask.dtype}")
    wide = torch.float64 if q.dtype == torch.float64 else torch.float32
    logits = LOGITS
    keep = torch.ones(logits.shape[-2:], dtype=torch.bool, device=q.device)
    if is_causal:
        keep = keep.tril()
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        keep = keep & attn_mask
    elif attn_mask is not None:
        logits = logits + attn_mask.to(wide)
    logits = logits.masked_fill(~keep, float("-inf"))
    blocked = logits.isneginf().all(dim=-1, keepdim=True)  # a query with no key to attend to
    probs = torch.softmax(logits.masked_fill(blocked, 0.0), dim=-1).masked_fill(blocked, 0.0)
    return (probs @ v.to(wide)).to(q.dtype), probs.to(q.dtype)
'''
SCALED = 'torch.einsum("...ie,...je->...ij", q.to(wide), k.to(wide)) / q.shape[-1] ** 0.5'
UNSCALED = 'torch.einsum("...ie,...je->...ij", q.to(wide), k.to(wide))'
HELPER = '''def pairwise_logits(q, k, wide):
    """Every query against every key, scaled by sqrt(E)."""
    return torch.einsum("...ie,...je->...ij", q.to(wide), k.to(wide)) / q.shape[-1] ** 0.5
'''
EXPERIMENT = "probe = torch.randn(2, 3, 4)\nprint(scaled_dot_product_attention(probe, probe, probe)[1].sum(-1))"

MHA = '''class MultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, bias=True):
        super().__init__()
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"{embed_dim} features do not split into {num_heads} heads")
        self.heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, query, key, value, attn_mask=None, key_padding_mask=None, is_causal=False):
        def heads(x):  # (B, L, E) -> (B, H, L, E/H)
            return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        mask = attn_mask
        if key_padding_mask is not None:
            real = key_padding_mask[:, None, None, :]  # (B, 1, 1, Lk)
            if attn_mask is None:
                mask = real
            elif attn_mask.dtype == torch.bool:
                mask = attn_mask & real
            else:
                mask = torch.where(real, attn_mask, float("-inf"))
        mixed, probs = scaled_dot_product_attention(heads(self.q_proj(query)), heads(self.k_proj(key)),
                                                    heads(self.v_proj(value)), mask, is_causal)
        return self.out_proj(mixed.transpose(1, 2).flatten(2)), probs
'''
ANSWERS = {"attention_complexity": "Scoring every query against every key costs M times N dot products of size k.",
           "mask_conventions": "PyTorch's module reads True as blocked, so the student hides the real tokens."}
FULL = {"causal_mask": 2.0, "scaled_dot_product_attention": 5.0, "MultiHeadAttention": 5.0}


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def answered(release: nbformat.NotebookNode, **code: str) -> nbformat.NotebookNode:
    """The released notebook as a student fills it in: the given code in the solution cells, the answers written."""
    nb = copy.deepcopy(release)
    filled = {"causal_mask": CAUSAL_MASK, "scaled_dot_product_attention": SDPA.replace("LOGITS", SCALED),
              "MultiHeadAttention": MHA, **ANSWERS, **code}
    for cell in nb.cells:
        if grade_id(cell) in filled:
            cell.source = filled[grade_id(cell)]
    return nb


def without(nb: nbformat.NotebookNode, *grade_ids: str) -> nbformat.NotebookNode:
    nb.cells = [cell for cell in nb.cells if grade_id(cell) not in grade_ids]
    return nb


def with_own_cells(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A helper in its own cell before the attention cell that uses it, an experiment in another after it."""
    index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == "scaled_dot_product_attention")
    nb.cells.insert(index, nbformat.v4.new_code_cell(HELPER))
    nb.cells.insert(index + 2, nbformat.v4.new_code_cell(EXPERIMENT))
    return nb


def scrambled(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Cells in reverse order, the solution cells stripped of their nbgrader metadata, the MultiHeadAttention
    code pasted into a new cell in place of its own, a test cell duplicated and another deleted."""
    for cell in nb.cells:
        if grade_id(cell) == "MultiHeadAttention":
            cell.id = "pasted-by-the-student"
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            del cell.metadata["nbgrader"]
    test = next(c for c in nb.cells if grade_id(c) == "test_MultiHeadAttention")
    pasted = copy.deepcopy(test)
    pasted.id = "duplicated-test-cell"
    nb.cells = [c for c in nb.cells if grade_id(c) != "test_causal_mask"] + [pasted]
    nb.cells.reverse()
    return nb


def students(release: nbformat.NotebookNode) -> dict[str, tuple[nbformat.NotebookNode, dict[str, float]]]:
    """Each student's notebook and the score each item must get."""
    helper_sdpa = SDPA.replace("LOGITS", "pairwise_logits(q, k, wide)")
    return {
        "complete": (answered(release), FULL),
        "untouched": (release, dict.fromkeys(FULL, 0.0)),
        # The attention cell and both written answers deleted: MultiHeadAttention, graded with a trusted
        # stand-in for the function it calls, is not charged for the missing one.
        "deleted": (without(answered(release), "scaled_dot_product_attention", *ANSWERS),
                    {**FULL, "scaled_dot_product_attention": 0.0}),
        # causal_mask emptied to `pass`; attention forgets the 1/sqrt(E) scaling, which fails its core check
        # (and so earns no convention points); MultiHeadAttention, which calls it, is not charged again.
        "emptied": (answered(release, causal_mask="def causal_mask(seq_len, *, device=None):\n    pass\n",
                             scaled_dot_product_attention=SDPA.replace("LOGITS", UNSCALED)),
                    {**FULL, "causal_mask": 0.0, "scaled_dot_product_attention": 0.0}),
        "commented": (answered(release, MultiHeadAttention="# I ran out of time for this one\n"),
                      {**FULL, "MultiHeadAttention": 0.0}),
        "renamed": (answered(release, causal_mask=CAUSAL_MASK.replace("def causal_mask", "def make_causal_mask")),
                    {**FULL, "causal_mask": 0.0}),
        "helper": (with_own_cells(answered(release, scaled_dot_product_attention=helper_sdpa)), FULL),
        "scrambled": (scrambled(answered(release)), FULL),
    }


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                         timeout=900, env=nbgrader_env())
    assert run.returncode == 0, run.stdout + run.stderr
    return run


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course of its own with the attention assignment released by nbgrader and every student submitted."""
    root = tmp_path_factory.mktemp("course")
    shutil.copy(build.ROOT / "assignments" / "nbgrader_config.py", root)
    shutil.copytree(build.SOURCE / "attention", root / "source" / "attention")
    nbgrader(root, "generate_assignment", "attention", "--force")
    release = nbformat.read(root / "release" / "attention" / "attention.ipynb", as_version=4)
    for student, (nb, _) in students(release).items():
        path = root / "submitted" / student / "attention" / "attention.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    return root


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory) -> dict[str, dict]:
    """nbgrader autograde and generate_feedback over the whole course (one run each); then the engine's batch."""
    nbgrader(course, "autograde", "attention", "--force")
    nbgrader(course, "generate_feedback", "attention", "--force")
    results = grade_batch(Assignment.load("attention"), discover([course / "submitted"], "attention"),
                          tmp_path_factory.mktemp("engine-grades"), jobs=2, progress=None)
    return {r["extra_data"]["submission"]: r for r in results}


def gradebook_scores(course: Path) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {student: {g.name.removeprefix("test_"): g.auto_score
                          for g in gradebook.find_submission_notebook("attention", "attention", student).grades
                          if g.name.startswith("test_")}
                for student in sorted(p.name for p in (course / "submitted").iterdir())}


def gradebook_comments(course: Path) -> list[str]:
    from nbgrader.api import Comment, Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return [text for comment in gradebook.db.query(Comment).all()
                for text in (comment.auto_comment, comment.manual_comment) if text]


def secret_lines() -> set[str]:
    """Lines no student or TA may see: the references' code and the model answers of the source notebook."""
    source = nbformat.read(build.source_path("attention"), as_version=4)
    answers = {line.strip() for cell in source.cells
               if cell.get("metadata", {}).get("course", {}).get("role") in ("written", "answer")
               for line in cell.source.splitlines() if len(line.strip()) >= 25}
    return reference_body_lines() | answers


def test_the_leak_check_would_catch_every_reference_function():
    """Lines a student wrote themselves are theirs to see; the leak check must still know each reference
    function by lines none of these students wrote."""
    written = "\n".join([CAUSAL_MASK, SDPA, SCALED, UNSCALED, HELPER, EXPERIMENT, MHA, *ANSWERS.values()])
    reference = SolutionSource("attention")
    for name in FULL:
        distinctive = [line for line in secret_lines() if line in reference.cell(name) and line not in written]
        assert len(distinctive) >= 2, name


def test_the_repair_skeleton_is_what_nbgrader_releases(course):
    ours = student_version("attention")
    theirs = nbformat.read(course / "release" / "attention" / "attention.ipynb", as_version=4)
    assert [(c.id, c.cell_type, c.source) for c in ours.cells] == [(c.id, c.cell_type, c.source) for c in theirs.cells]


def test_nbgrader_and_the_engine_give_the_same_scores(course, graded):
    from_nbgrader = gradebook_scores(course)
    assert set(graded) == set(from_nbgrader) == set(students(student_version("attention")))
    for student, result in graded.items():
        engine = {t["name"]: t["score"] for t in result["tests"]}
        assert from_nbgrader[student] == engine, student


def test_each_damage_costs_exactly_the_damaged_items(course, graded):
    expected = {student: scores for student, (_, scores) in students(student_version("attention")).items()}
    for student, result in graded.items():
        for test in result["tests"]:
            want = expected[student][test["name"]]
            if want is None:  # partial credit
                assert 0 < test["score"] < FULL[test["name"]], (student, test)
            else:
                assert test["score"] == want, (student, test)


def test_nothing_shown_or_stored_holds_a_solution(course, graded):
    submitted = "\n".join(p.read_text() for p in (course / "submitted").rglob("*.ipynb"))
    secret = {line for line in secret_lines() if line not in submitted}  # what no student wrote
    texts = {path: path.read_text() for folder in ("autograded", "feedback")
             for path in (course / folder).rglob("*") if path.suffix in (".ipynb", ".html")}
    texts.update({f"gradebook comment {i}": text for i, text in enumerate(gradebook_comments(course))})
    assert len([p for p in texts if str(p).endswith(".html")]) == len(graded)
    for where, text in texts.items():
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN", "BEGIN MARK SCHEME"):
            assert marker not in text, (where, marker)
        leaked = [line for line in secret if line in text]
        assert not leaked, f"{where} holds solution lines: {leaked[:3]}"


def autograded(course: Path, student: str) -> nbformat.NotebookNode:
    return nbformat.read(course / "autograded" / student / "attention" / "attention.ipynb", as_version=4)


def test_a_deleted_answer_shows_the_release_stub_not_the_reference(course, graded):
    cells = {grade_id(c): c.source for c in autograded(course, "deleted").cells}
    assert "raise NotImplementedError()" in cells["scaled_dot_product_attention"]
    assert cells["attention_complexity"] == cells["mask_conventions"] == "YOUR ANSWER HERE"


def test_the_students_own_cells_are_kept_in_order(course, graded):
    sources = [c.source for c in autograded(course, "helper").cells]
    attention = next(i for i, s in enumerate(sources) if s.startswith("def scaled_dot_product_attention"))
    assert sources.index(HELPER) < attention < sources.index(EXPERIMENT)
    assert {t["name"]: t["score"] for t in graded["helper"]["tests"]} == FULL


def test_scrambled_cells_are_put_back_in_their_places(course, graded):
    nb = autograded(course, "scrambled")
    ids = [grade_id(c) for c in nb.cells if grade_id(c)]
    assert ids == [grade_id(c) for c in student_version("attention").cells if grade_id(c)]
    assert {grade_id(c): c.source for c in nb.cells}["causal_mask"] == CAUSAL_MASK


def test_feedback_shows_the_counterexample_and_no_hidden_source(course, graded):
    html = (course / "feedback" / "emptied" / "attention" / "attention.html").read_text()
    assert "smallest failing input" in html and "hint:" in html
    assert "matches_reference" not in html and "rubrics" not in html


def test_export_writes_a_csv_with_every_student(course, graded):
    nbgrader(course, "export", "--to", "grades.csv")
    rows = list(csv.DictReader((course / "grades.csv").open()))
    assert {row["student_id"] for row in rows} == set(graded)


def test_repair_drops_copies_of_locked_cells_and_keeps_tampered_ones_out():
    release = student_version("attention")
    nb = answered(release)
    test = next(c for c in nb.cells if grade_id(c) == "test_causal_mask")
    test.source = "print('full marks please')"
    nb.cells.append(copy.deepcopy(test))
    repaired, _ = repair(nb, release)
    sources = [c.source for c in repaired.cells]
    assert "print('full marks please')" not in sources
    assert len(repaired.cells) == len(release.cells)


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader's add_submission, not ours
def test_a_release_over_an_earlier_one_starts_from_fresh_gradebook_rows(tmp_path):
    """nbgrader re-creates a notebook it already knows under the ids of rows it has just deleted, which fails
    at random; `release` removes those rows first unless someone has submitted (their grades live there)."""
    from nbgrader.api import Gradebook

    shutil.copy(build.ROOT / "assignments" / "nbgrader_config.py", tmp_path)
    shutil.copytree(build.SOURCE / "attention", tmp_path / "source" / "attention")
    gradebook = tmp_path / "gradebook.db"

    def notebooks() -> list[str]:
        with Gradebook(f"sqlite:///{gradebook}", COURSE_ID) as book:
            return [notebook.name for notebook in book.find_assignment("attention").notebooks]

    assert not forget_unsubmitted(gradebook, "attention")  # no gradebook yet
    nbgrader(tmp_path, "generate_assignment", "attention", "--force")
    assert forget_unsubmitted(gradebook, "attention") and notebooks() == []
    assert not forget_unsubmitted(gradebook, "vit")  # not in this gradebook
    nbgrader(tmp_path, "generate_assignment", "attention", "--force")
    with Gradebook(f"sqlite:///{gradebook}", COURSE_ID) as book:
        book.add_student("ada")
        book.add_submission("attention", "ada")
    assert not forget_unsubmitted(gradebook, "attention") and notebooks() == ["attention"]
    nbgrader(tmp_path, "generate_assignment", "attention", "--force")
