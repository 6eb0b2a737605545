"""Presents a PatientAssessment as CDS Hooks 2.0 cards.

Nothing here grades anything: the grades, values, missing tests and order alerts all come from
the core, so a card can never disagree with `$assess`. This module only chooses the indicator,
words the summary (< 140 characters, leading type and its key number), lays out the Markdown
detail, and turns the missing panel into draft ServiceRequest proposals. A test the core could
not confirm as missing (its results may be among data that was not read) is listed as such and
never suggested as an order.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping

from fhir.resources.R4B.servicerequest import ServiceRequest

from ..assessment_model import (RISK_ORDER, Citation, OrderAlert, PanelTest, PatientAssessment, ValueUsed,
                                citations_in_brief, citations_text, omitted_by_reason)
from ..fhir_outputs.vocabulary import panel_test_code
from .draft_orders import reference_key
from .feedback_store import CardRecord
from .order_codes import LabTestGrouping

_CARD_DATA_FILE = Path(__file__).with_name("cards.json")
SUMMARY_LIMIT = 140  # the spec: "<140 characters"


def load_card_data(path: Path = _CARD_DATA_FILE) -> dict[str, Any]:
    """Wording, override reasons and indicator policy, from the data file."""
    return json.loads(path.read_text(encoding="utf-8"))


CARD_DATA = load_card_data()


@dataclass(frozen=True, slots=True)
class CardContext:
    """What the cards need to know about the call, beyond the assessment."""

    hook: str
    base_url: str  # where this service is reached, for source/link URLs
    patient_reference: str  # "Patient/<context.patientId>"
    selections: tuple[str, ...] | None = None  # order-select: alert only on these orders
    draft_order_codes: frozenset[tuple[str, str]] = frozenset()  # (system, code) already in draftOrders
    # What was incomplete, skipped or doubtful in the data (see `data_notes`): shown as "Data notes".
    gathering_notes: tuple[str, ...] = field(default=())
    test_grouping: LabTestGrouping = field(default_factory=LabTestGrouping)  # which codes are the same test


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """A card ready to serialize, with the type the feedback report counts it under."""

    card: dict[str, Any]
    card_type: str

    @property
    def uuid(self) -> str:
        """The card's uuid, by which feedback refers to it."""
        return str(self.card["uuid"])

    def record(self) -> CardRecord:
        """What feedback on this card may name: its suggestions' uuids and its override reasons."""
        suggestions = tuple(str(s["uuid"]) for s in self.card.get("suggestions", ()) if s.get("uuid"))
        reasons = tuple((str(r["system"]), str(r["code"])) for r in self.card.get("overrideReasons", ()))
        return CardRecord(self.uuid, self.card_type, suggestions, reasons)


def build_cards(assessment: PatientAssessment, context: CardContext,
                data: Mapping[str, Any] = CARD_DATA) -> list[IssuedCard]:
    """Order alerts first (they are about what is being ordered now), then the assessment card.

    When the data was incomplete (see `gathering_notes`) and nothing else would be shown, an info
    card says so: an empty answer would read as "nothing found" on complete data.
    """
    alert_groups = _alerts_by_medication(_alerts_to_show(assessment, context))
    cards = [_order_alert_card(group, context, data) for group in alert_groups]
    assessment_card = _assessment_card(assessment, context, data)
    if assessment_card is not None:
        cards.append(assessment_card)
    elif context.gathering_notes and assessment.grades:
        cards.append(_data_notes_card(assessment, context, data))
    return cards


def truncate_summary(text: str) -> str:
    """Keep a summary under the spec's 140 characters, cutting at a word when it must."""
    if len(text) < SUMMARY_LIMIT:
        return text
    cut = text[: SUMMARY_LIMIT - 2].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


# -- order alerts ---------------------------------------------------------------------------------

def _alerts_to_show(assessment: PatientAssessment, context: CardContext) -> list[OrderAlert]:
    if context.selections is None:
        return list(assessment.order_alerts)
    selected = {reference_key(s) for s in context.selections}
    return [a for a in assessment.order_alerts if reference_key(a.order_reference) in selected]


