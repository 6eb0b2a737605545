"""Presents a PatientAssessment as CDS Hooks 2.0 cards.

Nothing here grades anything: the grades, values, missing tests and order alerts all come from
the core, so a card can never disagree with `$assess`. This module only chooses the indicator,
words the summary (< 140 characters, leading type and its key number), lays out the Markdown
detail, and turns the missing panel into draft ServiceRequest proposals. A test the core could
not confirm as missing (its results may be among data that was not read) is listed as such and
never suggested as an order.

A clinician gives a card a few seconds, so the detail is short (at most `detail.word_limit`
words as rendered, a table's cells counted): why the leading type, its key values with dates, the
second type only when it is at least moderate, the missing work-up by plain test names, what could
not be confirmed or was left out, at most three data notes in plain words, and one line for the
source. Everything else is behind the links (the rule documentation, at the type's section) or,
for the EHR's developers, in the card's `extension` (every data note with its location in the
request, the orders an alert concerns, the rule library's version).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from fhir.resources.R4B.servicerequest import ServiceRequest

from ..assessment_model import (RISK_ORDER, Citation, OrderAlert, PanelTest, PatientAssessment, TypeGrade, ValueUsed,
                                citations_text, omitted_by_reason)
from ..fhir_outputs.empty_elements import without_empty_elements
from ..fhir_outputs.vocabulary import panel_test_code
from .card_data import CARD_DATA
from .data_notes import DataNote
from .draft_orders import reference_key
from .feedback_store import CardRecord

_RULES_README = Path(__file__).resolve().parents[1] / "knowledge" / "README.md"
SUMMARY_LIMIT = 140  # the spec: "<140 characters"




@dataclass(frozen=True, slots=True)
class CardContext:
    """What the cards need to know about the call, beyond the assessment."""

    hook: str
    base_url: str  # where this service is reached, for source/link URLs
    patient_reference: str  # "Patient/<context.patientId>"
    selections: tuple[str, ...] | None = None  # order-select: alert only on these orders
    # (system, code) in draftOrders: only the wording ('Order 2 more tests'); the core decides what is ordered
    draft_order_codes: frozenset[tuple[str, str]] = frozenset()
    # Every note on what was skipped, partial or doubtful in the data, located in the request (extension).
    data_notes: tuple[DataNote, ...] = field(default=())
    # The few of them that changed the result, in plain words for the clinician (the detail's "Data notes").
    note_lines: tuple[str, ...] = field(default=())
    # VALIDATE_OUTPUTS: validate each suggested ServiceRequest with fhir.resources (built valid R4 either way).
    validate_outputs: bool = False


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
        offered = tuple(self.card.get("overrideReasons", ()))
        reasons = tuple((str(r["system"]), str(r["code"])) for r in offered)
        return CardRecord(self.uuid, self.card_type, suggestions, reasons, tuple(str(r["display"]) for r in offered))


def build_cards(assessment: PatientAssessment, context: CardContext,
                data: Mapping[str, Any] = CARD_DATA) -> list[IssuedCard]:
    """Order alerts first (they are about what is being ordered now), then the assessment card.

    When data notes changed the result (`note_lines`) and nothing else would be shown, an info card
    says so: an empty answer would read as "nothing found" on complete data.
    """
    alert_groups = _alerts_by_medication(_alerts_to_show(assessment, context))
    cards = [_order_alert_card(group, context, data) for group in alert_groups]
    assessment_card = _assessment_card(assessment, context, data)
    if assessment_card is not None:
        cards.append(assessment_card)
    elif context.note_lines and assessment.grades:
        cards.append(_data_notes_card(assessment, context, data))
    return cards


def truncate_summary(text: str) -> str:
    """Keep a summary under the spec's 140 characters, cutting at a word when it must."""
    if len(text) < SUMMARY_LIMIT:
        return text
    cut = text[: SUMMARY_LIMIT - 2].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


# -- what a person reads ----------------------------------------------------------------------------

