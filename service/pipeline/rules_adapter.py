"""Read the rule library's output defines into a PatientAssessment.

The library's output contract (define names and Tuple shapes) is documented in
service/knowledge/README.md; this module only unpacks it, orders the grades and
attaches evidence. It holds no clinical logic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping

from ..assessment_model import (
    CALCINOSIS_TYPES,
    RISK_ORDER,
    AvailableTest,
    Citation,
    InputIssue,
    OmittedTest,
    OrderAlert,
    PanelTest,
    PatientAssessment,
    TypeGrade,
    UnconfirmedTest,
    ValueUsed,
    citations_text,
)
from ..bibliography import Bibliography, load_bibliography
from ..cql_like.values import CqlTuple, Record
from ..errors import CalcinosisError

GRADE_DEFINES: dict[str, str] = {
    "dystrophic": "Dystrophic",
    "metastatic": "Metastatic",
    "idiopathic": "Idiopathic",
    "iatrogenic": "Iatrogenic",
    "calciphylaxis": "Calciphylaxis",
}

# Every define this module reads: the pipeline has the library evaluate these (and what they need)
# and nothing else, so a define no output reads costs nothing per patient.
OUTPUT_DEFINES: tuple[str, ...] = (
    *GRADE_DEFINES.values(), "Type Order", "Recommended Tests", "Unconfirmed Tests", "Tests Not Proposed",
    "Available Tests", "Values Used", "Order Alerts", "Calcinosis Condition", "Notes", "Values Note",
    "Incomplete Analytes", "Incomplete Searches",
)


class RuleContractError(CalcinosisError):
    """The rule library's output does not have the shape the service expects (a library bug)."""


def _field(row: Mapping[str, Any], name: str, define: str) -> Any:
    try:
        return row[name]
    except (KeyError, TypeError):
        raise RuleContractError(f'define "{define}": element {name!r} missing from {row!r}') from None


def _source(record: Any) -> str | None:
    return record.source if isinstance(record, Record) else None


def _record_type(record: Any) -> str:
    return record.type_name if isinstance(record, Record) else ""


