"""Hostile and broken submissions of the attention assignment, each with what the grader must do about it.

A `Hostile` case replaces the code of some solution cells of the reference
submission (the rest stays honest); a `Broken` case rewrites the notebook
file itself; a `Placed` case lays a notebook out another way, or links to
one. `scores` gives the points each item must earn; `says` is a phrase that
must appear in that item's feedback or in the notes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

FULL = {"causal_mask": 2.0, "scaled_dot_product_attention": 5.0, "MultiHeadAttention": 5.0}
MARKER = "HOSTILE_LEFTOVER_PROCESS"

# An honest causal_mask, for cases that attack from a cell but still want their points.
HONEST_MASK = """
def causal_mask(seq_len, *, device=None):
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
"""


@dataclass(frozen=True)
class Hostile:
    name: str
    cells: dict[str, str]             # graded name -> replacement source of its solution cell
    scores: dict[str, float]          # points each item must earn
    says: str = ""                    # phrase expected in the attacked item's feedback or the notes
    item: str = "causal_mask"         # where `says` must appear


@dataclass(frozen=True)
class Broken:
    name: str
    rewrite: Callable[[dict], bytes]  # the reference notebook (as JSON) -> the submitted file's bytes
    scores: dict[str, float] = field(default_factory=lambda: dict(FULL))
    says: str = ""


def zero(*items: str) -> dict[str, float]:
    return {name: (0.0 if name in items else points) for name, points in FULL.items()}


HOSTILE = [
    # --- cheating the comparison ---
    Hostile("patches_torch_comparisons", {"causal_mask": """
import torch
torch.equal = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)
def causal_mask(seq_len, *, device=None):
    return torch.zeros(seq_len, seq_len, dtype=torch.bool)
"""}, zero("causal_mask"), "values differ"),
    Hostile("patches_hypothesis_and_math", {"causal_mask": """
import hypothesis, math, numpy
hypothesis.given = lambda *a, **k: (lambda f: (lambda *x, **y: None))
math.isclose = lambda *a, **k: True
numpy.allclose = lambda *a, **k: True
def causal_mask(seq_len, *, device=None):
    return torch.zeros(seq_len, seq_len, dtype=torch.bool)
"""}, zero("causal_mask"), "values differ"),
    Hostile("lying_tensor_subclass", {"causal_mask": """
class Agreeable(torch.Tensor):
    def __eq__(self, other):
        return True
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return True
def causal_mask(seq_len, *, device=None):
    return torch.zeros(seq_len, seq_len, dtype=torch.bool).as_subclass(Agreeable)
"""}, zero("causal_mask"), "subclass of torch.Tensor"),
    Hostile("object_with_its_own_eq", {"causal_mask": """
class Anything:
    def __eq__(self, other):
        return True
    def __array__(self, dtype=None):
        raise RuntimeError
def causal_mask(seq_len, *, device=None):
    return Anything()
"""}, zero("causal_mask"), "an object of type"),
    Hostile("returns_a_list", {"causal_mask": """
def causal_mask(seq_len, *, device=None):
    return [[j <= i for j in range(seq_len)] for i in range(seq_len)]
"""}, zero("causal_mask"), "expected a torch.Tensor but got a list"),
    Hostile("mutates_its_inputs", {"scaled_dot_product_attention": """
import math
def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float('-inf')) if attn_mask.dtype == torch.bool else scores + attn_mask
    if is_causal:
        scores = scores.masked_fill(~torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril(), float('-inf'))
    weights = torch.softmax(scores, -1).nan_to_num(0.0)
    out = weights @ v
    q.mul_(0)
    return out, weights
"""}, {"causal_mask": 2.0, "scaled_dot_product_attention": 4.55, "MultiHeadAttention": 5.0}, "in place",
        "scaled_dot_product_attention"),  # the maths is right: it loses inputs_untouched, gradient, bad_arguments
    Hostile("wrong_dtype", {"causal_mask": """
def causal_mask(seq_len, *, device=None):
    return torch.ones(seq_len, seq_len, device=device).tril()
"""}, {**FULL, "causal_mask": 1.6}, "dtype is float32 but should be bool"),  # right values: only the dtype concept
    # --- reaching what they must not ---
    Hostile("imports_the_references", {"causal_mask": """
from solutions.attention import causal_mask
"""}, zero("causal_mask"), "solutions"),
    Hostile("reads_reference_files", {"causal_mask": """
