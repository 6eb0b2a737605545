"""Checks a CDS Hooks 2.0 response body against the specification's card rules.

Returns the list of violations (empty when conformant) so a test can show all of them at once.
"""

from __future__ import annotations

import uuid
from typing import Any

INDICATORS = {"info", "warning", "critical"}
SELECTION_BEHAVIORS = {"at-most-one", "any"}
ACTION_TYPES = {"create", "update", "delete"}
LINK_TYPES = {"absolute", "smart"}


def empty_values(value: Any, path: str = "$") -> list[str]:
    """Paths of every null, empty string, empty array or empty object."""
    found: list[str] = []
    if value is None or value == "" or value == [] or value == {}:
        return [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += empty_values(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += empty_values(item, f"{path}[{index}]")
    return found


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def card_violations(body: Any) -> list[str]:
    problems = [f"empty value at {p}" for p in empty_values(body) if p != "$.cards"]
    if not isinstance(body, dict) or not isinstance(body.get("cards"), list):
        return problems + ["response must be an object with a cards array"]
    for i, card in enumerate(body["cards"]):
        at = f"cards[{i}]"
        summary = card.get("summary")
        if not isinstance(summary, str) or not summary or len(summary) >= 140:
            problems.append(f"{at}.summary must be a string under 140 characters")
        if card.get("indicator") not in INDICATORS:
            problems.append(f"{at}.indicator {card.get('indicator')!r} is not one of {sorted(INDICATORS)}")
        if not _is_uuid(card.get("uuid")):
            problems.append(f"{at}.uuid missing or not a UUID")
        source = card.get("source")
        if not isinstance(source, dict) or not isinstance(source.get("label"), str):
            problems.append(f"{at}.source.label is required")
        elif "url" in source and not str(source["url"]).startswith(("http://", "https://")):
            problems.append(f"{at}.source.url must be absolute")
        if "detail" in card and not isinstance(card["detail"], str):
            problems.append(f"{at}.detail must be a Markdown string")
        if "extension" in card and not isinstance(card["extension"], dict):
            problems.append(f"{at}.extension must be an object")
        suggestions = card.get("suggestions")
        if suggestions:
            if card.get("selectionBehavior") not in SELECTION_BEHAVIORS:
                problems.append(f"{at}.selectionBehavior is required with suggestions")
            for j, suggestion in enumerate(suggestions):
                sat = f"{at}.suggestions[{j}]"
                if not isinstance(suggestion.get("label"), str):
                    problems.append(f"{sat}.label is required")
                if not _is_uuid(suggestion.get("uuid")):
                    problems.append(f"{sat}.uuid missing or not a UUID")
                for k, action in enumerate(suggestion.get("actions", [])):
                    aat = f"{sat}.actions[{k}]"
                    if action.get("type") not in ACTION_TYPES:
                        problems.append(f"{aat}.type must be create, update or delete")
                    if not isinstance(action.get("description"), str):
                        problems.append(f"{aat}.description is required")
                    if action.get("type") in ("create", "update") and not isinstance(action.get("resource"), dict):
                        problems.append(f"{aat}.resource is required for {action.get('type')}")
                    if action.get("type") == "delete" and not action.get("resourceId"):
                        problems.append(f"{aat}.resourceId is required for delete")
        elif "selectionBehavior" in card:
            problems.append(f"{at}.selectionBehavior without suggestions")
        for j, reason in enumerate(card.get("overrideReasons", [])):
            if not isinstance(reason, dict) or not reason.get("code") or not reason.get("display"):
                problems.append(f"{at}.overrideReasons[{j}] must be a Coding with code and display")
        for j, link in enumerate(card.get("links", [])):
            if not link.get("label") or not str(link.get("url", "")).startswith(("http://", "https://")):
                problems.append(f"{at}.links[{j}] needs a label and an absolute url")
            if link.get("type") not in LINK_TYPES:
                problems.append(f"{at}.links[{j}].type must be absolute or smart")
    return problems
