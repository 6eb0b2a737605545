"""Feedback is checked against the card it names: issued by this service, and only what that card offered.

Feedback on unknown cards, suggestions never offered or override reasons never proposed would
pollute the acceptance statistics the feedback exists for, so such a call is refused whole (400)
with the location of each mismatch, and nothing of it is stored.
"""

from __future__ import annotations

from typing import Callable, Iterable

from ..assessment_model import InputIssue
from ..errors import InputError
from .bundle_checks import request_issue
from .feedback_store import CardRecord
from .request_validation import FeedbackEntry, is_canonical_uuid

CardLookup = Callable[[str], CardRecord | None]


def _entry_issues(entry: FeedbackEntry, where: str, issued: CardLookup) -> list[InputIssue]:
    card = issued(entry.card) if is_canonical_uuid(entry.card) else None
    if card is None:
        return [request_issue("the card was not issued by this service (card must be the uuid of a card this "
                              "service returned)", f"{where}.card", "not-found")]
    issues = []
    offered = set(card.suggestion_uuids)
    for index, suggestion_id in enumerate(entry.accepted_suggestions):
        if suggestion_id not in offered:
            issues.append(request_issue("the accepted suggestion is not one this card offered",
                                        f"{where}.acceptedSuggestions[{index}].id", "not-found"))
    if entry.override_code is not None and (entry.override_system, entry.override_code) not in set(card.override_codes):
        issues.append(request_issue("the override reason is not one this card offered (see the card's "
                                    "overrideReasons)", f"{where}.overrideReason.reason", "code-invalid"))
    return issues


def check_against_issued_cards(entries: Iterable[FeedbackEntry], issued: CardLookup) -> None:
    """InputError (400) listing every entry that does not match the card it names; None when all match."""
    issues: list[InputIssue] = []
    for index, entry in enumerate(entries):
        issues.extend(_entry_issues(entry, f"feedback[{index}]", issued))
    if issues:
        raise InputError(issues, status=400)
