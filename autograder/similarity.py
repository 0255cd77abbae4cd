"""Which submissions' solution code is suspiciously alike: evidence for a TA to look at, never a verdict.

Each submission's solution cells (found by `autograder.submission.recover`,
which never runs code) are reduced to a token stream in which comments,
whitespace, docstrings and string contents are gone and every identifier
not written after a dot is the same token `V`, so renaming variables or
reordering comments changes nothing. The stream is cut into k-token
windows, hashed, and winnowed (Schleimer, Wilkerson and Aiken's selection
of the smallest hash in every window of w hashes), which keeps a small set
of fingerprints robust to inserted or moved code. Fingerprints that also
occur in the released starter notebook are dropped, so the stubs everyone
received make no one look alike. Two submissions score the Jaccard index
of their fingerprint sets (0 = nothing shared, 1 = same set).
"""
from __future__ import annotations

import io
import keyword
import tokenize
import zlib
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from .submission import load_cells, recover, top_level_names

K = 6                 # tokens per hashed window
W = 4                 # hashes per winnowing window
MIN_FINGERPRINTS = 8  # below this a submission has too little code of its own to compare
DEFAULT_THRESHOLD = 0.6


def normalise(source: str) -> list[str]:
    """Tokens of `source` with layout, comments and names abstracted away (see the module docstring)."""
    tokens: list[str] = []
    previous = ""
    stream: list[tokenize.TokenInfo] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(_without_magics(source)).readline):
            stream.append(token)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # code that does not tokenize to the end (an unclosed bracket) is compared as far as it goes
    for index, token in enumerate(stream):
        kind, text = token.type, token.string
        if kind in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                    tokenize.ENDMARKER, tokenize.ENCODING):
            continue
        if kind == tokenize.STRING:
            if _is_docstring(stream, index):
                continue
            tokens.append("S")
        elif kind == tokenize.NAME and not keyword.iskeyword(text) and previous != ".":
            tokens.append("V")
        else:
            tokens.append(text)
        previous = text
    return tokens


def _is_docstring(stream: list[tokenize.TokenInfo], index: int) -> bool:
    """A string that is a statement on its own (after a newline or indent, followed by a newline)."""
    before = next((t for t in reversed(stream[:index]) if t.type not in (tokenize.NL, tokenize.COMMENT)), None)
    after = next((t for t in stream[index + 1:] if t.type not in (tokenize.NL, tokenize.COMMENT)), None)
    starts = before is None or before.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    return starts and (after is None or after.type in (tokenize.NEWLINE, tokenize.ENDMARKER))


def _without_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def fingerprints(tokens: list[str]) -> set[int]:
    """Winnowed hashes of the K-token windows of `tokens` (crc32: the same on every machine and run)."""
    hashes = [zlib.crc32("\x1f".join(tokens[i:i + K]).encode()) for i in range(len(tokens) - K + 1)]
    if len(hashes) <= W:
        return set(hashes)
    chosen = set()
    for start in range(len(hashes) - W + 1):
        window = hashes[start:start + W]
        chosen.add(min(window))
    return chosen


@dataclass(frozen=True)
class Code:
    """One submission's solution code: its cells (for showing) and what is compared."""

    student: str
    cells: tuple[tuple[str, str], ...]   # (graded name or cell id, source) in notebook order
    tokens: tuple[str, ...]
    prints: frozenset[int]


def solution_cells(path: Path, graded_names: list[str]) -> list[tuple[str, str]]:
    """(label, source) of the cells grading would run for this notebook: the student's definitions and helpers."""
    recovered = recover(path, [], graded_names)
    cells = []
    for cell in recovered.cells:
        names = [n for n in graded_names if _defines(cell["source"], n)]
        cells.append((", ".join(names) or "helper cell", cell["source"]))
    return cells


def _defines(source: str, name: str) -> bool:
    return name in (top_level_names(source) or set())


def starter_prints(released: Path | None) -> set[int]:
    """Fingerprints of every code cell of the released notebook (what every student started from)."""
    if released is None or not released.exists():
        return set()
    cells, _, _ = load_cells(released)
    prints: set[int] = set()
    for cell in cells:
        source = cell.get("source", "")
        prints |= fingerprints(normalise("".join(source) if isinstance(source, list) else str(source)))
    return prints


def load_code(student: str, path: Path, graded_names: list[str], starter: set[int]) -> Code:
    cells = tuple(solution_cells(path, graded_names))
    per_cell = [normalise(source) for _, source in cells]
    # Fingerprinted cell by cell, as the starter is: a window across two cells is in nobody's starter code.
    prints = frozenset().union(*(fingerprints(tokens) for tokens in per_cell)) - starter
    return Code(student, cells, tuple(t for tokens in per_cell for t in tokens), prints)


@dataclass(frozen=True)
class Pair:
    a: Code
    b: Code
    score: float        # Jaccard index of the fingerprint sets
    identical: bool     # the normalised solution code is the same token for token


def similar_pairs(codes: list[Code], threshold: float = DEFAULT_THRESHOLD) -> list[Pair]:
    """Pairs scoring at least `threshold`, identical ones first, then by score (highest first)."""
    comparable = [c for c in codes if len(c.prints) >= MIN_FINGERPRINTS]
    pairs = []
    for a, b in combinations(sorted(comparable, key=lambda c: c.student), 2):
        shared = len(a.prints & b.prints)
        score = shared / len(a.prints | b.prints)
        identical = a.tokens == b.tokens
        if identical or score >= threshold:
            pairs.append(Pair(a, b, round(score, 3), identical))
    return sorted(pairs, key=lambda p: (not p.identical, -p.score, p.a.student, p.b.student))
