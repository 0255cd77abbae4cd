"""What a rubric is: graded items, each split into checks.

A rubric module (`autograder/rubrics/<assignment>.py`) defines `RUBRIC`, a
`Rubric` of `Item`s named exactly as in SPEC.md. An item is split into concept
checks: one *core* check (the maths on ordinary inputs, at least
`CORE_SHARE` of the item's weight) and one check per convention the notebook
states. A check earns its share of the item's points only when hypothesis
finds no failing example, and a convention check earns nothing while the core
check fails. Every check quotes the sentence of the student's notebook that
demands it (a test finds that sentence in the released notebook). Checks are
built by the helpers in `autograder.checks`, so a rubric reads as a list of
what is checked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from hypothesis.strategies import SearchStrategy

from .common.compare import Mismatch

# run(example, expected, student) -> Mismatch | None, where `expected` is what the check's `expect` made of the
# example (None without one) and `student` is a `autograder.student.Student` (calls go to the sandboxed worker).
CheckBody = Callable[[Any, Any, Any], "Mismatch | None"]
# Examples drawn for every check (hypothesis stops sooner when a strategy has fewer distinct ones).
EXAMPLES = 100


@dataclass(frozen=True)
class Check:
    """One property of one graded item, searched with hypothesis."""

    id: str                       # stable, snake_case; part of result JSON
    title: str                    # one line shown to the student
    hint: str                     # the concept to revisit when this check fails
    strategy: SearchStrategy      # draws one example (any printable value)
    run: CheckBody
    max_examples: int = EXAMPLES
    weight: float = 1.0
    show_example: bool = True     # False when the mismatch itself names the input (fixed cases)
    sentence: str = ""            # the notebook's words that demand this check (found verbatim in its task text)
    core: bool = False            # the item's core check: convention checks earn only when it passes
    # The reference's side of one example (what the student must reproduce), computed in the grader. It must
    # depend on the example alone: a batch computes it once per example and reuses it (see runner.Replays).
    expect: Callable[[Any], Any] | None = None
    # `run` makes exactly one call of the student's code per example, decided by the example and `expect`'s
    # result alone: the runner can then send a chunk of examples' calls to the worker in one request.
    one_call: bool = False


CORE_SHARE = 0.6  # the core check carries at least this share of an item's weight


@dataclass(frozen=True)
class Forbidden:
    """A call that defeats the exercise of an item, as the notebook's task text forbids it.

    The worker counts calls of `call` (and of `routes`, other paths to the same computation) while the
    item is graded; `deduct` points are taken off the item when it was used (0: only flagged)."""

    call: str                     # dotted path, e.g. "torch.nn.functional.scaled_dot_product_attention"
    deduct: float = 0.0
    routes: tuple[str, ...] = ()  # e.g. "torch.ops.aten.scaled_dot_product_attention", counted as `call`


@dataclass(frozen=True)
class Item:
    """A graded name from SPEC.md and the checks that decide its points."""

    name: str
    points: float
    checks: tuple[Check, ...]
    # Other graded names this item calls, with the reference for each: while the item is graded (in a fresh
    # session, after their own checks) they are stand-ins computed by the grader, so a mistake in one of them is
    # charged once, on its own item (see autograder.trusted).
    trusted: dict[str, Callable] = field(default_factory=dict)
    forbidden: tuple[Forbidden, ...] = ()

    def __post_init__(self) -> None:
        ids = [c.id for c in self.checks]
        if len(ids) != len(set(ids)):
            raise ValueError(f"item {self.name}: check ids repeat: {ids}")
        cores = [c for c in self.checks if c.core]
        if len(cores) != 1:
            raise ValueError(f"item {self.name}: needs exactly one core check, has {[c.id for c in cores]}")
        total = sum(c.weight for c in self.checks)
        if cores[0].weight < CORE_SHARE * total - 1e-9:
            raise ValueError(f"item {self.name}: the core check carries {cores[0].weight / total:.0%} of the "
                             f"weight; it needs at least {CORE_SHARE:.0%}")
        missing = [c.id for c in self.checks if not c.sentence.strip()]
        if missing:
            raise ValueError(f"item {self.name}: checks {missing} name no sentence of the notebook")

    def points_of(self, check: Check) -> float:
        """The points `check` is worth: its share of the item's points by weight."""
        return self.points * check.weight / sum(c.weight for c in self.checks)


@dataclass(frozen=True)
class Rubric:
    assignment: str
    version: str                  # folded into the computed version (grade.rubric_version): bump to force a regrade
    items: tuple[Item, ...]

    @property
    def total(self) -> float:
        return sum(item.points for item in self.items)

    @property
    def watched_calls(self) -> list[list[str]]:
        """[call, path] for every path of every forbidden call: what the worker wraps before student code runs."""
        pairs = {(f.call, path) for item in self.items for f in item.forbidden for path in (f.call, *f.routes)}
        return [list(pair) for pair in sorted(pairs)]

    def item(self, name: str) -> Item:
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(f"rubric {self.assignment} has no item {name!r}")