_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_WORD = re.compile(r"\w")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


def rendered_word_count(markdown: str) -> int:
    """Words of the text a Markdown renderer shows: emphasis, bullets and table rules are not words;
    a table's cells are."""
    count = 0
    for line in markdown.splitlines():
        if _TABLE_RULE.match(line):
            continue
        line = re.sub(r"^\s*[-*+]\s+", "", line).replace("|", " ")
        count += sum(1 for token in line.split() if _WORD.search(token))
    return count


def _words(text: str) -> int:
    return len(text.split())


def _first_sentence(text: str) -> str:
    return _SENTENCE_END.split(text.strip(), 1)[0] if text and text.strip() else ""


def _in_sentence(name: str) -> str:
    """'Skin biopsy' -> 'skin biopsy' inside a sentence; 'CT' and '25-OH vitamin D' stay as they are."""
    if len(name) > 1 and name[0].isupper() and name[1].islower():
        return name[0].lower() + name[1:]
    return name


def test_name(test: Any, data: Mapping[str, Any] = CARD_DATA) -> str:
    """The plain name of a test: the core's own name when it gives one (a name that is only the display
    again is none), else the short name the card data keeps for its code, else the component of its
    display ('Osteocalcin [Mass/volume] in Serum or Plasma' -> 'Osteocalcin'), never a LOINC long name."""
    display = str(getattr(test, "display", "") or "")
    name = str(getattr(test, "name", "") or "")
    if name and name != display:
        return name
    short = data["test_names"].get(getattr(test, "code", "") or "")
    if short:
        return str(short)
    return display.split(" [", 1)[0].split(" - ", 1)[0].strip() or display


# -- the rule documentation ------------------------------------------------------------------------

def _slug(heading: str) -> str:
    """A heading's anchor as GitHub and markdown-it's anchors plugin make it: lower case, punctuation
    dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def doc_anchors(markdown: str) -> list[str]:
    """The anchors a Markdown page offers: its headings' slugs (outside code fences) and explicit ids."""
    anchors: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        anchors += re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line)
        anchors += re.findall(r"\{#([\w-]+)\}", line)
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            anchors.append(_slug(re.sub(r"\{#[\w-]+\}", "", heading.group(1))))
    return anchors


@lru_cache(maxsize=4)
def _readme_anchors(path: Path) -> tuple[str, ...]:
    try:
        return tuple(doc_anchors(path.read_text(encoding="utf-8")))
    except OSError:
        return ()


def rule_docs_url(base_url: str, calcinosis_type: str | None, readme: str | None = None,
                  data: Mapping[str, Any] = CARD_DATA) -> str:
    """The rule documentation at the section of `calcinosis_type`: a heading named for the type
    ('#metastatic', '#metastatic-calcinosis'), else the rules table, else the page itself, so the
    link stays valid whatever the documentation's headings are."""
    anchors = doc_anchors(readme) if readme is not None else list(_readme_anchors(_RULES_README))
    url = base_url.rstrip("/") + data["rule_docs"]["docs_path"]
    candidates: list[str] = []
    if calcinosis_type:
        candidates += [a for a in anchors if a == calcinosis_type]
        candidates += [a for a in anchors if a.startswith(calcinosis_type + "-")]
    candidates += [a for a in data["rule_docs"]["fallback_anchors"] if a in anchors]
    return f"{url}#{candidates[0]}" if candidates else url


