"""Job-slot stand-ins for the tests of `autograder.batch._Slots`: a grading task that kills its own slot
process for one submission, and slot set-ups that work or fail. Standard library only, so that the slots
the tests start come up in a moment."""
from __future__ import annotations

import os

KILLER = "kills_its_slot"


def no_setup(*args: object) -> None:
    pass


def broken_setup(*args: object) -> None:
    raise OSError("no worker could start")


def grade_or_die(submission, out: str) -> tuple:
    """What `_grade_in_slot` returns, except for KILLER, whose slot process dies at once."""
    if submission.id == KILLER:
        os._exit(3)
    return submission.id, 1.0, 0.0, "unprotected"
