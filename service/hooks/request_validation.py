"""Checks a CDS Hooks 2.0 service call before any data is gathered.

A call the service cannot trust to mean what it says (wrong hook, missing context, a token with no
server to use it on) is refused with 400 and an OperationOutcome naming the field, so the EHR
integrator sees the mistake instead of a card built on a guess.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

from ..assessment_model import InputIssue
from ..errors import InputError
from .bundle_checks import check_entries, request_issue
from .draft_orders import check_draft_orders, check_selections
from .safe_urls import parse_safe_url

_HOOK_CONTEXTS_FILE = Path(__file__).with_name("hook_contexts.json")
_JSON_TYPES = {"string": str, "array": list, "object": dict}
# FHIR logical ids: the ids are put into FHIR URLs, so anything else is refused rather than escaped.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ID_FIELDS = ("patientId", "encounterId")
_AUTHORIZATION_FIELDS = {"access_token": str, "token_type": str, "expires_in": int, "scope": str, "subject": str}


@dataclass(frozen=True, slots=True)
class HookCall:
    """A validated service call: only what the later steps need."""

    hook: str
    hook_instance: str
    context: Mapping[str, Any]
    fhir_server: str | None = None
    access_token: str | None = None
    prefetch: Mapping[str, Any] | None = None

    @property
    def patient_id(self) -> str:
        """context.patientId, which every supported hook requires and validation has checked."""
        return str(self.context["patientId"])


def load_hook_contexts(path: Path = _HOOK_CONTEXTS_FILE) -> dict[str, dict[str, dict[str, str]]]:
    """Required and optional context fields per hook, from the data file."""
    return json.loads(path.read_text(encoding="utf-8"))


_HOOK_CONTEXTS = load_hook_contexts()


_issue = request_issue


# The spec's hookInstance is a UUID: its canonical 8-4-4-4-12 hexadecimal form, nothing looser
# (no urn:uuid: prefix, braces or bare 32 digits, which `uuid.UUID` would all accept).
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_canonical_uuid(value: str) -> bool:
    """True only for the 8-4-4-4-12 hexadecimal form the spec requires of hookInstance."""
    return _CANONICAL_UUID.fullmatch(value) is not None


def _check_context(hook: str, context: Any, issues: list[InputIssue], max_draft_orders: int) -> None:
    if not isinstance(context, dict):
        issues.append(_issue("context is required and must be a JSON object", "context", "required"))
        return
    spec = _HOOK_CONTEXTS[hook]
    for name, json_type in spec["required"].items():
        value = context.get(name)
        if value is None:
            issues.append(_issue(f"the {hook} hook requires context.{name}", f"context.{name}", "required"))
        elif not isinstance(value, _JSON_TYPES[json_type]) or (json_type == "string" and not value.strip()):
            issues.append(_issue(f"context.{name} must be a non-empty {json_type}", f"context.{name}"))
    for name, json_type in spec.get("optional", {}).items():
        value = context.get(name)
        if value is not None and not isinstance(value, _JSON_TYPES[json_type]):
            issues.append(_issue(f"context.{name} must be a {json_type}", f"context.{name}"))
    for name in _ID_FIELDS:
        value = context.get(name)
        if isinstance(value, str) and value.strip() and not _FHIR_ID.fullmatch(value):
            issues.append(_issue(f"context.{name} must be a FHIR id (letters, digits, '-' and '.', up to 64)",
                                 f"context.{name}"))
    selections = context.get("selections")
    if isinstance(selections, list):
        for index, selection in enumerate(selections):
            if not isinstance(selection, str) or "/" not in selection:
                issues.append(_issue("each selection must be a reference such as 'MedicationRequest/123'",
                                     f"context.selections[{index}]"))
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not _FHIR_ID.fullmatch(patient_id):
        return  # already reported; orders cannot be tied to a patient without one
    before = len(issues)
    check_draft_orders(context.get("draftOrders"), patient_id, issues, max_orders=max_draft_orders)
    if hook == "order-select" and len(issues) == before:
        check_selections(selections, context.get("draftOrders"), patient_id, issues)


def _check_fhir_access(body: Mapping[str, Any], issues: list[InputIssue]) -> tuple[str | None, str | None]:
    fhir_server = body.get("fhirServer")
    authorization = body.get("fhirAuthorization")
    if fhir_server is not None:
        server = parse_safe_url(fhir_server)
        if server is None or server.query:
            issues.append(_issue("fhirServer must be an absolute http(s) base URL without user info, query, "
                                 "fragment or percent-encoded dots and slashes in its path", "fhirServer"))
            fhir_server = None
        else:
            fhir_server = server.base
    if authorization is None:
        return fhir_server, None
    if body.get("fhirServer") is None:
        issues.append(_issue("fhirAuthorization is only allowed together with fhirServer", "fhirAuthorization"))
        return None, None
    if not isinstance(authorization, dict):
        issues.append(_issue("fhirAuthorization must be a JSON object", "fhirAuthorization"))
        return fhir_server, None
    for name, json_type in _AUTHORIZATION_FIELDS.items():
        value = authorization.get(name)
        if value is None:
            issues.append(_issue(f"fhirAuthorization.{name} is required", f"fhirAuthorization.{name}", "required"))
        elif not isinstance(value, json_type) or isinstance(value, bool) or value == "":
            issues.append(_issue(f"fhirAuthorization.{name} has the wrong type", f"fhirAuthorization.{name}"))
    token_type = authorization.get("token_type")
    if isinstance(token_type, str) and token_type.lower() != "bearer":
        issues.append(_issue("fhirAuthorization.token_type must be 'Bearer'", "fhirAuthorization.token_type"))
    token = authorization.get("access_token")
    return fhir_server, token if isinstance(token, str) and token else None


def _check_prefetch_bundle(bundle: Mapping[str, Any], where: str, issues: list[InputIssue]) -> None:
    """Each entry must hold a FHIR resource: the core is never handed half-read data."""
    check_entries(bundle, where, issues)
    total = bundle.get("total")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
        issues.append(_issue("Bundle.total must be a non-negative integer", f"{where}.total"))


def validate_hook_call(service: Mapping[str, Any], body: Any, *, max_draft_orders: int = 200) -> HookCall:
    """The validated call, or InputError (400) listing every problem found with its location."""
    if not isinstance(body, dict):
        raise InputError.single("a CDS Hooks request must be a JSON object", location="$", code="structure",
                                status=400)
    issues: list[InputIssue] = []
    hook = body.get("hook")
    if not isinstance(hook, str) or not hook:
        issues.append(_issue("hook is required", "hook", "required"))
    elif hook != service["hook"]:
        issues.append(_issue(f"service {service['id']!r} answers the {service['hook']!r} hook, not {hook!r}", "hook",
                             "not-supported"))
    hook_instance = body.get("hookInstance")
    if not isinstance(hook_instance, str) or not hook_instance:
        issues.append(_issue("hookInstance is required", "hookInstance", "required"))
    elif not is_canonical_uuid(hook_instance):
        issues.append(_issue("hookInstance must be a UUID in its canonical hyphenated form "
                             "(8-4-4-4-12 hexadecimal digits)", "hookInstance"))
    _check_context(service["hook"], body.get("context"), issues, max_draft_orders)
    fhir_server, token = _check_fhir_access(body, issues)
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        issues.append(_issue("prefetch must be a JSON object", "prefetch"))
    elif isinstance(prefetch, dict):
        for key, value in prefetch.items():
            if value is not None and not (isinstance(value, dict) and isinstance(value.get("resourceType"), str)):
                issues.append(_issue("a prefetch value must be a FHIR resource or null", f"prefetch.{key}"))
            elif isinstance(value, dict) and value["resourceType"] == "Bundle":
                _check_prefetch_bundle(value, f"prefetch.{key}", issues)
    if issues:
        raise InputError(issues, status=400)
    return HookCall(
        hook=service["hook"],
        hook_instance=hook_instance,
        context=body["context"],
        fhir_server=fhir_server or None,
        access_token=token,
        prefetch=prefetch,
    )


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """One end-user interaction with a card, as the client reported it."""

    card: str
    outcome: str  # "accepted" | "overridden"
    outcome_timestamp: str
    accepted_suggestions: tuple[str, ...] = ()
    override_system: str | None = None
    override_code: str | None = None
    override_display: str | None = None
    user_comment: str | None = None


# An outcome cannot lie in the future; this much clock difference between EHR and service is allowed.
FEEDBACK_CLOCK_SKEW = timedelta(minutes=5)
# Longest userComment stored (characters): a comment, not a document.
MAX_USER_COMMENT = 2000


def _timestamp(value: Any) -> datetime | None:
    """An ISO 8601 date-time with its offset (without one the instant is ambiguous), else None."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _too_many(where: str, count: int, max_entries: int) -> InputError:
    return InputError.single(f"{where} holds {count} entries; at most {max_entries} are accepted per call "
                             "(CDS_MAX_FEEDBACK_ENTRIES)", location=where, code="too-costly", status=413)


