"""The rule library as a FHIR R4 `Library` (logic-library): its CQL text, version, parameters and
data requirements, and the value sets and publications it depends on."""

from __future__ import annotations

import base64
from typing import Any, Iterable

from ..bibliography import Bibliography
from ..cql_like import Library
from .data_requirements import data_requirements, library_retrieves
from .identity import artifact_settings, canonical, computable_name, fhir_id

LIBRARY_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/library-type"
CQL_MEDIA_TYPE = "text/cql"

# CQL parameter types -> the FHIR data types R4 ParameterDefinition.type names.
_PARAMETER_TYPES = {"Quantity": "Quantity", "Integer": "integer", "Decimal": "decimal", "String": "string",
                    "Boolean": "boolean", "DateTime": "dateTime", "Date": "date"}


def library_id(library: Library) -> str:
    return fhir_id(library.name or "RuleLibrary")


def library_url(library: Library) -> str:
    return canonical("Library", library_id(library))


def cql_text(resource: dict[str, Any]) -> str:
    """The CQL text a published Library carries (its `text/cql` attachment), decoded."""
    for content in resource.get("content") or ():
        if content.get("contentType") == CQL_MEDIA_TYPE and content.get("data"):
            return base64.b64decode(content["data"]).decode("utf-8")
    raise LookupError("the Library has no text/cql content")


def build_library_resource(library: Library, *, valueset_urls: Iterable[str], bibliography: Bibliography,
                           publication_keys: Iterable[str]) -> dict[str, Any]:
    """The unvalidated Library resource for a compiled rule library (its own source text)."""
    settings = artifact_settings()
    source = library.source
    resource: dict[str, Any] = {
        "resourceType": "Library",
        "id": library_id(library),
        "url": library_url(library),
        "version": library.version or "0.0.0",
        "name": computable_name(library.name or "RuleLibrary"),
        "title": settings["library"]["title"],
        "status": "active",
        "experimental": False,
        "type": {"coding": [{"system": LIBRARY_TYPE_SYSTEM, "code": "logic-library", "display": "Logic Library"}]},
        "publisher": settings["publisher"],
        "description": settings["library"]["description"],
    }
    artifacts = [{"type": "depends-on", "resource": url} for url in sorted(set(valueset_urls))]
    artifacts += [citation for key in publication_keys if (citation := publication_artifact(bibliography, key))]
    if artifacts:
        resource["relatedArtifact"] = artifacts
    parameters = [_parameter(name, library) for name in library.parameter_types]
    if parameters:
        resource["parameter"] = parameters
    requirements = data_requirements(library_retrieves(source, library.filename),
                                     settings["facts_to_fhir_types"])
    if requirements:
        resource["dataRequirement"] = requirements
    resource["content"] = [{"contentType": CQL_MEDIA_TYPE, "title": f"{library.name}.cql",
                            "data": base64.b64encode(source.encode("utf-8")).decode("ascii")}]
    return resource


def publication_artifact(bibliography: Bibliography, key: str) -> dict[str, Any] | None:
    """A RelatedArtifact (citation) for one publication of the bibliography."""
    publication = bibliography.publication(key)
    if publication is None:
        return None
    artifact: dict[str, Any] = {"type": "citation", "label": publication.key, "display": publication.label,
                                "citation": publication.reference}
    if publication.url:
        artifact["url"] = publication.url
    return artifact


def _parameter(name: str, library: Library) -> dict[str, Any]:
    cql_type = library.parameter_types[name]
    return {"name": name, "use": "in", "min": 0, "max": "1",
            "type": _PARAMETER_TYPES.get(cql_type, "string"),
            "documentation": f"CQL parameter \"{name}\" ({cql_type}); the service passes LOOKBACK_DAYS"
                             if name == "Lookback" else f"CQL parameter \"{name}\" ({cql_type})"}