def _alerts_by_medication(alerts: list[OrderAlert]) -> list[list[OrderAlert]]:
    """Alerts grouped by what was ordered (in first-seen order): ten orders of one drug are one warning, not ten."""
    groups: dict[str, list[OrderAlert]] = {}
    for alert in alerts:
        groups.setdefault(" ".join(alert.display.split()).casefold(), []).append(alert)
    return list(groups.values())


def _order_alert_card(alerts: list[OrderAlert], context: CardContext, data: Mapping[str, Any]) -> IssuedCard:
    alert = alerts[0]
    summary = truncate_summary(data["order_alert_summary"].format(display=alert.display))
    lines = [f"**{alert.display}**", "", alert.message]
    lines += ["", "**Orders concerned**"]
    lines += [f"- {reference}" for reference in dict.fromkeys(a.order_reference for a in alerts)]
    if alert.citation:
        lines += ["", f"_Source: {alert.citation}_"]
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": "warning",
        "detail": "\n".join(lines),
        "source": _source(context, data, alert.citations),
        "overrideReasons": _override_reasons(data, "order-alert"),
        "links": _links(context, data),
    }
    return IssuedCard(compact(card), "order-alert:iatrogenic")


# -- the assessment card --------------------------------------------------------------------------

def _indicator(assessment: PatientAssessment, data: Mapping[str, Any]) -> str | None:
    leading = assessment.leading
    if leading.risk == "high" and leading.type in data["critical_types_when_high"]:
        # A high metastatic grade without calcinosis on file is a risk, not a finding: a warning.
        if assessment.calcinosis_condition or leading.type not in data["critical_needs_calcinosis_on_file"]:
            return "critical"
        return "warning"
    if RISK_ORDER.get(leading.risk, 0) >= RISK_ORDER[data["warning_from_risk"]]:
        return "warning"
    return None


def _missing_tests(assessment: PatientAssessment, context: CardContext) -> list[PanelTest]:
    """The recommended tests not already drafted, under any code of the same value set. A test
    proposed by name only has no code to compare: the core already left it out when an open order
    names it (draft orders are part of the data it assessed)."""
    return [t for t in assessment.recommended
            if not (t.coded and context.test_grouping.is_ordered(t.system, t.code, context.draft_order_codes))]


def _assessment_card(assessment: PatientAssessment, context: CardContext,
                     data: Mapping[str, Any]) -> IssuedCard | None:
    if not assessment.grades:
        return None
    missing = _missing_tests(assessment, context)
    unconfirmed = assessment.unconfirmed
    indicator = _indicator(assessment, data)
    leading = assessment.leading
    key_number = key_number_text(assessment.values_used, data["key_analytes"].get(leading.type, ()), data,
                                 incomplete=assessment.incomplete_analytes)
    if indicator is None:
        if not missing and not unconfirmed:
            return None  # nothing to say: low grades and a complete work-up
        indicator = "info"
        template = ("work_up_summary" if not unconfirmed
                    else "work_up_unconfirmed_summary" if missing else "unconfirmed_only_summary")
        summary = data[template].format(missing=len(missing), unconfirmed=len(unconfirmed), key_number=key_number)
        card_type = "work-up"
    else:
        type_name = data["type_names"].get(leading.type, leading.type.capitalize())
        summary = f"{type_name} {data['risk_phrases'].get(leading.risk, leading.risk)}: {key_number}"
        card_type = f"assessment:{leading.type}"
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": truncate_summary(summary),
        "indicator": indicator,
        "detail": _assessment_detail(assessment, missing, context, data),
        "source": _source(context, data, leading.citations),
        "overrideReasons": _override_reasons(data, "assessment"),
        "links": _links(context, data),
    }
    if missing:
        suggestions = _suggestions(missing, context, data)
        card["suggestions"] = suggestions
        # One suggestion: take it or not. Several (the panel, then each study on its own): any of them.
        card["selectionBehavior"] = "at-most-one" if len(suggestions) == 1 else "any"
    return IssuedCard(compact(card), card_type)


