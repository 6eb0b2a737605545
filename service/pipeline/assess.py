"""The assessment core: bundle -> per-patient facts -> rule library -> PatientAssessment.

Every surface ($assess, CDS Hooks, the CLI) goes through `Assessor.assess`, so there is one
copy of the clinical logic: the compiled rule library. An Assessor reads its files once, when it
is built, and never again: the web app builds its own in `create_app` (so two apps never share
one, and an edited library takes effect in the next app built); the CLI, the benchmark and tests
use `get_assessor`/`assess_bundle`, an explicit per-process cache keyed by the settings.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..assessment_model import AssessmentRun, DataGap, InputIssue, PatientAssessment
from ..bibliography import SHIPPED_BIBLIOGRAPHY, Bibliography, read_bibliography
from ..config import load_config
from ..cql_like import Library, load_library, load_model_info
from ..cql_like.errors import CqlEvaluationError
from ..errors import InputError
from ..cql_like.quantity import Quantity
from .bundle_stream import entry_types
from .collection_pause import collection_paused
from .ingest import KEPT_TYPES, read_bundle
from .normalize import build_facts
from .records import RecordBuilder
from .rules_adapter import OUTPUT_DEFINES, to_patient_assessment
from .selection import read_selection
from ..terminology import read_terminology

log = logging.getLogger(__name__)

# Called with the seconds one patient's rule evaluation took, so the HTTP layer can export it
# without the core knowing how.
EVALUATION_OBSERVERS: list[Callable[[float], None]] = []


class Assessor:
    """A compiled rule library bound to its terminology and bibliography, ready to assess bundles.

    Everything is read from disk here and kept: an Assessor never rereads a file, so a request
    never sees half of an edit. `settings` are the values it was built from (see `assessor_settings`).
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.settings: tuple[tuple[str, str], ...] = assessor_settings(config)
        model = load_model_info(Path(config["MODEL_INFO"]))
        self.library: Library = load_library(Path(config["RULE_LIBRARY"]), model=model,
                                             valueset_dir=Path(config["VALUESET_DIR"]))
        self.records = RecordBuilder(model)  # the normalizer builds records through the model the library uses
        # the defines the assessment reads, as far as this library has them (a missing one is then
        # missing from the result, as before, and the contract error names it)
        self.output_defines = tuple(name for name in OUTPUT_DEFINES if name in self.library.define_names)
        self.terminology = read_terminology()
        self.selection = read_selection(self.terminology, config["VALUESET_DIR"])
        self.bibliography: Bibliography = read_bibliography(str(config.get("BIBLIOGRAPHY") or SHIPPED_BIBLIOGRAPHY))
        fixed = config.get("EVALUATION_TIME")
        self.fixed_now: datetime | None = (
            _aware(datetime.fromisoformat(str(fixed).replace("Z", "+00:00"))) if fixed else None)
        self.max_patients = int(config["MAX_PATIENTS_PER_REQUEST"])
        self.max_resources = int(config["MAX_ASSESSED_RESOURCES"])
        lookback_days = config.get("LOOKBACK_DAYS")
        self.parameters: dict[str, Any] = {}
        if lookback_days not in (None, ""):
            self.parameters["Lookback"] = Quantity(Decimal(str(lookback_days)), "days")

    def assess(self, bundle: object, *, now: datetime | None = None,
               data_gaps: Iterable[DataGap] = ()) -> AssessmentRun:
        """Assess every patient of `bundle` (decoded JSON). Raises InputError for unusable bundles.

        `data_gaps` are searches the caller could read only in part (a CDS Hooks prefetch that is
        only the first page of its search): the rules then say "could not confirm" instead of
        "missing" for what those searches may hold. A gap naming a patient applies to that patient
        only; one without, to every patient of the bundle.
        """
        with collection_paused():  # the Bundle and the facts are live data: collecting would only walk them
            return self._assess(bundle, now=now, data_gaps=data_gaps)

    def _assess(self, bundle: object, *, now: datetime | None, data_gaps: Iterable[DataGap]) -> AssessmentRun:
        now = _aware(now or self.fixed_now or datetime.now(timezone.utc))
        self._check_workload(bundle)
        ingested = read_bundle(bundle, self.selection)
        if len(ingested.patients) > self.max_patients:
            raise _too_many("patients", len(ingested.patients), self.max_patients)
        bundle_issues = list(ingested.issues)
        patients: list[PatientAssessment] = []
        caller_gaps = tuple(gap for gap in data_gaps if isinstance(gap, DataGap))
        for patient in ingested.patients:
            gaps = ingested.gaps + tuple(gap for gap in caller_gaps if _concerns(gap, patient.patient_id,
                                                                                 patient.patient_reference))
            facts = build_facts(patient, now=now, terminology=self.terminology, gaps=gaps, records=self.records)
            issues = tuple(patient.issues) + tuple(facts.issues)
            try:
                started = time.perf_counter()
                result = self.library.evaluate(facts, parameters=self.parameters, now=now,
                                               defines=self.output_defines)
                for observer in EVALUATION_OBSERVERS:
                    observer(time.perf_counter() - started)
                assessment = to_patient_assessment(
                    result, library=self.library, patient_id=patient.patient_id,
                    patient_reference=patient.patient_reference, assessed_at=now, issues=issues,
                    bibliography=self.bibliography)
            except Exception as error:  # noqa: BLE001 - one patient's failure must not fail the others
                bundle_issues.append(_not_assessed(patient.patient_reference, error))
                continue
            patients.append(assessment)
        return AssessmentRun(tuple(patients), tuple(bundle_issues))

    def _check_workload(self, bundle: object) -> None:
        """Refuse, before any validation, bundles that would take minutes to assess.

        The cost of a request grows with the resources the rules read and with the patients
        (each gets a RiskAssessment, a CarePlan and its ServiceRequests), not with the bytes:
        a few hundred kilobytes of bare Patients would otherwise tie a worker up for minutes.
        """
        _, types = entry_types(bundle)
        patients = types.get("Patient", 0)
        kept = sum(count for kind, count in types.items() if kind in KEPT_TYPES)
        if patients > self.max_patients:
            raise _too_many("Patient resources", patients, self.max_patients)
        if kept > self.max_resources:
            raise _too_many("resources the rules read", kept, self.max_resources)