def _check_feedback_item(item: Any, where: str, issues: list[InputIssue], now: datetime,
                         max_entries: int) -> FeedbackEntry | None:
    if not isinstance(item, dict):
        issues.append(_issue("each feedback must be a JSON object", where, "structure"))
        return None
    card, outcome, timestamp = item.get("card"), item.get("outcome"), item.get("outcomeTimestamp")
    before = len(issues)
    if not isinstance(card, str) or not card:
        issues.append(_issue("card (the card's uuid) is required", f"{where}.card", "required"))
    if outcome not in ("accepted", "overridden"):
        issues.append(_issue("outcome must be 'accepted' or 'overridden'", f"{where}.outcome", "code-invalid"))
    parsed_timestamp = _timestamp(timestamp)
    if parsed_timestamp is None:
        issues.append(_issue("outcomeTimestamp must be an ISO 8601 date-time with a time zone (e.g. Z or +01:00)",
                             f"{where}.outcomeTimestamp",
                             "required" if timestamp is None else "value"))
    elif parsed_timestamp > now + FEEDBACK_CLOCK_SKEW:
        issues.append(_issue("outcomeTimestamp lies in the future (more than 5 minutes after this service's clock)",
                             f"{where}.outcomeTimestamp", "value"))
    accepted: list[str] = []
    suggestions = item.get("acceptedSuggestions")
    if suggestions is None and outcome == "accepted":
        issues.append(_issue("acceptedSuggestions is required when the outcome is 'accepted'",
                             f"{where}.acceptedSuggestions", "required"))
    if suggestions is not None:
        if outcome != "accepted":
            issues.append(_issue("acceptedSuggestions only goes with outcome 'accepted'", f"{where}.acceptedSuggestions"))
        elif not isinstance(suggestions, list) or not suggestions:
            issues.append(_issue("acceptedSuggestions must be a non-empty array", f"{where}.acceptedSuggestions"))
        elif len(suggestions) > max_entries:
            raise _too_many(f"{where}.acceptedSuggestions", len(suggestions), max_entries)
        else:
            for index, suggestion in enumerate(suggestions):
                if not isinstance(suggestion, dict) or not isinstance(suggestion.get("id"), str) or not suggestion["id"]:
                    issues.append(_issue("each accepted suggestion needs its id", f"{where}.acceptedSuggestions[{index}].id",
                                         "required"))
                else:
                    accepted.append(suggestion["id"])
    system = code = display = comment = None
    override = item.get("overrideReason")
    if override is not None:
        if outcome != "overridden":
            issues.append(_issue("overrideReason only goes with outcome 'overridden'", f"{where}.overrideReason"))
        elif not isinstance(override, dict):
            issues.append(_issue("overrideReason must be a JSON object", f"{where}.overrideReason"))
        else:
            reason = override.get("reason")
            if reason is not None:
                if not isinstance(reason, dict):
                    issues.append(_issue("overrideReason.reason must be a Coding (a JSON object)",
                                         f"{where}.overrideReason.reason"))
                elif not isinstance(reason.get("code"), str) or not reason["code"]:
                    issues.append(_issue("overrideReason.reason must be a Coding with a code",
                                         f"{where}.overrideReason.reason.code", "required"))
                elif not isinstance(reason.get("system"), str) or not reason["system"]:
                    issues.append(_issue("overrideReason.reason must be a Coding with a system",
                                         f"{where}.overrideReason.reason.system", "required"))
                elif reason.get("display") is not None and not isinstance(reason["display"], str):
                    issues.append(_issue("overrideReason.reason.display must be a string",
                                         f"{where}.overrideReason.reason.display"))
                else:
                    system, code = reason.get("system"), reason["code"]
                    display = reason.get("display")
            comment = override.get("userComment")
            if comment is not None and not isinstance(comment, str):
                issues.append(_issue("userComment must be a string", f"{where}.overrideReason.userComment"))
                comment = None
            elif isinstance(comment, str) and len(comment) > MAX_USER_COMMENT:
                issues.append(_issue(f"userComment must be at most {MAX_USER_COMMENT} characters",
                                     f"{where}.overrideReason.userComment", "too-long"))
    if len(issues) > before:
        return None
    return FeedbackEntry(card, outcome, timestamp, tuple(accepted), system if isinstance(system, str) else None,
                         code, display if isinstance(display, str) else None, comment)


def validate_feedback(body: Any, *, now: datetime | None = None,
                      max_entries: int = 100) -> tuple[FeedbackEntry, ...]:
    """The feedback entries of a feedback call, or InputError (400) listing what is wrong and where.

    More than `max_entries` entries (or accepted suggestions in one entry) is refused whole with 413
    before any is read: one call reports on the few cards of one hook call, and each entry costs a
    lookup and a write.
    """
    now = now or datetime.now(timezone.utc)
    if not isinstance(body, dict) or not isinstance(body.get("feedback"), list) or not body["feedback"]:
        raise InputError.single("a feedback request must be an object with a non-empty 'feedback' array",
                                location="feedback", code="structure", status=400)
    if len(body["feedback"]) > max_entries:
        raise _too_many("feedback", len(body["feedback"]), max_entries)
    issues: list[InputIssue] = []
    entries = [_check_feedback_item(item, f"feedback[{index}]", issues, now, max_entries)
               for index, item in enumerate(body["feedback"])]
    if issues:
        raise InputError(issues, status=400)
    return tuple(entry for entry in entries if entry is not None)
