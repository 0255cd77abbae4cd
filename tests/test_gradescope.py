"""The Gradescope package, built and run in a tree shaped exactly like Gradescope's.

Gradescope extracts the zip in <root>/source, runs setup.sh once, then for each submission puts the
student's files in <root>/submission and Gradescope's metadata in <root>/submission_metadata.json, runs
run_autograder and uploads <root>/results/results.json. The scripts take <root> from GRADESCOPE_ROOT.

- Fast tests run the extracted package with the development interpreter (the package's own copy of the
  grader is what runs: PYTHONPATH points at <root>/source).
- `test_fresh_container_*` (marked slow: 1-2 minutes of set-up and 15-25 s a notebook here) run setup.sh into
  a fresh virtual environment and grade as root without CAP_SYS_ADMIN and without network.
"""
from __future__ import annotations

import ast
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from autograder import gradescope
from autograder.gradescope import package

pytestmark = [pytest.mark.grader, pytest.mark.xdist_group("release")]

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "attention"
POINTS = {"causal_mask": 2.0, "scaled_dot_product_attention": 5.0, "MultiHeadAttention": 5.0}

# --- Gradescope's results.json, as its documentation describes it (written here, not taken from the code) ---

VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}
TOP_FIELDS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
              "visibility", "stdout_visibility", "extra_data", "tests"}
TEST_FIELDS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
               "tags", "visibility", "extra_data"}


def assert_gradescope_schema(result: dict) -> None:
    """`result` is a results.json Gradescope accepts, with every field this project promises, and no leaderboard."""
    assert set(result) <= TOP_FIELDS, set(result) - TOP_FIELDS
    assert {"score", "tests", "output", "visibility", "stdout_visibility", "extra_data"} <= set(result)
    assert isinstance(result["score"], (int, float)) and math.isfinite(result["score"])
    assert isinstance(result["output"], str) and result["output"].strip()
    assert result["visibility"] in VISIBILITY and result["stdout_visibility"] in VISIBILITY
    assert result.get("output_format", "text") in FORMATS
    assert isinstance(result["extra_data"], dict) and isinstance(result["tests"], list)
    for test in result["tests"]:
        assert set(test) <= TEST_FIELDS, set(test) - TEST_FIELDS
        assert {"score", "max_score", "name", "output", "visibility", "status"} <= set(test)
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed") and test["visibility"] in VISIBILITY
        assert test.get("output_format", "text") in FORMATS
    if result["tests"]:
        assert result["score"] == pytest.approx(sum(t["score"] for t in result["tests"]))


def read_results(root: Path) -> dict:
    text = (root / "results" / "results.json").read_text()
    result = json.loads(text, parse_constant=lambda name: pytest.fail(f"results.json holds {name}"))
    assert_gradescope_schema(result)
    return result


def scores(result: dict) -> dict[str, float]:
    return {t["name"]: t["score"] for t in result["tests"]}


# --- student notebooks -----------------------------------------------------------------------------------

CAUSAL_MASK = '''\
def causal_mask(seq_len, *, device=None):
    i = torch.arange(seq_len, device=device)
    return i[:, None] >= i[None, :]  # (T, T): key j visible to query i when j <= i
'''

SDPA = '''\
def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.size(-1))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(attn_mask.logical_not(), float("-inf"))
        elif torch.is_floating_point(attn_mask):
            scores = scores + attn_mask.to(scores.dtype)
        else:
            raise ValueError("attn_mask must be bool or float")
    if is_causal:
        future = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)  # a row with no key gives zeros
    return weights @ v, weights
'''