import glob
def causal_mask(seq_len, *, device=None):
    for path in glob.glob('/work/**/solutions/attention.py', recursive=True) + ['/autograder/source/solutions/attention.py']:
        namespace = {}
        exec(open(path).read(), namespace)
        return namespace['causal_mask'](seq_len, device=device)
    raise FileNotFoundError('no reference found')
"""}, zero("causal_mask"), "No such file"),
    Hostile("reads_the_gradebook_and_others", {"causal_mask": """
import glob
def causal_mask(seq_len, *, device=None):
    found = glob.glob('/work/**/gradebook.db', recursive=True) + glob.glob('/work/**/submitted/**/*.ipynb', recursive=True)
    raise RuntimeError(f'found {len(found)} files')
"""}, zero("causal_mask"), "found 0 files"),
    Hostile("opens_a_network_connection", {"causal_mask": """
import socket
def causal_mask(seq_len, *, device=None):
    socket.create_connection(('127.0.0.1', 9), timeout=2).sendall(b'answers please')
"""}, zero("causal_mask"), "raised"),
    # --- forging results ---
    Hostile("forges_results", {"causal_mask": """
import json, os, glob
print(json.dumps({'score': 100, 'tests': []}))
for folder in ['.', '/tmp', os.path.expanduser('~')] + glob.glob('/work/**/grades*', recursive=True):
    for name in ['results.json', 'grades.csv', 'gradebook.db', 'reference.json']:
        try:
            open(os.path.join(folder, name), 'w').write('{"score": 100}')
        except OSError:
            pass
def causal_mask(seq_len, *, device=None):
    return torch.zeros(seq_len, seq_len, dtype=torch.bool)
"""}, zero("causal_mask"), "values differ"),
    # --- escaping or stalling ---
    Hostile("exits_at_top_level", {"causal_mask": "import sys\nsys.exit(0)\n" + HONEST_MASK},
            zero("causal_mask"), "is not defined"),
    Hostile("raises_keyboard_interrupt", {"causal_mask": """
def causal_mask(seq_len, *, device=None):
    raise KeyboardInterrupt
"""}, zero("causal_mask"), "KeyboardInterrupt"),
    Hostile("hard_exit", {"causal_mask": """
import os
def causal_mask(seq_len, *, device=None):
    os._exit(0)
"""}, zero("causal_mask"), "exited with status 0"),
    Hostile("infinite_loop", {"causal_mask": """
def causal_mask(seq_len, *, device=None):
    while True:
        pass
"""}, zero("causal_mask"), "timed out"),
    Hostile("huge_matmul", {"scaled_dot_product_attention": """
def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
    big = torch.ones(4000, 4000)
    while True:
        big = big @ big
"""}, {"causal_mask": 2.0, "scaled_dot_product_attention": 0.0, "MultiHeadAttention": 5.0}, "timed out",
        "scaled_dot_product_attention"),  # MultiHeadAttention is graded with a trusted SDPA
    Hostile("ignores_signals_and_sleeps", {"causal_mask": """
import signal, time
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGXCPU):
    signal.signal(sig, signal.SIG_IGN)
def causal_mask(seq_len, *, device=None):
    time.sleep(3600)
"""}, zero("causal_mask"), "without answering"),
    Hostile("sleeping_thread", {"causal_mask": """
import threading, time
threading.Thread(target=lambda: time.sleep(3600), daemon=False).start()
""" + HONEST_MASK}, FULL),
    Hostile("deep_recursion", {"causal_mask": """
import sys
sys.setrecursionlimit(10**8)
def causal_mask(seq_len, *, device=None):
    def down(n):
        return down(n + 1) + 1
    return down(0)
"""}, zero("causal_mask"), "timed out"),
    Hostile("leaves_forked_children", {"causal_mask": f"""
import os
for _ in range(4):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execve('/bin/sleep', ['sleep', '3600'], {{'{MARKER}': '1'}})
        os._exit(0)
""" + HONEST_MASK}, FULL),
    Hostile("fork_bomb", {"causal_mask": """
import os
def causal_mask(seq_len, *, device=None):
    while True:
        try:
            os.fork()
        except OSError:
            pass
"""}, zero("causal_mask"), ""),
    Hostile("memory_bomb", {"causal_mask": """
def causal_mask(seq_len, *, device=None):
    hoard = []
    while True:
        hoard.append(bytearray(2**28))
"""}, zero("causal_mask")),  # MemoryError at the memory limit, or a timeout while filling pages: either way 0
    Hostile("fills_the_disk", {"causal_mask": """
def causal_mask(seq_len, *, device=None):
    for index in range(10**6):
        with open(f'fill{index}', 'wb') as handle:
            handle.write(b'x' * 2**24)