def _citations(value: Any, bibliography: Bibliography, define: str) -> tuple[Citation, ...]:
    """The library's citations ({source, section, quote} tuples, or a list of them) resolved
    against the bibliography. A plain string is kept as text of its own (a library that cites
    without a key still says what it rests on); anything else is a library bug."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (Citation(source="", section="", quote="", reference=value),) if value.strip() else ()
    if isinstance(value, (list, tuple)):
        return tuple(c for item in value for c in _citations(item, bibliography, define))
    if value.__class__ is CqlTuple or isinstance(value, Mapping):  # the exact type first: no ABC check
        try:
            return (bibliography.citation(str(value["source"]), str(value["section"]), str(value["quote"])),)
        except KeyError as missing:
            raise RuleContractError(f'define "{define}": a citation needs source, section and quote, '
                                    f'not {value!r}') from missing
    raise RuleContractError(f'define "{define}": a citation must be a Tuple or a list of them, not {value!r}')


def _grades(result: Mapping[str, Any], bibliography: Bibliography) -> tuple[TypeGrade, ...]:
    grades = []
    for type_code in CALCINOSIS_TYPES:
        define = GRADE_DEFINES[type_code]
        outcome = result[define]
        row = outcome.value
        risk = _field(row, "risk", define)
        if risk not in RISK_ORDER:
            raise RuleContractError(f'define "{define}": risk {risk!r} is not one of {sorted(RISK_ORDER)}')
        citations = _citations(_field(row, "citation", define), bibliography, define)
        grades.append(TypeGrade(
            type=type_code,
            risk=risk,
            rationale=_field(row, "rationale", define) or "",
            evidence=tuple(outcome.evidence),
            citation=citations_text(citations),
            citations=citations,
        ))
    # Equal grades follow the library's "Type Order" (clinical presentation order, kept with the rules).
    order = list(result["Type Order"].value or ())
    if sorted(order) != sorted(CALCINOSIS_TYPES):
        raise RuleContractError(f'define "Type Order" must list each of {list(CALCINOSIS_TYPES)} once, not {order}')
    grades.sort(key=lambda g: (-RISK_ORDER[g.risk], order.index(g.type)))
    return tuple(grades)


def _rows(result: Mapping[str, Any], define: str) -> Iterable[Mapping[str, Any]]:
    value = result[define].value if define in result else None
    return value or ()


def to_patient_assessment(result: Mapping[str, Any], *, library: Any, patient_id: str,
                          patient_reference: str, assessed_at: datetime,
                          issues: Iterable[InputIssue] = (),
                          bibliography: Bibliography | None = None) -> PatientAssessment:
    """Build the assessment of one patient from the evaluated library (citations resolved against
    `bibliography`, the shipped one by default)."""
    bibliography = bibliography or load_bibliography()
    recommended = tuple(
        PanelTest(code=r["code"] or "", system=r["system"] or "", display=r["display"], group=r["group"],
                  reason=r["reason"] or "",
                  citations=_citations(r.get("citation"), bibliography, "Recommended Tests"),
                  name=r.get("name") or "")
        for r in _rows(result, "Recommended Tests")
    )
    unconfirmed = tuple(
        UnconfirmedTest(code=r["code"], system=r["system"], display=r["display"], group=r["group"],
                        reason=r["reason"] or "", purpose=r.get("purpose") or "", name=r.get("name") or "")
        for r in _rows(result, "Unconfirmed Tests")
    )
    omitted = tuple(
        OmittedTest(code=r["code"] or "", system=r["system"] or "", display=r["display"], reason=r["reason"] or "",
                    name=r.get("name") or "")
        for r in _rows(result, "Tests Not Proposed")
    )
    available = tuple(
        AvailableTest(code=r["code"] or "", system=r["system"] or "", display=r["display"], summary=r["summary"],
                      source=_source(r.get("result")) or "", name=r.get("name") or "",
                      resource_type=_record_type(r.get("result")))
        for r in _rows(result, "Available Tests")
    )
    values_used = []
    for r in _rows(result, "Values Used"):
        quantity = r["value"]
        if quantity is None:
            continue
        record = r.get("result")
        values_used.append(ValueUsed(
            analyte=r["analyte"], label=r["label"], value=quantity.value, unit=quantity.unit,
            effective=r.get("effective"), source=_source(record) or "",
            status=(record.get("status") if isinstance(record, Record) else None) or "final",
            flag=r.get("flag"), range_text=r.get("range"), comparator=r.get("comparator"),
        ))
    alerts = []
    for r in _rows(result, "Order Alerts"):
        citations = _citations(r.get("citation"), bibliography, "Order Alerts")
        alerts.append(OrderAlert(order_reference=_source(r["order"]) or "", display=r["display"], message=r["message"],
                                 citation=citations_text(citations), citations=citations))
    condition = result["Calcinosis Condition"].value if "Calcinosis Condition" in result else None
    notes = tuple(n for n in _rows(result, "Notes") if n)
    values_note = (result["Values Note"].value if "Values Note" in result else None) or ""
    if values_note and values_note not in notes:
        raise RuleContractError('define "Notes" must hold the "Values Note" (the values used, listed once)')
    incomplete = tuple(dict.fromkeys(a for a in _rows(result, "Incomplete Analytes") if a))
    searches = tuple(dict.fromkeys(s for s in _rows(result, "Incomplete Searches") if s))
    return PatientAssessment(
        patient_id=patient_id,
        patient_reference=patient_reference,
        assessed_at=assessed_at,
        library=library.name,
        library_version=library.version,
        grades=_grades(result, bibliography),
        recommended=recommended,
        available=available,
        omitted=omitted,
        values_used=tuple(values_used),
        issues=tuple(issues),
        order_alerts=tuple(alerts),
        calcinosis_condition=_source(condition),
        notes=notes,
        unconfirmed=unconfirmed,
        incomplete_analytes=incomplete,
        incomplete_searches=searches,
        values_note=values_note,
    )