MHA = '''\
class MultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, bias=True):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def split(self, x):
        B, L, _ = x.shape
        return x.reshape(B, L, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, query, key, value, attn_mask=None, key_padding_mask=None, is_causal=False):
        q, k, v = self.split(self.q_proj(query)), self.split(self.k_proj(key)), self.split(self.v_proj(value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            else:
                scores = scores + attn_mask.to(scores.dtype)
        if key_padding_mask is not None:
            scores = scores.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
        if is_causal:
            Lq, Lk = scores.shape[-2:]
            scores = scores.masked_fill(torch.ones(Lq, Lk, dtype=torch.bool, device=scores.device).triu(1),
                                        float("-inf"))
        has_key = (scores > float("-inf")).any(dim=-1, keepdim=True)
        weights = torch.softmax(scores.masked_fill(~has_key, 0.0), dim=-1) * has_key
        out = (weights @ v).permute(0, 2, 1, 3).reshape(query.shape[0], query.shape[1], -1)
        return self.out_proj(out), weights
'''

UNSCALED_SDPA = SDPA.replace(" / math.sqrt(q.size(-1))", "")


def hostile_sdpa(root: Path) -> str:
    """Reads the reference from where Gradescope keeps it and forges results.json; without the reference it
    is left with an implementation that raises."""
    return f'''\
import json
from pathlib import Path

stolen = {{}}
try:
    exec(Path("{root}/source/solutions/attention.py").read_text(), stolen)
except OSError:
    pass
try:
    Path("{root}/results/results.json").write_text(json.dumps({{"score": 1000, "tests": []}}))
except OSError:
    pass

if "scaled_dot_product_attention" in stolen:
    scaled_dot_product_attention = stolen["scaled_dot_product_attention"]
else:
    def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
        raise RuntimeError("the reference could not be read")
'''


def student_notebook(released: Path, code: dict[str, str]) -> str:
    """The released notebook with its solution cells replaced by `code` (grade_id -> source)."""
    nb = json.loads(released.read_text())
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell["cell_type"] == "code" and grade_id in code:
            cell["source"] = code[grade_id]
    return json.dumps(nb, indent=1, sort_keys=True)


def notebooks(released: Path, root: Path) -> dict[str, tuple[str, float]]:
    """Submissions by name: (notebook text, expected total score)."""
    correct = student_notebook(released, {"causal_mask": CAUSAL_MASK, "scaled_dot_product_attention": SDPA,
                                          "MultiHeadAttention": MHA})
    # Saved half-way: the JSON stops before the attention cell, so only causal_mask can be recovered.
    truncated = correct[:correct.index('"grade_id": "scaled_dot_product_attention"')]
    return {
        "correct": (correct, 12.0),
        "wrong": (student_notebook(released, {"causal_mask": CAUSAL_MASK, "scaled_dot_product_attention":
                                              UNSCALED_SDPA, "MultiHeadAttention": MHA}), None),
        "hostile": (student_notebook(released, {"causal_mask": CAUSAL_MASK, "MultiHeadAttention": MHA,
                                                "scaled_dot_product_attention": hostile_sdpa(root)}), 7.0),
        "broken": (truncated, 2.0),
    }


# --- the Gradescope tree ----------------------------------------------------------------------------------

METADATA = {"id": 123456, "created_at": "2026-11-20T14:22:32.365935-08:00", "submission_method": "upload",
            "assignment": {"title": "Attention", "due_date": "2026-12-01T23:00:00.000000-08:00"},
            "users": [{"email": "ada@example.edu", "id": 4242, "name": "Ada Student"}], "previous_submissions": []}


@pytest.fixture(scope="module")
def zip_path(released_attention, tmp_path_factory) -> Path:
    visibility = {"MultiHeadAttention": "after_due_date"}
    return package(ASSIGNMENT, tmp_path_factory.mktemp("zip") / "attention.zip", visibility=visibility)


