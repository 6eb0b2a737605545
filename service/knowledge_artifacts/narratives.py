"""Generated narratives of the published artifacts, so an EHR or a FHIR browser that renders `text`
shows what each holds: the library's identity and reads, the plan's actions and when they apply, a
value set's codes and filters."""

from __future__ import annotations

from typing import Any

from ..fhir_outputs.narrative import field_table, narrative, paragraph, table


def library_narrative(resource: dict[str, Any]) -> dict[str, str]:
    reads = sorted({requirement["type"] for requirement in resource.get("dataRequirement", ())})
    value_sets = [a for a in resource.get("relatedArtifact", ()) if a["type"] == "depends-on"]
    citations = [a["display"] for a in resource.get("relatedArtifact", ()) if a["type"] == "citation"]
    return narrative(field_table([
        ("Library", f"{resource['title']} ({resource['name']} {resource['version']})"),
        ("Logic", "CQL text (text/cql attachment)"),
        ("Reads", ", ".join(reads)),
        ("Value sets", f"{len(value_sets)} (relatedArtifact depends-on)"),
        ("Sources", citations),
    ]), paragraph(resource.get("description", "")))


def plan_definition_narrative(resource: dict[str, Any]) -> dict[str, str]:
    rows = []
    for action in resource.get("action", ()):
        conditions = [c["expression"]["expression"] for c in action.get("condition", ())]
        tests = [sub["title"] for sub in action.get("action", ())]
        rows.append((action["title"], "; ".join(conditions) or "always", ", ".join(tests)))
    return narrative(paragraph(resource.get("description", "")), table(("Action", "Applies when", "Tests"), rows))


def value_set_narrative(resource: dict[str, Any], listed: list[tuple[str, str, str]], filters: list[str]) -> dict[str, str]:
    """`listed`: (system, code, display) of the codes the engine matches by name; `filters`: its is-a filters."""
    blocks = [paragraph(f"{resource.get('title') or resource.get('name')}: {len(listed)} listed codes"
                        + (f" and {len(filters)} is-a filter(s)" if filters else "") + ".")]
    if listed:
        blocks.append(table(("System", "Code", "Display"), listed))
    if filters:
        blocks.append(table(("Filter",), [(text,) for text in filters]))
    return narrative(*blocks)