def _concerns(gap: DataGap, patient_id: str, patient_reference: str) -> bool:
    """True when `gap` names no patient, or names this one (by id, or by the id its reference ends with)."""
    return gap.patient_id is None or gap.patient_id in (patient_id, patient_reference.rsplit("/", 1)[-1])


def _too_many(what: str, count: int, limit: int) -> InputError:
    return InputError.single(
        f"the Bundle holds {count} {what}; one request assesses at most {limit}: split the Bundle",
        location="Bundle.entry", code="too-costly", status=413)


def _not_assessed(patient_reference: str, error: Exception) -> InputIssue:
    """Report a patient the rules could not assess, naming the rule but no file paths or values."""
    if isinstance(error, CqlEvaluationError):
        where = f'rule "{error.define}"' if error.define else "the rule library"
        log.error("evaluation of %s failed for one patient", where)
        reason = f"{where} could not be evaluated on this patient's data"
    else:
        log.error("assessment failed for one patient: %s", type(error).__name__)
        reason = f"internal error ({type(error).__name__})"
    return InputIssue("error", "processing", f"{patient_reference} could not be assessed: {reason}", None)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)



# Every setting an Assessor reads: two configurations that agree on these get the same answers.
ASSESSOR_SETTINGS = ("RULE_LIBRARY", "VALUESET_DIR", "MODEL_INFO", "BIBLIOGRAPHY", "LOOKBACK_DAYS",
                     "EVALUATION_TIME", "MAX_PATIENTS_PER_REQUEST", "MAX_ASSESSED_RESOURCES")


def assessor_settings(config: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The settings an Assessor reads, as comparable (key, text) pairs."""
    return tuple((name, str(config.get(name))) for name in ASSESSOR_SETTINGS)


# The process-level convenience for the CLI, the benchmark and tests (the web app never consults
# it: each app holds its own Assessor). Files are read once per set of settings and process.
_cache: dict[tuple[tuple[str, str], ...], Assessor] = {}
_cache_lock = threading.Lock()


def get_assessor(config: Mapping[str, Any] | None = None) -> Assessor:
    """The process-wide Assessor for this configuration, built on first use and reused."""
    effective = load_config(config) if config is None or "RULE_LIBRARY" not in config else config
    key = assessor_settings(effective)
    with _cache_lock:
        assessor = _cache.get(key)
        if assessor is None:
            assessor = _cache[key] = Assessor(effective)
        return assessor


def assess_bundle(bundle: object, *, config: Mapping[str, Any] | None = None,
                  now: datetime | None = None, data_gaps: Iterable[DataGap] = ()) -> AssessmentRun:
    """Assess a decoded FHIR Bundle with the process-wide Assessor of `config`; see `Assessor.assess`."""
    return get_assessor(config).assess(bundle, now=now, data_gaps=data_gaps)
