"""The published knowledge of one app: Library, PlanDefinition and ValueSets, built once from the
files its Assessor compiled (`RULE_LIBRARY`, `VALUESET_DIR`, `BIBLIOGRAPHY`) and validated as R4."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Mapping

from ..bibliography import Bibliography
from ..cql_like import Library
from ..fhir_outputs.validation import validate_resource
from .library_resource import build_library_resource
from .plan_definition import build_plan_definition
from .narratives import library_narrative, plan_definition_narrative, value_set_narrative
from .value_set_resources import (PublishedValueSet, expansion, filter_texts, read_published_value_sets,
                                  validate_code)

LIBRARY = "Library"
PLAN_DEFINITION = "PlanDefinition"
VALUE_SET = "ValueSet"
RESOURCE_TYPES = (LIBRARY, PLAN_DEFINITION, VALUE_SET)


class KnowledgeArtifacts:
    """Every published artifact by type and id, searchable by canonical url; read-only.

    The files are read when this is built (the value sets; the library's text is the compiled
    library's own), and the resources are written and validated on first use, once: an app that
    never serves them does not pay for them.
    """

    def __init__(self, library: Library, *, valueset_dir: str | Path, bibliography: Bibliography,
                 bibliography_path: str | Path) -> None:
        self._library = library
        self._bibliography = bibliography
        self._keys = publication_keys(bibliography_path)
        self.value_sets: dict[str, PublishedValueSet] = {
            published.id: published for published in read_published_value_sets(valueset_dir)}
        self._lock = threading.Lock()
        self._built: dict[str, dict[str, dict[str, Any]]] | None = None

    @property
    def _resources(self) -> dict[str, dict[str, dict[str, Any]]]:
        with self._lock:
            if self._built is None:
                self._built = self._build()
            return self._built

    def _build(self) -> dict[str, dict[str, dict[str, Any]]]:
        library = build_library_resource(
            self._library, valueset_urls=[published.url for published in self.value_sets.values()],
            bibliography=self._bibliography, publication_keys=self._keys)
        library = validate_resource(_with_text(library, library_narrative(library)))
        plan = build_plan_definition(self._library, bibliography=self._bibliography, publication_keys=self._keys)
        plan = validate_resource(_with_text(plan, plan_definition_narrative(plan)))
        return {
            LIBRARY: {library["id"]: library},
            PLAN_DEFINITION: {plan["id"]: plan},
            VALUE_SET: {vs_id: validate_resource(_value_set_with_text(published))
                        for vs_id, published in self.value_sets.items()},
        }

    @property
    def library(self) -> dict[str, Any]:
        """The Library resource."""
        (resource,) = self._resources[LIBRARY].values()
        return resource

    @property
    def plan_definition(self) -> dict[str, Any]:
        """The PlanDefinition resource."""
        (resource,) = self._resources[PLAN_DEFINITION].values()
        return resource

    @classmethod
    def from_settings(cls, library: Library, bibliography: Bibliography,
                      settings: Mapping[str, Any]) -> "KnowledgeArtifacts":
        """The artifacts of the files an Assessor built from `settings` was compiled from."""
        return cls(library, valueset_dir=settings["VALUESET_DIR"], bibliography=bibliography,
                   bibliography_path=settings["BIBLIOGRAPHY"])

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The resource of that type and id, or None."""
        return self._resources.get(resource_type, {}).get(resource_id)

    def search(self, resource_type: str, url: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
        """Resources of a type, all of them or those whose canonical url (and version) match.

        `url` may carry its version after a `|`, as canonical references do.
        """
        if url and "|" in url:
            url, version = url.split("|", 1)
        return [resource for resource in self._resources.get(resource_type, {}).values()
                if (url is None or resource.get("url") == url)
                and (not version or resource.get("version") == version)]

    def value_set(self, resource_id: str | None = None, url: str | None = None) -> PublishedValueSet | None:
        """A published value set by id or by canonical url (a `|version` suffix is ignored)."""
        if resource_id is not None:
            return self.value_sets.get(resource_id)
        wanted = (url or "").split("|", 1)[0]
        return next((vs for vs in self.value_sets.values() if vs.url == wanted), None)

    def expand(self, published: PublishedValueSet) -> dict[str, Any]:
        return validate_resource(_with_text(expansion(published), value_set_text(published)))

    def validate_code(self, published: PublishedValueSet, system: str | None, code: str,
                      display: str | None = None) -> dict[str, Any]:
        return validate_resource(validate_code(published, system, code, display))


def _with_text(resource: dict[str, Any], text: dict[str, str]) -> dict[str, Any]:
    """The resource with its generated narrative placed after `id`, where R4 JSON has it."""
    ordered = {key: value for key, value in resource.items() if key in ("resourceType", "id")}
    ordered["text"] = text
    ordered.update((key, value) for key, value in resource.items() if key not in ordered)
    return ordered


def value_set_text(published: PublishedValueSet) -> dict[str, str]:
    listed = sorted((c.system or "", c.code, c.display or "") for c in published.engine.codes)
    return value_set_narrative(dict(published.resource), listed, filter_texts(published.engine))


def _value_set_with_text(published: PublishedValueSet) -> dict[str, Any]:
    """The value set as its file has it, with a generated narrative when the file has none."""
    resource = dict(published.resource)
    return resource if resource.get("text") else _with_text(resource, value_set_text(published))


def publication_keys(path: str | Path) -> list[str]:
    """The bibliography's publication keys in file order: the publications the library cites."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    return [str(entry["key"]) for entry in document.get("entries") or () if isinstance(entry, dict) and entry.get("key")]