def gradescope_tree(zip_path: Path, root: Path) -> Path:
    """<root>/source holding the zip's contents, and empty submission/ and results/."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root / "source")
        for info in archive.infolist():  # zipfile drops permission bits; Gradescope's unzip keeps them
            mode = info.external_attr >> 16
            if mode:
                (root / "source" / info.filename).chmod(mode)
    (root / "submission").mkdir()
    (root / "results").mkdir()
    return root


def submit(root: Path, files: dict[str, str], metadata: dict | None = METADATA) -> None:
    shutil.rmtree(root / "submission")
    (root / "submission").mkdir()
    for name, text in files.items():
        (root / "submission" / name).write_text(text)
    (root / "results" / "results.json").unlink(missing_ok=True)
    if metadata is not None:
        (root / "submission_metadata.json").write_text(json.dumps(metadata))


def run_autograder(root: Path, *, python: str | None = sys.executable, wrapper: tuple[str, ...] = (),
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOGRADER_", "PYTHON"))}
    environment.update(GRADESCOPE_ROOT=str(root), **(env or {}))
    if python:
        environment["AUTOGRADER_PYTHON"] = python
    run = subprocess.run([*wrapper, str(root / "source" / "run_autograder")], cwd=root, env=environment,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


# --- the zip ----------------------------------------------------------------------------------------------

def test_zip_has_gradescopes_layout_and_only_what_grading_needs(zip_path):
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        for script in ("setup.sh", "run_autograder"):
            assert archive.getinfo(script).external_attr >> 16 & 0o111, f"{script} is not executable"
        settings = json.loads(archive.read("gradescope.json"))
        requirements = archive.read("requirements-grading.txt").decode()
    assert {"setup.sh", "run_autograder", "requirements-grading.txt", "gradescope.json",
            "autograder/__main__.py", "autograder/rubrics/attention.py", "solutions/attention.py",
            "assignments/source/attention/attention.ipynb"} <= names
    assert not [n for n in names if n.startswith(("source/", "tests/", "assignments/release"))
                or "__pycache__" in n or "gradescope_files" in n]
    assert settings == {"assignment": "attention", "output_format": "md",
                        "visibility": {"MultiHeadAttention": "after_due_date"}}
    lines = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    packages = {line.split(";")[0].split("=")[0].split(">")[0] for line in lines}
    assert packages == {"torch", "numpy", "hypothesis"}  # the set-up cells import only torch and the stdlib
    torch_line = next(line for line in lines if line.startswith("torch"))
    assert torch_line.startswith("torch==") and torch_line.endswith("+cpu")
    assert 'hypothesis>=6.168,<6.169; python_version < "3.11"' in lines  # hypothesis 6.169 dropped Python 3.10


def test_grading_requirements_follow_what_set_up_cells_import(tmp_path, monkeypatch):
    nb = {"cells": [{"cell_type": "code", "metadata": {"course": {"role": "setup"}},
                     "source": "import os\nimport sklearn.linear_model\nfrom numpy import linalg\n"},
                    {"cell_type": "code", "metadata": {}, "source": "import transformers\n"}]}
    path = tmp_path / "demo.ipynb"
    path.write_text(json.dumps(nb))
    monkeypatch.setattr(gradescope, "source_path", lambda name: path)
    text = gradescope.grading_requirements("demo")
    assert "scikit-learn>=1.4,<2" in text.splitlines()  # import name sklearn, distribution scikit-learn
    assert "transformers" not in text  # a student cell's import is not the grader's business

    nb["cells"][0]["source"] = "import not_a_module_anywhere\n"
    path.write_text(json.dumps(nb))
    with pytest.raises(SystemExit, match="not_a_module_anywhere"):
        gradescope.grading_requirements("demo")


def test_visibility_options_are_checked_against_the_rubric(released_attention):
    assert gradescope.parse_visibility(["causal_mask=hidden", "MultiHeadAttention/bad_arguments="
                                        "after_due_date"], ASSIGNMENT) == {
        "causal_mask": "hidden", "MultiHeadAttention/bad_arguments": "after_due_date"}
    with pytest.raises(SystemExit, match="no item or check 'causal'"):
        gradescope.parse_visibility(["causal=hidden"], ASSIGNMENT)
    with pytest.raises(SystemExit, match="LEVEL one of"):
        gradescope.parse_visibility(["causal_mask=later"], ASSIGNMENT)


# --- the results file, from a grader result ----------------------------------------------------------------

def contract_result() -> dict:
    """A grader result in the shared per-check shape (SPEC's contract between helpers)."""
    def check(id_, title, passed, points, max_points, message=None):
        return {"id": id_, "title": title, "passed": passed, "points": points, "max_points": max_points,
                "signature": None if passed else "sig", "example": None if passed else "q = ```tensor```",
                "message": message, "hint": "revisit the mask"}
    checks = [check("matches_reference", "matches the reference", True, 4.0, 4.0),
              check("empty_rows", "rows with no key give zeros", False, 0.0, 1.0, "got nan")]
    return {"score": 6.0, "execution_time": 1.5, "output": "Score: 6 / 7\nIsolation: bwrap\nNote: cell 3 raised",
            "tests": [{"name": "sdpa", "score": 4.0, "max_score": 5.0, "status": "failed", "visibility": "visible",
                       "output": "grader text", "extra_data": {"item": "sdpa", "checks": checks}},
                      {"name": "mask", "score": 2.0, "max_score": 2.0, "status": "passed", "visibility": "visible",
                       "output": "✓ mask"}],
            "extra_data": {"submission": "x", "assignment": "attention", "isolation": "bwrap",
                           "notes": ["cell 3 raised"]}}


def test_a_check_with_its_own_visibility_becomes_its_own_test():
    settings = {"visibility": {"sdpa/empty_rows": "after_due_date", "mask": "hidden"}, "output_format": "text"}
    result = gradescope.finish(contract_result(), settings, {})
    assert_gradescope_schema(result)
    by_name = {t["name"]: t for t in result["tests"]}
    assert set(by_name) == {"sdpa", "sdpa: rows with no key give zeros", "mask"}
    kept, split = by_name["sdpa"], by_name["sdpa: rows with no key give zeros"]
    assert (kept["score"], kept["max_score"], kept["status"], kept["visibility"]) == (4.0, 4.0, "passed", "visible")
    assert (split["score"], split["max_score"], split["status"], split["visibility"]) == (
        0.0, 1.0, "failed", "after_due_date")
    assert "no key" not in kept["output"] and "got nan" in split["output"] and "Hint" in split["output"]
    assert by_name["mask"]["visibility"] == "hidden" and result["score"] == 6.0


def test_a_split_check_without_per_check_results_hides_its_whole_item():
    result = contract_result()
    del result["tests"][0]["extra_data"]
    shown = gradescope.finish(result, {"visibility": {"sdpa/empty_rows": "hidden"}, "output_format": "md"}, {})
    assert_gradescope_schema(shown)
    assert [(t["name"], t["visibility"]) for t in shown["tests"]] == [("sdpa", "hidden"), ("mask", "visible")]


def test_markdown_feedback_keeps_student_text_out_of_the_markup():
    result = gradescope.finish(contract_result(), {"visibility": {}, "output_format": "md"}, {})
    output = result["tests"][0]["output"]
    assert "**✗ rows with no key give zeros** (0/1)" in output
    # The example holds a triple backtick: its fence is longer, so the student's text cannot close it.
    assert "````text\nq = ```tensor```\n````" in output
    assert result["output_format"] == "md" and all(t["output_format"] == "md" for t in result["tests"])
    assert "```text\ncell 3 raised\n```" in result["output"]


def test_submission_metadata_names_the_student_and_may_be_missing_or_broken(tmp_path):
    path = tmp_path / "submission_metadata.json"
    assert gradescope.read_metadata(path) == {}
    path.write_text("{not json")
    assert gradescope.read_metadata(path) == {}
    path.write_text(json.dumps(METADATA))
    submitter = gradescope.read_metadata(path)
    assert submitter == {"submission_id": 123456, "created_at": METADATA["created_at"],
                         "users": [{"name": "Ada Student", "id": 4242}]}
    result = gradescope.finish(contract_result(), {"visibility": {}, "output_format": "text"}, submitter)
    assert result["extra_data"]["submission"] == "Ada Student (4242)"
    assert "ada@example.edu" not in json.dumps(result)


# --- run_autograder with the development interpreter -------------------------------------------------------

@pytest.fixture(scope="module")
def tree(zip_path, tmp_path_factory) -> Path:
    return gradescope_tree(zip_path, tmp_path_factory.mktemp("gradescope"))


@pytest.mark.parametrize("name", ["correct", "wrong", "hostile", "broken"])
def test_run_autograder_grades_student_notebooks(tree, released_attention, name):
    text, expected = notebooks(released_attention, tree)[name]
    submit(tree, {"attention.ipynb": text})
    run = run_autograder(tree)
    assert f"grader: {tree / 'source' / 'autograder'}" in run.stdout  # the package's own copy, not the checkout
    result = read_results(tree)
    if name == "hostile" and result["extra_data"]["isolation"] == "unprotected":
        pytest.xfail("graded 'unprotected' here: student code could read the references")
    got = scores(result)
    if name == "wrong":
        assert got["causal_mask"] == 2 and got["MultiHeadAttention"] == 5 and got["scaled_dot_product_attention"] < 5
    else:
        assert result["score"] == expected, result["output"]
    if name == "broken":
        assert got["causal_mask"] == 2 and "JSON is broken" in result["output"]
    assert result["extra_data"]["submission"] == "Ada Student (4242)"
    assert result["extra_data"]["source_path"] == "attention.ipynb"
    assert {t["name"]: t["visibility"] for t in result["tests"]}["MultiHeadAttention"] == "after_due_date"


def test_run_autograder_without_a_notebook_or_metadata_says_so(tree):
    submit(tree, {"answers.py": "print('hi')\n"}, metadata=None)
    (tree / "submission_metadata.json").unlink(missing_ok=True)
    run_autograder(tree)
    result = read_results(tree)
    assert result["score"] == 0 and set(scores(result)) == set(POINTS)
    assert "No notebook was found in your submission (uploaded: answers.py)" in result["output"]
    assert result["extra_data"]["submission"] == "submission"


def test_a_crashing_submission_gets_zero_with_the_reason(tree, released_attention):
    crash = "import os\nos._exit(3)\n"
    submit(tree, {"attention.ipynb": student_notebook(released_attention, {"causal_mask": crash})})
    run_autograder(tree)
    result = read_results(tree)
    assert result["score"] == 0 and all("worker" in t["output"] for t in result["tests"])


def test_a_grader_failure_still_gives_a_results_file(tree, released_attention):
    rubric = tree / "source" / "autograder" / "rubrics" / "attention.py"
    original = rubric.read_text()
    rubric.write_text("raise RuntimeError('rubric broken on purpose')\n")
    try:
        submit(tree, {"attention.ipynb": notebooks(released_attention, tree)["correct"][0]})
        run = run_autograder(tree)
    finally:
        rubric.write_text(original)
    result = read_results(tree)
    assert result["score"] == 0 and result["tests"] == []
    assert "The autograder failed while grading this submission" in result["output"]
    assert "rubric broken on purpose" in result["extra_data"]["grader_error"] and "Traceback" in run.stdout


def test_run_autograder_writes_a_zero_when_python_dies(tree, released_attention, tmp_path):
    dying = tmp_path / "python"
    dying.write_text("#!/bin/sh\nkill -9 $$\n")
    dying.chmod(0o755)
    submit(tree, {"attention.ipynb": notebooks(released_attention, tree)["correct"][0]})
    run = run_autograder(tree, python=str(dying))
    result = read_results(tree)
    assert result["score"] == 0 and result["tests"] == [] and result["extra_data"]["grader_exit_status"] == 137
    assert "stopped (exit status 137) before it could grade" in result["output"] and "writing a zero" in run.stdout


# --- a fresh container: setup.sh into a new environment, then grading without CAP_SYS_ADMIN or network ------

IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # no pyenv, no venv
DROPPED = ("unshare", "--net", "setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin")
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
needs_root = pytest.mark.skipif(os.geteuid() != 0 or not (shutil.which("setpriv") and shutil.which("unshare")),
                                reason="simulating Gradescope's container needs root, setpriv and unshare")


def image_python_ok() -> bool:
    """Whether the image's own python3 is 3.10 or newer with venv, as setup.sh needs without apt-get."""
    python = shutil.which("python3", path=IMAGE_PATH)
    check = "import sys, ensurepip; sys.exit(sys.version_info < (3, 10))"
    return bool(python) and subprocess.run([python, "-c", check], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def container(zip_path) -> Path:
    """A Gradescope tree after setup.sh, run as Gradescope does: with the image's own python3 (not pyenv's,
    whose standard library under /root an unprivileged user could not read) and pip's own configuration."""
    if not image_python_ok():
        pytest.skip(f"no python3 3.10 or newer with venv on {IMAGE_PATH}")
    # Not under pytest's private temporary folders (student code, as another user, must reach the venv in it)
    # nor under /tmp (the sandbox gives each submission a /tmp of its own); /autograder is neither.
    (ROOT / "build").mkdir(exist_ok=True)
    root = gradescope_tree(zip_path, Path(tempfile.mkdtemp(prefix="gradescope-container-", dir=ROOT / "build")))
    os.chmod(root, 0o755)
    blocked = [p for p in root.parents if not p.stat().st_mode & 0o001]
    if blocked:
        pytest.skip(f"{blocked[0]} does not let other users through, as every folder above /autograder does")
    env = {"PATH": IMAGE_PATH, "HOME": os.environ.get("HOME", "/root"), "GRADESCOPE_ROOT": str(root)}
    start = time.perf_counter()
    setup = subprocess.run(["bash", str(root / "source" / "setup.sh")], env=env, capture_output=True, text=True,
                           timeout=1200)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    venv = root / "source" / ".venv"
    size = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True).stdout.split()[0]
    print(f"setup.sh: {time.perf_counter() - start:.0f} s; virtual environment {size} MiB")
    yield root
    shutil.rmtree(root)


def level_works_in_container(root: Path) -> bool:
    """Whether a worker starts, without CAP_SYS_ADMIN, at the level the package's grader detects there."""
    probe = ("from autograder.sandbox import WorkerPool, detect_level\n"
             "pool = WorkerPool(level=detect_level())\npool.start()\nprint(pool.level)\npool.close()\n")
    env = {"GRADESCOPE_ROOT": str(root), "PYTHONPATH": str(root / "source"), "PATH": IMAGE_PATH}
    run = subprocess.run([*DROPPED, str(root / "source" / ".venv" / "bin" / "python"), "-c", probe], env=env,
                         cwd=root / "source", capture_output=True, text=True, timeout=300)
    return run.returncode == 0


@pytest.fixture(scope="module")
def graded_in_container(container, released_attention) -> dict[str, dict]:
    # Until a level for root without CAP_SYS_ADMIN lands (issue 13 item 2), the run is forced to "unprotected";
    # `test_fresh_container_keeps_the_references_from_hostile_code` then xfails where it would assert protection.
    env = {"PATH": IMAGE_PATH}
    if not level_works_in_container(container):
        env["AUTOGRADER_ISOLATION"] = "unprotected"
    results = {}
    for name, (text, _) in notebooks(released_attention, container).items():
        submit(container, {"attention.ipynb": text})
        run_autograder(container, python=None, wrapper=DROPPED, env=env)
        results[name] = read_results(container)
    return results


@pytest.mark.slow
@needs_root
def test_fresh_container_has_no_cuda_and_only_the_grading_packages(container):
    venv = container / "source" / ".venv"
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, check=True).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert not [p for p in installed if p.startswith("nvidia")]
    assert not list(venv.rglob("libcudart*")) and not list(venv.rglob("libcublas*"))
    assert {"torch", "numpy", "hypothesis"} <= installed
    assert not installed & {"nbgrader", "jupytext", "nbformat", "transformers", "pytest", "jupyterlab"}