"""}, zero("causal_mask"), "raised"),
    Hostile("floods_output", {"causal_mask": "for _ in range(200000):\n    print('x' * 100)\n" + HONEST_MASK}, FULL),
    Hostile("kills_the_fork_server", {"causal_mask": """
import os, signal
def causal_mask(seq_len, *, device=None):
    os.kill(os.getppid(), signal.SIGKILL)
    return torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
"""}, zero("causal_mask"), "killed"),  # in its own pid namespace getppid() is 0: it kills its own process group
    # --- pickle and code-on-load ---
    Hostile("returns_a_pickle_bomb", {"causal_mask": """
import os
class Bomb:
    def __reduce__(self):
        return (os.system, ('touch /tmp/pwned-by-pickle',))
def causal_mask(seq_len, *, device=None):
    return Bomb()
"""}, zero("causal_mask"), "an object of type"),
    # --- what the grader reads back ---
    Hostile("returns_a_huge_tensor", {"causal_mask": """
def causal_mask(seq_len, *, device=None):
    return torch.zeros(64 * 2**20, dtype=torch.uint8)
"""}, zero("causal_mask"), "far more than these inputs call for"),
    Hostile("nested_reply_header", {"causal_mask": """
import os, struct
def causal_mask(seq_len, *, device=None):
    header = b'{"sizes": [], "x": ' + b'[' * 100000 + b']' * 100000 + b'}'
    for fd in range(3, 64):
        try:
            os.write(fd, struct.pack('>Q', len(header)) + header)
        except OSError:
            pass
    return torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
"""}, zero("causal_mask"), "nested too deeply"),
    # --- ordinary bugs the grader must survive ---
    Hostile("sdpa_returns_only_the_output", {"scaled_dot_product_attention": """
import math
def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
    if attn_mask is not None and not (attn_mask.dtype == torch.bool or attn_mask.is_floating_point()):
        raise ValueError('attn_mask must be bool or floating')
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float('-inf')) if attn_mask.dtype == torch.bool else scores + attn_mask
    if is_causal:
        scores = scores.masked_fill(~torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril(), float('-inf'))
    return torch.softmax(scores, -1).nan_to_num(0.0) @ v
"""}, {"causal_mask": 2.0, "scaled_dot_product_attention": 0.0, "MultiHeadAttention": 5.0},
        "should return 2 values as a tuple", "scaled_dot_product_attention"),  # MultiHeadAttention: trusted SDPA
    Hostile("wrong_only_the_first_time", {"causal_mask": """
_seen = set()
def causal_mask(seq_len, *, device=None):
    mask = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
    if seq_len in _seen:
        return mask
    _seen.add(seq_len)
    return ~mask
"""}, zero("causal_mask"), "different results for the same input"),
    Hostile("writes_to_the_grader_channel", {"causal_mask": """
