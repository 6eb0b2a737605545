"""An app for the CDS Hooks tests, and hand-built assessments to stand in for the core.

`make_app` is the real application factory, so the CDS Hooks tests see the same error
handling, configuration layers and CORS set-up as production.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping

from flask import Flask

from service.assessment_model import (AssessmentRun, AvailableTest, DataGap, InputIssue, OrderAlert, PanelTest,
                                      PatientAssessment, TypeGrade, ValueUsed)

ASSESSED_AT = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)


def make_app(config: dict[str, Any]) -> Flask:
    """`create_app(config)` with the Assessor this process built for the same settings, compiled once."""
    from service import create_app

    return create_app(config, assessor=shared_assessor(config))


def shared_assessor(config: dict[str, Any]) -> Any:
    """The process-wide Assessor for `config`'s settings: tests build hundreds of apps on the same rules.

    `create_app` refuses it if it was built for other settings; tests of the app's own library
    (tests/test_app_state.py) call `create_app` without it.
    """
    from service.pipeline.assess import get_assessor
    from service.config import load_config

    return get_assessor(load_config(config))


class FakeCore:
    """Stands in for `hook_call.core_assess` (an `AssessBundle`): returns a fixed AssessmentRun and
    remembers the bundles it was given."""

    def __init__(self, *patients: PatientAssessment, issues: tuple[InputIssue, ...] = ()) -> None:
        self.patients = patients
        self.issues = issues
        self.bundles: list[Mapping[str, Any]] = []
        self.calls: list[dict[str, Any]] = []  # the keyword arguments of each call (now, data_gaps)

    def __call__(self, bundle: Mapping[str, Any], *, config: Mapping[str, Any] | None = None,
                 now: datetime | None = None, data_gaps: Iterable[DataGap] = (),
                 assessor: object = None) -> AssessmentRun:
        """`assessor`, the app's own, is accepted as `core_assess` accepts it, and not used."""
        self.bundles.append(bundle)
        self.calls.append({"now": now, "data_gaps": data_gaps})
        return AssessmentRun(self.patients, self.issues)


BASELINE_MISSING = (
    PanelTest("2731-8", "http://loinc.org", "Parathyrin.intact [Mass/volume] in Serum or Plasma", "baseline",
              "hyperparathyroidism"),
    PanelTest("62292-8", "http://loinc.org", "25-Hydroxyvitamin D2+25-Hydroxyvitamin D3 [Mass/volume] in Serum or Plasma",
              "baseline", "hypervitaminosis D"),
    PanelTest("58410-2", "http://loinc.org", "Complete blood count (hemogram) panel - Blood by Automated count",
              "baseline", "lupus, malignancy"),
)


def metastatic_assessment(patient_id: str = "pat-1", **changes: Any) -> PatientAssessment:
    """ESRD patient with Ca 11.2 and P 7.3 mg/dL: metastatic high."""
    fields = dict(
        patient_id=patient_id,
        patient_reference=f"Patient/{patient_id}",
        assessed_at=ASSESSED_AT,
        library="CalcinosisCutis",
        library_version="1.0.0",
        grades=(
            TypeGrade("metastatic", "high", "Ca x P 81.8 mg2/dL2 on 2026-11-01 exceeds 70; calcium 11.2 mg/dL (H)."),
            TypeGrade("calciphylaxis", "moderate", "ESRD on dialysis; no skin necrosis recorded."),
            TypeGrade("dystrophic", "low", "Calcium and phosphate are abnormal."),
            TypeGrade("iatrogenic", "negligible", "No calcium or phosphate infusion recorded."),
            TypeGrade("idiopathic", "negligible", "Abnormal labs."),
        ),
        recommended=BASELINE_MISSING,
        available=(AvailableTest("17861-6", "http://loinc.org", "Calcium [Mass/volume] in Serum or Plasma",
                                 "11.2 mg/dL on 2026-11-01", "Observation/ca-1"),),
        values_used=(
            ValueUsed("calcium", "Calcium (serum)", Decimal("11.2"), "mg/dL", datetime(2026, 11, 1, 8, 0,
                      tzinfo=timezone.utc), "Observation/ca-1", flag="H", range_text="8.5-10.2 mg/dL (lab)"),
            ValueUsed("phosphate", "Phosphate (serum)", Decimal("7.3"), "mg/dL", date(2026, 11, 1),
                      "Observation/p-1", flag="H"),
            ValueUsed("ca-x-p", "Calcium x phosphate product", Decimal("81.76"), "mg2/dL2", date(2026, 11, 1),
                      "Observation/ca-1", flag="H", range_text='<= 70 mg2/dL2 (StatPearls "Calcinosis Cutis", 2019)'),
        ),
    )
    fields.update(changes)
    return PatientAssessment(**fields)


def quiet_assessment(patient_id: str = "pat-1", **changes: Any) -> PatientAssessment:
    """Normal labs, complete work-up: nothing to say."""
    fields = dict(
        patient_id=patient_id,
        patient_reference=f"Patient/{patient_id}",
        assessed_at=ASSESSED_AT,
        library="CalcinosisCutis",
        library_version="1.0.0",
        grades=tuple(TypeGrade(t, "low" if t == "dystrophic" else "negligible", "Normal calcium and phosphate.")
                     for t in ("dystrophic", "idiopathic", "metastatic", "iatrogenic", "calciphylaxis")),
        values_used=(ValueUsed("calcium", "Calcium (serum)", Decimal("9.4"), "mg/dL", date(2026, 10, 2),
                               "Observation/ca-2", flag="N"),),
    )
    fields.update(changes)
    return PatientAssessment(**fields)


def calcium_gluconate_alert(order_reference: str = "MedicationRequest/draft-ca-gluconate") -> OrderAlert:
    return OrderAlert(order_reference, "Calcium gluconate 10% IV infusion",
                      "IV calcium gluconate can cause iatrogenic calcinosis cutis: dilute, use a large vein, watch the "
                      "site for extravasation, and check the phosphate level first.",
                      "StatPearls \"Calcinosis Cutis\", Pathophysiology, Iatrogenic Calcification")
