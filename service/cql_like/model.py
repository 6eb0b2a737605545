"""The facts model (what `using <Model>` means), loaded from a JSON data file.

It tells the compiler which record types can be retrieved, which fields they
have and of what type, and which field a retrieve filters codes on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import types as T


@dataclass(frozen=True)
class ModelType:
    """A retrievable record type: its fields with their types, and the field a retrieve filters codes on.

    `fhir_names` maps a FHIR element path (`valueQuantity`, `clinicalStatus.coding`) to the facts field
    that carries it, so an author who writes the FHIR name is pointed at the field.
    """
    name: str
    fields: Mapping[str, T.CqlType]
    primary_code_path: str | None = None
    fhir_names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    """What `using <Model> version` provides: model name and version, the patient type and the record types."""
    model: str
    version: str
    patient_type: str
    types: Mapping[str, ModelType]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelInfo":
        """Build from the JSON form (field types as text such as 'List<Code>'); a missing version is ''."""
        types = {}
        for name, spec in data["types"].items():
            fields = {name_: parse_type_name(text) for name_, text in spec.get("fields", {}).items()}
            types[name] = ModelType(name, fields, spec.get("primaryCodePath"), dict(spec.get("fhirNames", {})))
        return cls(data["model"], data.get("version", ""), data.get("patientType", "Patient"), types)

    def record_type(self, name: str) -> T.CqlType:
        """The CQL type of a model record type name."""
        return T.CqlType(name)


def load_model_info(path: str | Path) -> ModelInfo:
    """Read a model JSON file (see service/knowledge/model.json for the format)."""
    with open(path, encoding="utf-8") as handle:
        return ModelInfo.from_dict(json.load(handle))


_GENERIC = re.compile(r"^(List|Interval)<(.+)>$")


def parse_type_name(text: str) -> T.CqlType:
    """'Interval<Quantity>' -> IntervalType(QUANTITY); unknown names are model types."""
    text = text.strip()
    if text.startswith("System."):
        text = text[len("System."):]
    match = _GENERIC.match(text)
    if match:
        inner = parse_type_name(match.group(2))
        return T.list_of(inner) if match.group(1) == "List" else T.interval_of(inner)
    return T.SYSTEM_TYPES.get(text) or T.CqlType(text)
