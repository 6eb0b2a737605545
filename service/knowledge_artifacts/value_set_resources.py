"""The value sets the engine reads, published as they are, with `$expand` and `$validate-code`
answered by the engine's own expansion (`pipeline.value_sets`), so a terminology reviewer sees
exactly what the rules match.

An expansion lists every code the definition names (listed concepts and `expansion.contains`,
less the excluded ones). Membership also reaches below an ICD-10-CM is-a filter, which no finite
list can show: each such filter is stated as an expansion `parameter` (`filter`), and
`$validate-code` answers for codes below it as the rules do.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ..pipeline.value_sets import ValueSet, read_value_sets


@dataclass(frozen=True, slots=True)
class PublishedValueSet:
    """One value set file: the resource as written, and the engine's expansion of it."""

    resource: Mapping[str, Any]
    engine: ValueSet

    @property
    def id(self) -> str:
        return str(self.resource.get("id"))

    @property
    def url(self) -> str:
        return self.engine.url


def read_published_value_sets(directory: str | Path) -> tuple[PublishedValueSet, ...]:
    """Every ValueSet file of `directory` beside the engine's expansion of it, in url order."""
    engine = {valueset.url: valueset for valueset in read_value_sets(directory)}
    published = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # the engine's loader skips it too
        if isinstance(resource, dict) and resource.get("url") in engine and resource.get("resourceType") == "ValueSet":
            published.append(PublishedValueSet(resource, engine[resource["url"]]))
    return tuple(sorted(published, key=lambda item: item.url))


def expansion(published: PublishedValueSet, *, timestamp: datetime | None = None) -> dict[str, Any]:
    """The ValueSet with `expansion` set to what the engine matches (see the module docstring)."""
    resource = {key: value for key, value in published.resource.items() if key != "expansion"}
    contains = [_contains(code) for code in sorted(published.engine.codes, key=lambda c: (c.system or "", c.code))]
    parameters = [{"name": "filter", "valueString": text} for text in filter_texts(published.engine)]
    moment = timestamp or datetime.now(timezone.utc)
    block: dict[str, Any] = {"identifier": f"urn:uuid:{_expansion_id(published)}",
                             "timestamp": moment.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
                             "total": len(contains)}
    if parameters:
        block["parameter"] = parameters
    if contains:
        block["contains"] = contains
    resource["expansion"] = block
    return resource


def filter_texts(engine: ValueSet) -> list[str]:
    """'http://hl7.org/fhir/sid/icd-10-cm is-a M32', one per is-a filter, excludes said as such."""
    texts = [f"{system} is-a {code}" for system, code in sorted(engine.include.prefixes)]
    texts += [f"{system} is-a {first}-{last}" for system, first, last in sorted(engine.include.blocks)]
    texts += [f"excluding {system} is-a {code}" for system, code in sorted(engine.exclude.prefixes)]
    texts += [f"excluding {system} is-a {first}-{last}" for system, first, last in sorted(engine.exclude.blocks)]
    return texts


def validate_code(published: PublishedValueSet, system: str | None, code: str,
                  display: str | None = None) -> dict[str, Any]:
    """The R4 `$validate-code` answer (a Parameters resource): `result`, and a `message` saying why."""
    member = published.engine.contains(system, code) if system else published.engine.contains_code_text(code)
    listed = next((c for c in published.engine.codes if c.code == code and (system is None or c.system == system)),
                  None)
    where = f"{system}|{code}" if system else code
    if member:
        how = "listed in" if listed is not None else "below an is-a filter of"
        message = f"{where} is {how} {published.url}"
    else:
        message = f"{where} is not in {published.url}"
    parameters: list[dict[str, Any]] = [{"name": "result", "valueBoolean": member},
                                        {"name": "message", "valueString": message}]
    if member and listed is not None and listed.display:
        parameters.append({"name": "display", "valueString": listed.display})
        if display and display.strip().lower() != listed.display.strip().lower():
            parameters[1]["valueString"] += f" (display given {display!r} differs from {listed.display!r})"
    return {"resourceType": "Parameters", "parameter": parameters}


def _contains(code: Any) -> dict[str, Any]:
    entry = {"system": code.system, "code": code.code}
    if code.display:
        entry["display"] = code.display
    return {key: value for key, value in entry.items() if value}


def _expansion_id(published: PublishedValueSet) -> str:
    listed = sorted(f"{c.system}|{c.code}" for c in published.engine.codes)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "\x1f".join([published.url, *listed, *filter_texts(published.engine)])))
