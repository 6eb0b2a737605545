"""Feedback is checked against the card it names: issued by this service, and only what that card offered.

Feedback on unknown (or expired) cards, suggestions never offered or override reasons never
proposed would pollute the acceptance statistics the feedback exists for, so such a call is
refused whole (400) with the location of each mismatch, and nothing of it is stored.
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
                              "service returned, within CDS_CARD_RETENTION_DAYS)", f"{where}.card", "not-found")]
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


def check_against_issued_cards(entries: Iterable[FeedbackEntry], issued: CardLookup) -> dict[str, CardRecord]:
    """The issued card each entry names, by uuid; InputError (400) listing every entry that does not match it.

    Each card is looked up once, however many entries name it.
    """
    issues: list[InputIssue] = []
    cards: dict[str, CardRecord | None] = {}

    def lookup(card_uuid: str) -> CardRecord | None:
        if card_uuid not in cards:
            cards[card_uuid] = issued(card_uuid)
        return cards[card_uuid]

    for index, entry in enumerate(entries):
        issues.extend(_entry_issues(entry, f"feedback[{index}]", lookup))
    if issues:
        raise InputError(issues, status=400)
    return {card_uuid: card for card_uuid, card in cards.items() if card is not None}
