"""One CDS service call end to end: validate, gather data, assess through the core, build cards.

The clinical work is the app's `Assessor`, the same one `$assess` uses; this module only wires the
CDS Hooks specifics around it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..assessment_model import AssessBundle, AssessmentRun, DataGap, PatientAssessment
from ..config import setting
from .cards import CardContext, IssuedCard, build_cards
from .data_notes import clinician_lines, located_notes
from .draft_orders import draft_test_codes
from .fhir_fetch import FhirFetcher
from .gathered_size import check_gathered_size
from .order_codes import LabTestGrouping
from .prefetch import gather_bundle
from .request_validation import HookCall, validate_hook_call

if TYPE_CHECKING:
    from ..pipeline.assess import Assessor

_SERVICES_FILE = Path(__file__).with_name("services.json")

def load_services(path: Path = _SERVICES_FILE) -> dict[str, dict[str, Any]]:
    """The service definitions by id, from the one data file discovery is served from."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return {service["id"]: service for service in document["services"]}


def discovery_document(services: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The body of GET /cds-services."""
    return {"services": [dict(service) for service in services.values()]}


def core_assess(bundle: Mapping[str, Any], *, config: Mapping[str, Any], now: datetime | None = None,
                data_gaps: Iterable[DataGap] = (), assessor: Assessor | None = None) -> AssessmentRun:
    """The assessment core (an `AssessBundle`): `assessor` (the app's own) when given, else the process-wide
    one of `config`.

    The one place a hook call reaches the core, so tests can stand a fixed answer in for it.
    """
    if assessor is not None:
        return assessor.assess(bundle, now=now, data_gaps=data_gaps)
    from ..pipeline.assess import assess_bundle  # lazily, so this package loads without the rule library

    return assess_bundle(bundle, config=config, now=now, data_gaps=data_gaps)


@dataclass(frozen=True, slots=True)
class HookAnswer:
    """The response body and the cards in it (with their types, for the feedback record)."""

    body: dict[str, Any]
    cards: tuple[IssuedCard, ...]
    hook_instance: str


def _patient_of(run: AssessmentRun, patient_id: str) -> PatientAssessment | None:
    """The assessment of the patient in context; never another patient's, even if it is the only one."""
    for patient in run.patients:
        if patient.patient_id == patient_id or patient.patient_reference.rsplit("/", 1)[-1] == patient_id:
            return patient
    return None


def _draft_order_codes(call: HookCall) -> frozenset[tuple[str, str]]:
    """(system, code) of the context patient's draft ServiceRequests, for the suggestion's wording only
    (the core, which assessed the same drafts, already left their tests out of the missing work-up).

    The same subject rule as the Bundle handed to the core: an order without subject is the
    context patient's; one naming another patient was refused by validation and is skipped here.
    """
    return draft_test_codes(call.context.get("draftOrders"), call.patient_id)


def answer_hook_call(service: Mapping[str, Any], body: Any, *, fetcher: FhirFetcher, base_url: str,
                     config: Mapping[str, Any], assess: AssessBundle = core_assess,
                     now: datetime | None = None, grouping: LabTestGrouping | None = None) -> HookAnswer:
    """The cards for one call. Raises InputError (400, 413), DataUnavailableError (412) or the core's errors.

    `grouping`: which codes are the same test (the app's own); by default read from VALUESET_DIR.
    """
    call = validate_hook_call(service, body, max_draft_orders=int(setting(config, "CDS_MAX_DRAFT_ORDERS")))
    gathered = gather_bundle(service, call, fetcher)
    check_gathered_size(gathered, config)  # refused in the call's terms, before the core would ask for a split
    # Searches read only in part reach the rules, so the cards' texts agree with their data notes.
    run = assess(gathered.bundle, config=config, now=now, data_gaps=gathered.data_gaps)
    assessment = _patient_of(run, call.patient_id)
    if assessment is None:
        return HookAnswer({"cards": []}, (), call.hook_instance)
    selections = call.context.get("selections") if call.hook == "order-select" else None
    grouping = grouping or LabTestGrouping(setting(config, "VALUESET_DIR"))
    run_issues = run.issues
    notes = located_notes(gathered.notes, run_issues, assessment.issues, gathered.entry_locations,
                          patient_provided=gathered.patient_provided)
    context = CardContext(
        hook=call.hook,
        base_url=base_url,
        patient_reference=f"Patient/{call.patient_id}",
        selections=tuple(selections) if isinstance(selections, list) else None,
        draft_order_codes=_draft_order_codes(call),
        data_notes=notes,
        note_lines=clinician_lines(assessment, gathered.notes, (*run_issues, *assessment.issues),
                                   bundle=gathered.bundle, data_gaps=gathered.data_gaps,
                                   patient_provided=gathered.patient_provided, grouping=grouping),
        validate_outputs=bool(setting(config, "VALIDATE_OUTPUTS")),
    )
    cards = tuple(build_cards(assessment, context))
    return HookAnswer({"cards": [c.card for c in cards]}, cards, call.hook_instance)