@pytest.mark.slow
@needs_root
def test_fresh_container_grades_four_notebooks_without_cap_sys_admin_or_network(graded_in_container):
    for name, result in graded_in_container.items():
        assert "grader_error" not in result["extra_data"], (name, result["output"])
        assert result["extra_data"]["submission"] == "Ada Student (4242)"
    assert graded_in_container["correct"]["score"] == 12
    wrong = scores(graded_in_container["wrong"])
    assert wrong["causal_mask"] == 2 and wrong["MultiHeadAttention"] == 5 and wrong["scaled_dot_product_attention"] < 5
    assert graded_in_container["broken"]["score"] == 2


@pytest.mark.slow
@needs_root
def test_fresh_container_keeps_the_references_from_hostile_code(container, graded_in_container):
    hostile = graded_in_container["hostile"]
    assert hostile["score"] != 1000 and "isolation" in hostile["extra_data"]  # the forged file did not survive
    protected = ["solutions/attention.py", "autograder/rubrics/attention.py", "gradescope.json",
                 "assignments/source/attention/attention.ipynb", "solutions/__pycache__",
                 "autograder/rubrics/__pycache__", "build/replays/attention.replays"]
    readable = subprocess.run([*NOBODY, "find", *(str(container / "source" / p) for p in protected), "-readable"],
                              capture_output=True, text=True).stdout.split()
    assert readable == [], f"readable by an unprivileged user: {readable}"
    assert (container / "source" / "solutions" / "__pycache__").is_dir()  # compiled by setup.sh, not left out
    assert (container / "source" / "build" / "replays" / "attention.replays").is_file()  # recorded by setup.sh
    assert hostile["extra_data"]["isolation"] != "unprotected", "no level contained the student without CAP_SYS_ADMIN"
    assert scores(hostile) == {"causal_mask": 2.0, "scaled_dot_product_attention": 0.0, "MultiHeadAttention": 5.0}


