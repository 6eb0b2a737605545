"""The CapabilityStatement served at GET /fhir/metadata, and the artefacts it points at.

The statement is a JSON template shipped with the package; only what depends on the running
instance (base URL, software version) is filled in here. The OperationDefinition of `$assess`
and the calcinosis-type CodeSystem are shipped as JSON too and validated when loaded.
"""

from __future__ import annotations

from typing import Any

from .validation import validate_resource
from .vocabulary import load_data_file

CAPABILITY_TEMPLATE = "capabilitystatement-template.json"
ASSESS_OPERATION_DEFINITION = "operationdefinition-assess.json"
CALCINOSIS_TYPE_CODESYSTEM = "codesystem-calcinosis-type.json"


def capability_statement(*, base_url: str | None = None, software_version: str | None = None) -> dict[str, Any]:
    """The validated CapabilityStatement; `base_url` is the FHIR base, e.g. https://host/fhir."""
    statement = load_data_file(CAPABILITY_TEMPLATE)
    if software_version:
        statement["software"]["version"] = software_version
    if base_url:
        statement["implementation"]["url"] = base_url.rstrip("/")
    return validate_resource(statement)


def assess_operation_definition() -> dict[str, Any]:
    """The validated OperationDefinition the statement's `assess` operation names."""
    return validate_resource(load_data_file(ASSESS_OPERATION_DEFINITION))


def calcinosis_type_codesystem() -> dict[str, Any]:
    """The validated CodeSystem of RiskAssessment.prediction.outcome codes."""
    return validate_resource(load_data_file(CALCINOSIS_TYPE_CODESYSTEM))
