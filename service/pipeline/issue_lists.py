"""Bounding issue lists so a pathological bundle cannot produce an unbounded OperationOutcome."""

from __future__ import annotations

from typing import Sequence

from ..assessment_model import InputIssue

MAX_ISSUES = 500


def capped(issues: Sequence[InputIssue], limit: int = MAX_ISSUES) -> tuple[InputIssue, ...]:
    """The first `limit` issues, plus one saying how many more were left out."""
    if len(issues) <= limit:
        return tuple(issues)
    left_out = len(issues) - limit
    return tuple(issues[:limit]) + (InputIssue(
        "warning", "too-costly", f"{left_out} further issues of the same input are not listed", None),)