# --- Python 3.10, the base image's own Python on Gradescope ------------------------------------------------

SOURCES = sorted(p for folder in ("autograder", "solutions") for p in (ROOT / folder).rglob("*.py"))
# Standard-library names that appeared in Python 3.11 or later (none of them may be used by the grader).
NEWER_IMPORTS = {"tomllib", "wsgiref.types", "typing.Self", "typing.LiteralString", "typing.Never",
                 "typing.assert_never", "typing.assert_type", "typing.reveal_type", "typing.Required",
                 "typing.NotRequired", "typing.TypeVarTuple", "typing.Unpack", "typing.override",
                 "enum.StrEnum", "enum.ReprEnum", "enum.verify", "enum.member", "enum.nonmember",
                 "asyncio.TaskGroup", "asyncio.timeout", "contextlib.chdir", "datetime.UTC", "itertools.batched"}
NEWER_NAMES = {"ExceptionGroup", "BaseExceptionGroup", "add_note", "file_digest", "getmembers_static",
               "getLevelNamesMapping", "TaskGroup", "StrEnum", "batched"}


def python310() -> str | None:
    """A working Python 3.10 (a pyenv shim may exist without one behind it)."""
    candidates = [*map(str, sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))), "python3.10"]
    for candidate in candidates:
        try:
            subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"], check=True,
                           capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        return candidate
    return None