import os
def causal_mask(seq_len, *, device=None):
    for fd in range(3, 64):
        try:
            os.write(fd, b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x10{"ok": true, "value": 1}')
        except OSError:
            pass
    return torch.zeros(seq_len, seq_len, dtype=torch.bool)
"""}, zero("causal_mask"), ""),
]


def _cells(nb: dict) -> list[dict]:
    return nb["cells"]


def _strip_metadata(nb: dict) -> bytes:
    for cell in _cells(nb):
        cell["metadata"] = {}
    return json.dumps(nb).encode()


def _duplicate_grade_ids(nb: dict) -> bytes:
    cells = _cells(nb)
    copy = json.loads(json.dumps(next(c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == "causal_mask")))
    copy["source"] = "# an old attempt\ndef causal_mask(seq_len, *, device=None):\n    return None\n"
    index = cells.index(next(c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == "causal_mask"))
    cells.insert(index, copy)
    return json.dumps(nb).encode()


def _delete_and_reorder(nb: dict) -> bytes:
    nb["cells"] = [c for c in reversed(_cells(nb)) if c["cell_type"] == "code"
                   and not c["metadata"].get("nbgrader", {}).get("grade", False)]
    return json.dumps(nb).encode()


def _tests_to_markdown(nb: dict) -> bytes:
    for cell in _cells(nb):
        if cell["metadata"].get("nbgrader", {}).get("grade_id", "").startswith("test_"):
            cell["cell_type"] = "markdown"
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
    return json.dumps(nb).encode()


def _move_solution(nb: dict) -> bytes:
    cells = _cells(nb)
    solution = next(c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == "causal_mask")
    moved = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": solution["source"]}
    solution["source"] = "# see the end of the notebook"
    cells.append(moved)
    return json.dumps(nb).encode()


def _syntax_error(nb: dict) -> bytes:
    for cell in _cells(nb):
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "causal_mask":
            cell["source"] = "def causal_mask(seq_len, *, device=None)\n    return None\n"
    return json.dumps(nb).encode()


def _to_nbformat_3(nb: dict) -> bytes:
    cells = [{"cell_type": c["cell_type"], "input": c["source"], "metadata": c["metadata"]} for c in _cells(nb)]
    return json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": cells}]}).encode()


def _huge(nb: dict) -> bytes:
    blob = "A" * (100 * 2**20)
    _cells(nb)[0].setdefault("outputs", [])
    nb["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "x = 1",
                        "outputs": [{"output_type": "stream", "name": "stdout", "text": blob}]})
    return json.dumps(nb).encode()


def _unary_minus_cell(nb: dict) -> bytes:
    """10 kB of nested unary minus: more nesting than Python's parser can hold."""
    nb["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                        "source": "x = " + "-" * 10_000 + "1"})
    return json.dumps(nb).encode()


def _deeply_nested_json(nb: dict) -> bytes:
    """Notebook metadata nested deeper than a JSON reader recurses."""
    nb["metadata"]["deep"] = "@"
    return json.dumps(nb).encode().replace(b'"@"', b"[" * 100_000 + b"]" * 100_000)


BROKEN = [
    Broken("invalid_json", lambda nb: json.dumps(nb).encode()[:-200], says="JSON is broken"),
    Broken("empty_file", lambda nb: b"", zero(*FULL), "the file is empty"),
    Broken("not_a_notebook", lambda nb: b"%PDF-1.4 my essay about attention", zero(*FULL), "not a notebook"),
    Broken("nbformat_3", _to_nbformat_3, says="nbformat 3"),
    Broken("metadata_stripped", _strip_metadata, says="no solution cell with grade_id"),
    Broken("duplicated_grade_ids", _duplicate_grade_ids, says="carry grade_id"),
    Broken("cells_deleted_and_reordered", _delete_and_reorder),
    Broken("tests_turned_to_markdown", _tests_to_markdown),
    Broken("solution_moved", _move_solution, says="used the cell that does"),
    Broken("syntax_error_in_one_cell", _syntax_error, zero("causal_mask"), "SyntaxError"),
    Broken("hundred_megabytes", _huge),
    Broken("ten_kilobytes_of_unary_minus", _unary_minus_cell),
    Broken("deeply_nested_json", _deeply_nested_json, says="nested too deeply"),
]

# Only causal_mask answered: the cheapest submission that still earns points, for the cases about finding files.
MASK_ONLY = {"causal_mask": 2.0, "scaled_dot_product_attention": 0.0, "MultiHeadAttention": 0.0}


@dataclass(frozen=True)
class Placed:
    """A notebook laid out some other way than `<name>/attention/attention.ipynb`, or a link: discovery must
    find it, give it an id of its own and record where it was found."""

    name: str
    path: str                         # where it lies, under the folder graded
    content: str                      # "mask_only": the release with causal_mask answered; "vit": the vit
                                      # assignment's notebook; "link:TARGET": a symbolic link to TARGET (a path
                                      # under the folder graded, or SOURCE for the attention source notebook)
    scores: dict[str, float] = field(default_factory=lambda: dict(MASK_ONLY))
    says: str = ""


PLACED = [
    # LMS downloads (a folder per student, no assignment folder) beside nbgrader's layout; ids must not collide.
    Placed("student_a_space_b", "a b/attention.ipynb", "mask_only"),
    Placed("student_a_question_b", "a?b/attention.ipynb", "mask_only"),
    Placed("student_a_underscore_b", "a_b/attention/attention.ipynb", "mask_only"),
    Placed("two_notebooks_first", "twice/attention/attention.ipynb", "mask_only"),
    Placed("two_notebooks_second", "twice/attention/attention-v2.ipynb", "mask_only"),
    Placed("flat_file", "flat_student_attention.ipynb", "mask_only"),
    Placed("another_assignment", "handed_in_vit/attention/attention.ipynb", "vit", zero(*FULL), "'vit' assignment"),
    Placed("link_to_the_source", "linked_source/attention/attention.ipynb", "link:SOURCE", zero(*FULL),
           "symbolic link"),
    Placed("link_to_a_classmate", "linked_classmate/attention/attention.ipynb",
           "link:honest_first/attention/attention.ipynb", zero(*FULL), "symbolic link"),
]
