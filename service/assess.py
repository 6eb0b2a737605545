"""The assessment core: bundle -> per-patient facts -> rule library -> PatientAssessment.

Every surface ($assess, CDS Hooks, the CLI) goes through `Assessor.assess`, so there is one
copy of the clinical logic: the compiled rule library. The library is compiled once per
configuration and reused for every request.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from .assessment_model import InputIssue, PatientAssessment
from .config import load_config
from .cql_like import CqlError, Library, load_library, load_model_info
from .cql_like.quantity import Quantity
from .ingest import read_bundle
from .normalize import build_facts
from .rules_adapter import to_patient_assessment
from .terminology import load_terminology

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AssessmentRun:
    """The outcome of assessing one bundle: one assessment per patient, plus bundle-level issues."""

    patients: tuple[PatientAssessment, ...]
    issues: tuple[InputIssue, ...]


class Assessor:
    """A compiled rule library bound to its terminology, ready to assess bundles."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.library: Library = load_library(
            Path(config["RULE_LIBRARY"]),
            model=load_model_info(Path(config["MODEL_INFO"])),
            valueset_dir=Path(config["VALUESET_DIR"]),
        )
        self.terminology = load_terminology()
        fixed = config.get("EVALUATION_TIME")
        self.fixed_now: datetime | None = (
            _aware(datetime.fromisoformat(str(fixed).replace("Z", "+00:00"))) if fixed else None)
        lookback_days = config.get("LOOKBACK_DAYS")
        self.parameters: dict[str, Any] = {}
        if lookback_days not in (None, ""):
            self.parameters["Lookback"] = Quantity(Decimal(str(lookback_days)), "days")

    def assess(self, bundle: object, *, now: datetime | None = None) -> AssessmentRun:
        """Assess every patient of `bundle` (decoded JSON). Raises InputError for unusable bundles."""
        now = _aware(now or self.fixed_now or datetime.now(timezone.utc))
        ingested = read_bundle(bundle)
        bundle_issues = list(ingested.issues)
        patients: list[PatientAssessment] = []
        for patient in ingested.patients:
            facts = build_facts(patient, now=now, terminology=self.terminology)
            issues = tuple(patient.issues) + tuple(facts.issues)
            try:
                result = self.library.evaluate(facts, parameters=self.parameters, now=now)
            except CqlError as error:
                # A rule failed on this patient's data: report it instead of failing the whole request.
                log.error("rule evaluation failed for one patient: %s", error.message if hasattr(error, "message") else error)
                bundle_issues.append(InputIssue(
                    "error", "processing",
                    f"{patient.patient_reference} could not be assessed: {error}",
                    None,
                ))
                continue
            patients.append(to_patient_assessment(
                result,
                library=self.library,
                patient_id=patient.patient_id,
                patient_reference=patient.patient_reference,
                assessed_at=now,
                issues=issues,
            ))
        return AssessmentRun(tuple(patients), tuple(bundle_issues))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


_cache: dict[tuple[Any, ...], Assessor] = {}
_cache_lock = threading.Lock()


def get_assessor(config: Mapping[str, Any] | None = None) -> Assessor:
    """The Assessor for this configuration, compiled on first use and cached."""
    effective = load_config(config) if config is None or "RULE_LIBRARY" not in config else config
    key = (effective["RULE_LIBRARY"], effective["VALUESET_DIR"], effective["MODEL_INFO"],
           str(effective.get("LOOKBACK_DAYS")), str(effective.get("EVALUATION_TIME")))
    with _cache_lock:
        assessor = _cache.get(key)
        if assessor is None:
            assessor = _cache[key] = Assessor(effective)
        return assessor


def assess_bundle(bundle: object, *, config: Mapping[str, Any] | None = None,
                  now: datetime | None = None) -> AssessmentRun:
    """Assess a decoded FHIR Bundle with the (cached) rule library of `config`."""
    return get_assessor(config).assess(bundle, now=now)