def _links(context: CardContext, data: Mapping[str, Any], calcinosis_type: str | None = None) -> list[dict[str, Any]]:
    docs = data["rule_docs"]
    if calcinosis_type:
        type_name = data["type_names"].get(calcinosis_type, calcinosis_type)
        label = docs["label"].format(type_name=_in_sentence(type_name))
    else:
        label = docs["label_any_type"]
    return [{"label": label, "url": rule_docs_url(context.base_url, calcinosis_type, data=data), "type": "absolute"}]


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
    """The advice for what is being ordered; which orders it concerns is for the EHR (the extension)."""
    alert = alerts[0]
    full_summary = data["order_alert_summary"].format(display=alert.display)
    summary = truncate_summary(full_summary)
    lines = [f"**{alert.display}**", ""] if summary != full_summary else []
    lines.append(alert.message)
    orders = list(dict.fromkeys(a.order_reference for a in alerts if a.order_reference))
    if len(orders) > 1:
        lines += ["", data["order_alert_orders"].format(count=len(orders))]
    source = _source_line(alert.citations, alert.citation, data)
    if source:
        lines += ["", source]
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": "warning",
        "detail": "\n".join(lines),
        "source": _source(context, data, alert.citations),
        "overrideReasons": _override_reasons(data, "order-alert"),
        "links": _links(context, data, "iatrogenic"),
        "extension": {data["extension_keys"]["orders"]: orders},
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


def _missing_tests(assessment: PatientAssessment) -> list[PanelTest]:
    """The tests the core left missing. Whether one is already ordered is the rule library's decision
    alone (its "... Order" defines): the draft orders are part of the data it assessed."""
    return list(assessment.recommended)


def _assessment_card(assessment: PatientAssessment, context: CardContext,
                     data: Mapping[str, Any]) -> IssuedCard | None:
    if not assessment.grades:
        return None
    missing = _missing_tests(assessment)
    unconfirmed = assessment.unconfirmed
    indicator = _indicator(assessment, data)
    leading = assessment.leading
    key_number = _key_number(assessment, data)
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
        "links": _links(context, data, leading.type),
        "extension": _extension(assessment, context, data),
    }
    if missing:
        suggestions = _suggestions(missing, context, data)
        card["suggestions"] = suggestions
        # One suggestion: take it or not. Several (the panel, then each study on its own): any of them.
        card["selectionBehavior"] = "at-most-one" if len(suggestions) == 1 else "any"
    return IssuedCard(compact(card), card_type)


def _extension(assessment: PatientAssessment, context: CardContext, data: Mapping[str, Any]) -> dict[str, Any]:
    """For the EHR's developers: every data note located in the request, and the rule library read."""
    keys = data["extension_keys"]
    return {keys["data_notes"]: [note.as_json() for note in context.data_notes],
            keys["rule_library"]: f"{assessment.library} {assessment.library_version}"}


def _plural_tests(count: int) -> str:
    return "test" if count == 1 else "tests"


