"""What a Bulk Data server's answers say, read safely: Retry-After, X-Progress and OperationOutcome texts.

Every text taken from a server is cut to a bound and stripped of what is not printable before it is
shown, so an answer cannot flood or drive the terminal of the person watching an export.
"""

from __future__ import annotations

import email.utils
from datetime import datetime, timezone
from typing import Any, Mapping

import orjson


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds to wait: a number of seconds or an HTTP date (RFC 9110); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - now).total_seconds())


def progress_text(value: str | None) -> str | None:
    """X-Progress made safe to print: printable characters only, at most 100 (the IG's own bound)."""
    if not value:
        return None
    shown = "".join(char for char in value if char.isprintable())[:100].strip()
    return shown or None


def outcome_text(body: bytes) -> str | None:
    """The diagnostics of an OperationOutcome body (at most three issues, each cut to 300 characters)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("resourceType") != "OperationOutcome":
        return None
    texts = [issue_text(issue) for issue in data.get("issue") or [] if isinstance(issue, dict)]
    texts = [text for text in texts if text]
    return "; ".join(texts[:3]) if texts else None


def issue_text(issue: Mapping[str, Any]) -> str | None:
    """One OperationOutcome issue in words: its diagnostics, else its details' text, else its code."""
    text = issue.get("diagnostics")
    if not isinstance(text, str) or not text.strip():
        details = issue.get("details")
        text = details.get("text") if isinstance(details, dict) else None
    if isinstance(text, str) and text.strip():
        return "".join(char for char in text.strip() if char.isprintable())[:300]
    code = issue.get("code")
    return f"the server reported '{code}'" if isinstance(code, str) else None