PYTHON310 = python310()


def test_grader_and_references_use_nothing_newer_than_python310():
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = {alias.name for alias in node.names} & NEWER_IMPORTS
            elif isinstance(node, ast.ImportFrom):
                names = {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)} & NEWER_IMPORTS
            elif isinstance(node, ast.Attribute):
                names = {node.attr} & NEWER_NAMES
            elif isinstance(node, ast.Name):
                names = {node.id} & NEWER_NAMES
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for name in names]
    assert not found, found


@pytest.mark.skipif(PYTHON310 is None, reason="no Python 3.10 interpreter here")
def test_python310_compiles_everything_and_writes_a_result_without_torch(tmp_path):
    """Here Python 3.10 has no torch (no wheel for it on this machine), so this checks what it can: every file
    compiles, and the torch-free path (a grader that cannot import torch) still writes a valid results.json."""
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "submission" / "attention.ipynb").write_text("{}")
    script = f"""
import sys
from pathlib import Path
for path in {[str(p) for p in SOURCES]!r}:
    compile(Path(path).read_text(), path, "exec")
from autograder import gradescope
sys.exit(gradescope.run("attention", Path({str(root)!r})))
"""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([PYTHON310, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No module named 'torch'" in run.stdout
    result = read_results(root)
    assert result["score"] == 0 and "ModuleNotFoundError" in result["extra_data"]["grader_error"]
