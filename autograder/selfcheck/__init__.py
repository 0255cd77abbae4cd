"""Visible checks: what students run in their notebooks. No reference solutions in here.

`check(name, obj)` runs every visible check registered for a graded name.
"""
from .core import check

__all__ = ["check"]
