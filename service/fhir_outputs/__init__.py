"""FHIR R4 outputs of an assessment: RiskAssessment, CarePlan, ServiceRequests, OperationOutcome,
the result Bundle, and the CapabilityStatement. No Flask in here. The builders write valid R4 by
construction, checked with `fhir.resources.R4B` by the tests; at runtime each resource is validated
too only when asked (the `VALIDATE_OUTPUTS` setting), except the shipped static artefacts."""

from .capability_statement import assess_operation_definition, calcinosis_type_codesystem, capability_statement
from .errors import OutputValidationError
from .operation_outcome import operation_outcome
from .result_bundle import build_result_bundle

__all__ = [
    "OutputValidationError",
    "assess_operation_definition",
    "build_result_bundle",
    "calcinosis_type_codesystem",
    "capability_statement",
    "operation_outcome",
]