def _suggestions(missing: list[PanelTest], context: CardContext, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The laboratory panel as one suggestion; each test of a group offered one by one (imaging and
    biopsy: a clinician picks the studies the lesions need, never all at once) as its own."""
    separate = set(data["separate_suggestion_groups"])
    panel = [t for t in missing if t.group not in separate]
    suggestions = []
    if panel:
        # Draft orders already hold tests: the suggestion completes the panel rather than starting it.
        label_key = "panel_completion_label" if context.draft_order_codes else "panel_suggestion_label"
        suggestions.append(_panel_suggestion(panel, context, data[label_key].format(count=len(panel))))
    suggestions += [_panel_suggestion([t], context, data["single_test_suggestion_label"].format(display=t.display))
                    for t in missing if t.group in separate]
    return suggestions


def _format_decimal(value: Decimal, places: str | None = None) -> str:
    if places is not None:
        value = value.quantize(Decimal(places), rounding=ROUND_HALF_UP)
    return format(value.normalize(), "f")


def _find_value(values: Iterable[ValueUsed], analyte: str) -> ValueUsed | None:
    for value in values:
        if value.analyte == analyte:
            return value
    return None


def key_number_text(values: tuple[ValueUsed, ...], analytes: Iterable[str], data: Mapping[str, Any], *,
                    incomplete: Iterable[str] = ()) -> str:
    """The number a clinician looks at first for this type, e.g. 'Ca x P 81 mg2/dL2', never invented.

    With no value, "not on file" only when every result of those analytes was read (`incomplete`
    names the analytes whose results may not all have been).
    """
    analytes = tuple(analytes)
    for analyte in analytes:
        if analyte == "ca-x-p":
            product = _ca_x_p(values, data)
            if product is not None:
                return product
            continue
        value = _find_value(values, analyte)
        if value is not None:
            label = data["short_labels"].get(analyte, value.label)
            flag = f" ({value.flag})" if value.flag else ""
            return f"{label} {value.bound_words}{_format_decimal(value.value)} {value.unit}{flag}"
    not_read = set(incomplete)
    if not_read & ({"calcium", "phosphate"} | set(analytes)):
        return str(data["key_number_unconfirmed"])
    return str(data["key_number_none"])


def _ca_x_p(values: tuple[ValueUsed, ...], data: Mapping[str, Any]) -> str | None:
    """The product as the core reported it; never recomputed here, so the card cannot disagree with the rules."""
    for analyte in data["ca_x_p_analytes"]:
        reported = _find_value(values, analyte)
        if reported is not None:
            return f"Ca x P {_format_decimal(reported.value, '0.1')} {reported.unit}"
    return None


def _when(effective: datetime | date | None) -> str:
    if effective is None:
        return "date not recorded"
    if isinstance(effective, datetime):
        return effective.date().isoformat()
    return effective.isoformat()


def _assessment_detail(assessment: PatientAssessment, missing: list[PanelTest], context: CardContext,
                       data: Mapping[str, Any]) -> str:
    leading = assessment.leading
    lines = [f"**Most likely: {leading.type}** ({leading.risk})", "", leading.rationale or "No rationale given."]
    if not assessment.calcinosis_condition:
        partial = "condition" in assessment.incomplete_searches
        lines[1:1] = ["", data["no_calcinosis_among_read" if partial else "no_calcinosis_on_file"]]
    if leading.citation:
        lines += ["", f"_Source: {leading.citation}_"]
    others = assessment.grades[1:]
    if others:
        lines += ["", "**Other types**"]
        lines += [f"- {g.type} ({g.risk}): {g.rationale}" if g.rationale else f"- {g.type} ({g.risk})" for g in others]
    lines += ["", "**Values used**"]
    if assessment.values_used:
        for v in assessment.values_used:
            flag = f" ({v.flag})" if v.flag else ""
            status = f", {v.status}" if v.status and v.status != "final" else ""
            range_text = f"; range {v.range_text}" if v.range_text else ""
            lines.append(f"- {v.label}: {v.bound_words}{_format_decimal(v.value)} {v.unit}{flag} on {_when(v.effective)}"
                         f"{status}{range_text}")
    elif assessment.incomplete_analytes:
        lines.append("- none among the results read: the lab-driven types are unknown, not normal")
    else:
        lines.append("- none on file: the lab-driven types are unknown, not normal")
    if missing:
        lines += ["", "**Missing from the work-up**"]
        lines += [f"- {_test_name(t.display, t.code)}: {t.reason}{_sources_in_brief(t.citations)}" for t in missing]
    if assessment.unconfirmed:
        lines += ["", data["unconfirmed_heading"], "", data["unconfirmed_intro"], ""]
        lines += [f"- {t.display} ({t.code}): {t.reason}" for t in assessment.unconfirmed]
    if assessment.omitted:
        lines += ["", "**Not proposed**"]
        lines += [f"- {', '.join(_test_name(t.display, t.code) for t in tests)}: {reason}"
                  for reason, tests in omitted_by_reason(assessment.omitted)]
    if assessment.available:
        lines += ["", "**Already available**"]
        lines += [f"- {t.display}: {t.summary}" for t in assessment.available]
    # Input issues are not repeated here: they are data notes, located in the caller's request.
    if assessment.notes:
        lines += ["", "**Notes**"]
        lines += [f"- {r}" for r in assessment.notes]
    lines += _data_notes(context)
    lines += ["", f"Rule library {assessment.library} {assessment.library_version}."]
    return "\n".join(lines)


def _test_name(display: str, code: str) -> str:
    """'Plain X-ray (168537006)'; a test named only (no verified code) by its name alone."""
    return f"{display} ({code})" if code else display


def _sources_in_brief(citations: tuple[Citation, ...]) -> str:
    """' (StatPearls "Calcinosis Cutis" (Le C, Bedocs PM, 2019), Evaluation)': publication and sections, once each."""
    brief = citations_in_brief(citations)
    return f" ({brief})" if brief else ""


def _data_notes(context: CardContext) -> list[str]:
    if not context.gathering_notes:
        return []
    return ["", "**Data notes**"] + [f"- {note}" for note in context.gathering_notes]


def _data_notes_card(assessment: PatientAssessment, context: CardContext, data: Mapping[str, Any]) -> IssuedCard:
    lines = [data["data_notes_detail"]] + _data_notes(context)
    lines += ["", f"Rule library {assessment.library} {assessment.library_version}."]
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": truncate_summary(data["data_notes_summary"]),
        "indicator": "info",
        "detail": "\n".join(lines),
        "source": _source(context, data),
        "overrideReasons": _override_reasons(data, "assessment"),
        "links": _links(context, data),
    }
    return IssuedCard(compact(card), "data-notes")


def _service_request(test: PanelTest, context: CardContext) -> dict[str, Any]:
    resource = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": panel_test_code(test),
        "subject": {"reference": context.patient_reference},
        "reasonCode": [{"text": test.reason}] if test.reason else None,
        "note": [{"text": f"Source: {citations_text(test.citations)}"}] if test.citations else None,
    }
    resource = compact(resource)
    ServiceRequest.model_validate(resource)  # a proposal the EHR cannot parse is worse than none
    return resource


def _panel_suggestion(missing: list[PanelTest], context: CardContext, label: str) -> dict[str, Any]:
    return {
        "label": label,
        "uuid": str(uuid.uuid4()),
        "isRecommended": True,
        "actions": [
            {"type": "create", "description": f"Propose {_test_name(t.display, t.code)}",
             "resource": _service_request(t, context)}
            for t in missing
        ],
    }


# -- shared parts ---------------------------------------------------------------------------------

def _source(context: CardContext, data: Mapping[str, Any], citations: tuple[Citation, ...] = ()) -> dict[str, Any]:
    """The primary source of the card's guidance: the publication its first citation names, when
    it can be opened (a URL); otherwise this service and its rule documentation."""
    cited = next((c for c in citations if c.url), None)
    if cited is not None:
        return {"label": cited.label or cited.reference, "url": cited.url}
    return {"label": data["source"]["label"], "url": context.base_url.rstrip("/") + data["source"]["docs_path"]}


def _links(context: CardContext, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"label": link["label"], "url": context.base_url.rstrip("/") + link["docs_path"], "type": link["type"]}
            for link in data["links"]]


def _override_reasons(data: Mapping[str, Any], kind: str) -> list[dict[str, str]]:
    system = data["override_reasons"]["system"]
    return [{"system": system, "code": r["code"], "display": r["display"]} for r in data["override_reasons"][kind]]


def compact(value: Any) -> Any:
    """Drop nulls, empty strings, empty arrays and empty objects at any depth (the response has none)."""
    if isinstance(value, dict):
        cleaned = {k: compact(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        cleaned_items = [compact(v) for v in value]
        return [v for v in cleaned_items if v not in (None, "", [], {})]
    return value
