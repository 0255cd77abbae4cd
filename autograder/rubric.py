"""What a rubric is: graded items, each split into checks.

A rubric module (`autograder/rubrics/<assignment>.py`) defines `RUBRIC`, a
`Rubric` of `Item`s named exactly as in SPEC.md. An item's points are split
across its checks by weight; a check earns its share only when hypothesis
finds no failing example. Checks are built by the helpers in
`autograder.checks`, so a rubric reads as a list of what is checked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from hypothesis.strategies import SearchStrategy

from .common.compare import Mismatch

# run(example, student) -> Mismatch | None, where `student` is a
# `autograder.student.Student` (calls go to the sandboxed worker).
CheckBody = Callable[[Any, Any], "Mismatch | None"]


@dataclass(frozen=True)
class Check:
    """One property of one graded item, searched with hypothesis."""

    id: str                       # stable, snake_case; part of result JSON
    title: str                    # one line shown to the student
    hint: str                     # the concept to revisit when this check fails
    strategy: SearchStrategy      # draws one example (any printable value)
    run: CheckBody
    max_examples: int = 100
    weight: float = 1.0
    show_example: bool = True     # False when the mismatch itself names the input (fixed cases)


@dataclass(frozen=True)
class Item:
    """A graded name from SPEC.md and the checks that decide its points."""

    name: str
    points: float
    checks: tuple[Check, ...]

    def __post_init__(self) -> None:
        ids = [c.id for c in self.checks]
        if len(ids) != len(set(ids)):
            raise ValueError(f"item {self.name}: check ids repeat: {ids}")


@dataclass(frozen=True)
class Rubric:
    assignment: str
    version: str                  # folded into the computed version (grade.rubric_version): bump to force a regrade
    items: tuple[Item, ...]

    @property
    def total(self) -> float:
        return sum(item.points for item in self.items)

    def item(self, name: str) -> Item:
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(f"rubric {self.assignment} has no item {name!r}")
