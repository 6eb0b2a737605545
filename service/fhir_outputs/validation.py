"""FHIR R4 validation of every resource the service returns.

`fhir.resources.R4B` checks structure, cardinality and primitive formats but not which resource
types a Reference may point at, so the declared targets of each element (the models carry them as
``enum_reference_types``) are checked here as well; nor does it read a narrative's XHTML, so the
narrative is checked against the R4 rules here too (well-formed, basic elements only, some text),
and so is CarePlan's cpl-3 (an activity is a reference or a detail, not both). A failure is a defect of the service and is
raised as `OutputValidationError`, never returned to the caller as if it were valid.

The test suite runs every kind of output through here; at runtime the builders' outputs go
through it only when the `VALIDATE_OUTPUTS` setting is on (`validated_if`).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.reference import Reference
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError

from .errors import OutputValidationError
from .narrative import narrative_problems

_TYPED_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


def validated_if(validate: bool, resource: dict[str, Any],
                 known_types: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`resource` validated (see `validate_resource`) when `validate` is on (the `VALIDATE_OUTPUTS`
    setting), else as built: the builders write valid R4 by construction and the tests check it."""
    return validate_resource(resource, known_types) if validate else resource


def validate_resource(resource: Mapping[str, Any], known_types: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Validate one resource as R4 and return its canonical JSON dict (None and empty left out).

    `known_types` maps reference strings (e.g. our own ``urn:uuid:...`` fullUrls) to the type of
    resource they point at, for references whose string does not say it.
    """
    resource_type = resource.get("resourceType")
    where = f"{resource_type}/{resource.get('id')}" if resource.get("id") else str(resource_type)
    try:
        model_class = get_fhir_model_class(str(resource_type))
    except (KeyError, ValueError) as error:
        raise OutputValidationError(f"not an R4 resource type: {error}", location=where) from error
    try:
        model = model_class.model_validate(dict(resource))
    except ValidationError as error:
        raise OutputValidationError(_describe(error), location=where) from error
    check_reference_targets(model, where, known_types or {})
    check_invariants(resource, where)
    return model.model_dump(mode="json", exclude_none=True)


def check_invariants(resource: Mapping[str, Any], where: str) -> None:
    """Raise for the R4 invariants the models do not check and the outputs could break: txt-1 and
    txt-2 (the narrative) and cpl-3 (a CarePlan activity with both a reference and a detail)."""
    if resource.get("text") is not None:
        problems = narrative_problems(resource["text"])
        if problems:
            raise OutputValidationError("; ".join(problems), location=f"{where}.text")
    if resource.get("resourceType") == "CarePlan":
        for index, activity in enumerate(resource.get("activity") or ()):
            if isinstance(activity, Mapping) and activity.get("reference") and activity.get("detail"):
                raise OutputValidationError("an activity provides a reference or a detail, not both (cpl-3)",
                                            location=f"{where}.activity[{index}]")


def check_reference_targets(model: FHIRAbstractModel, path: str, known_types: Mapping[str, str]) -> None:
    """Raise when a Reference points at a resource type its element does not allow in R4."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            item_path = f"{path}.{name}[{index}]" if isinstance(value, list) else f"{path}.{name}"
            if isinstance(item, Reference):
                allowed = (field.json_schema_extra or {}).get("enum_reference_types") or ["Resource"]
                _check_one_reference(item, allowed, item_path, known_types)
            if isinstance(item, FHIRAbstractModel):
                check_reference_targets(item, item_path, known_types)


def _check_one_reference(reference: Reference, allowed: list[str], path: str,
                         known_types: Mapping[str, str]) -> None:
    if "Resource" in allowed:
        return
    target = reference_target_type(reference.reference, reference.type, known_types)
    if target is None:
        raise OutputValidationError(
            f"reference {reference.reference!r} does not say what it points at; allowed: {', '.join(allowed)}",
            location=path)
    if target not in allowed:
        raise OutputValidationError(
            f"reference to a {target} is not allowed here in R4; allowed: {', '.join(allowed)}", location=path)


def reference_target_type(reference: str | None, declared_type: str | None,
                          known_types: Mapping[str, str]) -> str | None:
    """The resource type a reference points at, when the reference, its type or the bundle says it."""
    if declared_type:
        return declared_type.rsplit("/", 1)[-1]
    if reference is None:
        return None
    if reference in known_types:
        return known_types[reference]
    match = _TYPED_REFERENCE.search(reference)
    return match.group(1) if match else None


def _describe(error: ValidationError) -> str:
    parts = []
    for detail in error.errors():
        location = ".".join(str(step) for step in detail.get("loc", ()))
        parts.append(f"{location}: {detail.get('msg')}" if location else str(detail.get("msg")))
    return "; ".join(parts) or str(error)