def _suggestions(missing: list[PanelTest], context: CardContext, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The laboratory panel as one suggestion; each test of a group offered one by one (imaging and
    biopsy: a clinician picks the studies the lesions need, never all at once) as its own."""
    separate = set(data["separate_suggestion_groups"])
    panel = [t for t in missing if t.group not in separate]
    suggestions = []
    if panel:
        # Draft orders already hold tests: the suggestion completes the panel rather than starting it.
        label_key = "panel_completion_label" if context.draft_order_codes else "panel_suggestion_label"
        label = data[label_key].format(count=len(panel), tests=_plural_tests(len(panel)))
        suggestions.append(_panel_suggestion(panel, context, label, data))
    suggestions += [_panel_suggestion([t], context, data["single_test_suggestion_label"].format(
                        name=_in_sentence(test_name(t, data))), data)
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


def _key_number(assessment: PatientAssessment, data: Mapping[str, Any]) -> str:
    return key_number_text(assessment.values_used, data["key_analytes"].get(assessment.leading.type, ()), data,
                           incomplete=assessment.incomplete_analytes)


def key_number_text(values: tuple[ValueUsed, ...], analytes: Iterable[str], data: Mapping[str, Any], *,
                    incomplete: Iterable[str] = ()) -> str:
    """The number a clinician looks at first for this type, e.g. 'Ca x P 81 mg2/dL2', never invented:
    the first of `analytes` the core flagged abnormal (the one that drives the grade), else the first
    it used at all.

    With no value, "not on file" only when every result of those analytes was read (`incomplete`
    names the analytes whose results may not all have been).
    """
    analytes = tuple(analytes)
    found = [(analyte, value) for analyte in analytes
             if (value := _ca_x_p(values, data) if analyte == "ca-x-p" else _find_value(values, analyte)) is not None]
    abnormal = [(analyte, value) for analyte, value in found if value.flag not in (None, "N")]
    for analyte, value in (abnormal or found)[:1]:
        if analyte == "ca-x-p":
            return f"Ca x P {_format_decimal(value.value, '0.1')} {value.unit}"
        label = data["short_labels"].get(analyte, value.label)
        flag = f" ({value.flag})" if value.flag else ""
        return f"{label} {value.bound_words}{_format_decimal(value.value)} {value.unit}{flag}"
    not_read = set(incomplete)
    if not_read & ({"calcium", "phosphate"} | set(analytes)):
        return str(data["key_number_unconfirmed"])
    return str(data["key_number_none"])


def _ca_x_p(values: tuple[ValueUsed, ...], data: Mapping[str, Any]) -> ValueUsed | None:
    """The product as the core reported it; never recomputed here, so the card cannot disagree with the rules."""
    for analyte in data["ca_x_p_analytes"]:
        reported = _find_value(values, analyte)
        if reported is not None:
            return reported
    return None


def _when(effective: datetime | date | None) -> str:
    if effective is None:
        return "date not recorded"
    if isinstance(effective, datetime):
        return effective.date().isoformat()
    return effective.isoformat()


# -- the assessment card's detail -----------------------------------------------------------------

def _why_line(assessment: PatientAssessment, data: Mapping[str, Any], no_values: str | None) -> tuple[str, bool]:
    """Why the leading type: its rationale's first sentence when short; with no calcium or phosphate at
    all, that they are unknown (then said once, here); else the sentence's first clause when short;
    else its grade and key number. The second value says whether `no_values` was said."""
    detail = data["detail"]
    leading = assessment.leading
    sentence = _first_sentence(leading.rationale)
    if sentence and _words(sentence) <= detail["why_max_words"]:
        return detail["why"].format(type=leading.type, risk=leading.risk, sentence=sentence), False
    if no_values:
        return detail["why"].format(type=leading.type, risk=leading.risk, sentence=no_values), True
    # The findings that lead the rationale, clause by clause while they fit ("Kidney failure / dialysis:
    # End-stage renal disease; skin necrosis or ulceration: Retiform purpura"), the rest being in the
    # full assessment.
    clauses: list[str] = []
    for clause in (sentence.rstrip(".").split("; ") if sentence else ()):
        if _words("; ".join(clauses + [clause])) > detail["why_max_words"]:
            break
        clauses.append(clause)
    if clauses:
        return detail["why"].format(type=leading.type, risk=leading.risk, sentence="; ".join(clauses) + "; …"), False
    sentence = detail["why_composed"].format(risk=leading.risk, key_number=_key_number(assessment, data))
    return detail["why"].format(type=leading.type, risk=leading.risk, sentence=sentence), False


def _value_text(value: ValueUsed, analyte: str, data: Mapping[str, Any]) -> str:
    unit = data["detail"]["unit_display"].get(value.unit, value.unit)
    number = _format_decimal(value.value, "0.1") if analyte == "ca-x-p" else _format_decimal(value.value)
    flag = f" ({value.flag})" if value.flag else ""
    return f"{value.bound_words}{number} {unit}{flag}"


def _table_values(assessment: PatientAssessment, data: Mapping[str, Any]) -> list[tuple[str, ValueUsed]]:
    """Calcium, phosphate and the product, then what drives the leading type (PTH or vitamin D when
    flagged, kidney function), each when the core used one."""
    detail = data["detail"]
    wanted = list(detail["table_rows"]) + list(detail["table_rows_by_type"].get(assessment.leading.type, ()))
    found: dict[str, ValueUsed] = {}
    for analyte in wanted:
        value = _ca_x_p(assessment.values_used, data) if analyte == "ca-x-p" else _find_value(assessment.values_used,
                                                                                                analyte)
        if value is None:
            continue
        if analyte not in detail["table_rows_shown_unflagged"] and value.flag in (None, "N"):
            continue
        found[analyte] = value
    return [(a, v) for a, v in found.items()
            if detail["table_row_only_without"].get(a) not in found]


_MINERALS = frozenset({"calcium", "calcium-ionized", "phosphate"})


def _no_values_text(assessment: PatientAssessment, rows: list[tuple[str, ValueUsed]],
                    data: Mapping[str, Any]) -> str | None:
    """With neither calcium nor phosphate used: that they are unknown, not normal, and whether the search
    was read in part or some of their results could not be read."""
    if _MINERALS & {a for a, _ in rows}:
        return None
    if "laboratory" in assessment.incomplete_searches:
        return str(data["detail"]["no_values_among_read"])
    if _MINERALS & set(assessment.incomplete_analytes):
        return str(data["detail"]["no_values_unread"])
    return str(data["detail"]["no_values"])


def _values_table(rows: list[tuple[str, ValueUsed]], data: Mapping[str, Any]) -> list[str]:
    if not rows:
        return []
    header = data["detail"]["table_header"]
    table = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    for analyte, value in rows:
        label = data["short_labels"].get(analyte, value.label)
        when = _when(value.effective) + (f", {value.status}" if value.status and value.status != "final" else "")
        table.append(f"| {label} | {_value_text(value, analyte, data)} | {when} |")
    return table


def _second_type(assessment: PatientAssessment, data: Mapping[str, Any], with_reason: bool) -> str | None:
    detail = data["detail"]
    if len(assessment.grades) < 2:
        return None
    second: TypeGrade = assessment.grades[1]
    if RISK_ORDER.get(second.risk, 0) < RISK_ORDER[detail["second_type_from_risk"]]:
        return None
    sentence = _first_sentence(second.rationale)
    short = bool(sentence) and _words(sentence) <= detail["second_type_reason_max_words"]
    reason = f": {sentence}" if with_reason and short else "."
    return detail["second_type"].format(type=second.type, risk=second.risk, reason=reason)


def _join(names: Sequence[str]) -> str:
    """Names as a list: with commas, or with semicolons when a name holds a comma ('Parathyroid hormone, intact')."""
    return ("; " if any("," in name for name in names) else ", ").join(names)


def _names(names: Sequence[str], keep: int, data: Mapping[str, Any]) -> str:
    if keep >= len(names):
        return _join(names)
    return data["detail"]["missing_cut"].format(names=_join(names[:keep]), count=len(names) - keep)


def _grouped(groups: Sequence[tuple[str, list[str]]], keep: int, with_reasons: bool = True) -> str:
    """'A, B (reason); C (other reason)', naming at most `keep` tests in all and counting the others;
    without reasons, 'A and 3 more'."""
    if not with_reasons:
        names = [name for _, group in groups for name in group]
        shown = names[:max(keep, 1)]
        return _join(shown) + (f" and {len(names) - len(shown)} more" if len(shown) < len(names) else "")
    parts = []
    left = keep
    for reason, names in groups:
        shown = names[:max(left, 0)]
        left -= len(shown)
        if not shown:
            parts.append(f"{len(names)} more ({reason})")
        elif len(shown) < len(names):
            parts.append(f"{_join(shown)} and {len(names) - len(shown)} more ({reason})")
        else:
            parts.append(f"{_join(names)} ({reason})")
    return "; ".join(parts)


def _short_reason(reason: str) -> str:
    """'kidney failure or dialysis on file (End stage renal disease): a patient on dialysis ...' -> 'kidney
    failure or dialysis on file': the reason's head, without its details."""
    head = reason.split(": ", 1)[0]
    return re.sub(r"\s*\([^)]*\)", "", head).strip() or reason


def _unconfirmed_groups(assessment: PatientAssessment, data: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for test in assessment.unconfirmed:
        reason = re.sub(r"^could not confirm:\s*", "", test.reason or "").strip() or "data incomplete"
        groups.setdefault(reason, []).append(test_name(test, data))
    return list(groups.items())


def _omitted_groups(assessment: PatientAssessment, data: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for reason, tests in omitted_by_reason(assessment.omitted):
        groups.setdefault(_short_reason(reason), []).extend(test_name(t, data) for t in tests)
    return list(groups.items())


def _source_line(citations: Sequence[Citation], citation_text: str, data: Mapping[str, Any]) -> str | None:
    """One line: the first publication cited and its section; a short plain citation when there is no other."""
    if citations:
        first = citations[0]
        source = ", ".join(part for part in (first.label or first.reference, first.section) if part)
    elif citation_text and _words(citation_text) <= data["detail"]["why_max_words"]:
        source = citation_text
    else:
        return None
    return data["detail"]["source"].format(source=source)


@dataclass(slots=True)
class _DetailParts:
    """The detail's sections, and how much of each fits: the fitting shortens these, never the facts above them."""

    head: list[str]
    values: list[str]
    second_full: str | None
    second_short: str | None
    missing: list[str]
    unconfirmed: list[tuple[str, list[str]]]
    omitted: list[tuple[str, list[str]]]
    notes: list[str]
    source: str | None
    second_reason: bool = True
    with_second: bool = True
    reasons: bool = True  # why each test could not be confirmed or was not proposed
    missing_keep: int = 0
    unconfirmed_keep: int = 0
    omitted_keep: int = 0
    notes_keep: int = 0
    with_source: bool = True

    def render(self, data: Mapping[str, Any]) -> str:
        detail = data["detail"]
        blocks = [self.head, self.values]
        second = self.second_full if self.second_reason else self.second_short
        if second and self.with_second:
            blocks.append([second])
        if self.missing:
            blocks.append([detail["missing"].format(names=_names(self.missing, self.missing_keep, data))])
        if self.unconfirmed:
            blocks.append([detail["unconfirmed"].format(
                groups=_grouped(self.unconfirmed, self.unconfirmed_keep, self.reasons))])
        if self.omitted and self.omitted_keep:
            blocks.append([detail["not_proposed"].format(groups=_grouped(self.omitted, self.omitted_keep, self.reasons))])
        if self.notes and self.notes_keep:
            blocks.append([detail["data_notes_heading"]] + [f"- {note}" for note in self.notes[: self.notes_keep]])
        if self.source and self.with_source:
            blocks.append([self.source])
        return "\n\n".join("\n".join(block) for block in blocks if block)


def _fit(parts: _DetailParts, data: Mapping[str, Any]) -> str:
    """The fullest detail within the word limit: the second type's reason goes first, then the lists are cut
    ("and 4 more": the suggestion holds them all), data notes beyond the first, the reasons of the tests not
    confirmed or not proposed, the tests not proposed, the second type, and last the source line. What is
    never cut: why the leading type, whether calcinosis is on file, the values, the first data note."""
    limit = data["detail"]["word_limit"]

    def fits() -> bool:
        return rendered_word_count(parts.render(data)) <= limit

    steps: list[tuple[str, Any]] = [("second_reason", False), ("missing_keep", 3), ("unconfirmed_keep", 3),
                                    ("omitted_keep", 1), ("notes_keep", 1), ("missing_keep", 1),
                                    ("unconfirmed_keep", 1), ("reasons", False), ("omitted_keep", 0),
                                    ("with_second", False), ("with_source", False)]
    for attribute, floor in steps:
        if fits():
            break
        if isinstance(floor, bool):
            setattr(parts, attribute, floor)
            continue
        while not fits() and getattr(parts, attribute) > floor:
            setattr(parts, attribute, getattr(parts, attribute) - 1)
    return parts.render(data)


def _assessment_detail(assessment: PatientAssessment, missing: list[PanelTest], context: CardContext,
                       data: Mapping[str, Any]) -> str:
    detail = data["detail"]
    rows = _table_values(assessment, data)
    no_values = _no_values_text(assessment, rows, data)
    why, said = _why_line(assessment, data, no_values)
    head = [why]
    if not assessment.calcinosis_condition:
        partial = "condition" in assessment.incomplete_searches
        head += ["", detail["no_calcinosis_among_read" if partial else "no_calcinosis_on_file"]]
    values = [no_values] if no_values and not said else []
    table = _values_table(rows, data)
    values += ([""] if values and table else []) + table
    repeat = detail["repeat_reason_prefix"]
    missing_names = [test_name(t, data) + (detail["repeat_suffix"] if (t.reason or "").startswith(repeat) else "")
                     for t in missing]
    unconfirmed = _unconfirmed_groups(assessment, data)
    omitted = _omitted_groups(assessment, data)
    parts = _DetailParts(
        head=head,
        values=values,
        second_full=_second_type(assessment, data, True), second_short=_second_type(assessment, data, False),
        missing=missing_names, unconfirmed=unconfirmed, omitted=omitted, notes=list(context.note_lines),
        source=_source_line(assessment.leading.citations, assessment.leading.citation, data),
        missing_keep=len(missing_names), unconfirmed_keep=sum(len(n) for _, n in unconfirmed),
        omitted_keep=sum(len(n) for _, n in omitted), notes_keep=len(context.note_lines))
    return _fit(parts, data)


def _data_notes_card(assessment: PatientAssessment, context: CardContext, data: Mapping[str, Any]) -> IssuedCard:
    lines = [data["data_notes_detail"], "", data["detail"]["data_notes_heading"]]
    lines += [f"- {note}" for note in context.note_lines]
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": truncate_summary(data["data_notes_summary"]),
        "indicator": "info",
        "detail": "\n".join(lines),
        "source": _source(context, data),
        "overrideReasons": _override_reasons(data, "assessment"),
        "links": _links(context, data),
        "extension": _extension(assessment, context, data),
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
    # Blank texts left out as R4 requires, so the proposal is valid as built (the tests validate it).
    resource = without_empty_elements(resource)  # it leaves out nulls too
    if context.validate_outputs:
        ServiceRequest.model_validate(resource)  # a proposal the EHR cannot parse is worse than none
    return resource


def _panel_suggestion(missing: list[PanelTest], context: CardContext, label: str,
                      data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "label": label,
        "uuid": str(uuid.uuid4()),
        "isRecommended": True,
        "actions": [
            {"type": "create", "description": data["action_description"].format(name=test_name(t, data)),
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


def _override_reasons(data: Mapping[str, Any], kind: str) -> list[dict[str, str]]:
    system = data["override_reasons"]["system"]
    return [{"system": system, "code": r["code"], "display": r["display"]} for r in data["override_reasons"][kind]]


def compact(value: Any) -> Any:
    """Drop nulls, empty strings, empty arrays and empty objects at any depth (the response has none).

    A card holds a few hundred values, nearly all plain strings: those are told apart by their exact
    class before anything else is asked of them.
    """
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            item = _compacted(item)
            if item is not _LEFT_OUT:
                kept[key] = item
        return kept
    if isinstance(value, list):
        items = []
        for item in value:
            item = _compacted(item)
            if item is not _LEFT_OUT:
                items.append(item)
        return items
    return value


_LEFT_OUT = object()


def _compacted(item: Any) -> Any:
    """`item` compacted, or _LEFT_OUT when it is null or empty."""
    if item is None:
        return _LEFT_OUT
    kind = item.__class__
    if kind is str:
        return item if item else _LEFT_OUT
    if kind is dict or kind is list or isinstance(item, (dict, list)):
        item = compact(item)
        return item if item else _LEFT_OUT
    return _LEFT_OUT if item == "" or item == [] or item == {} else item
