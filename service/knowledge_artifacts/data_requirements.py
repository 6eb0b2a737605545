"""What a rule library reads, from its own parse tree: every retrieve, by type and value set.

Read from the library's text with the engine's parser, so `Library.dataRequirement` lists exactly the
retrieves the rules make. Facts-model types that are not FHIR resources (the service's `DataGap`
records: searches read only in part) are not data a client sends, so they are left out.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any, Iterator, Mapping

from ..cql_like import ast
from ..cql_like.parser import parse


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Retrieve:
    """One `[Type]` or `[Type: "Value Set"]` of the library, the value set by its url."""

    type_name: str
    valueset_url: str | None = None


def _nodes(root: Any) -> Iterator[Any]:
    """Every tree node below `root`, walked without recursion."""
    stack = [root]
    while stack:
        value = stack.pop()
        if isinstance(value, ast.Node):
            yield value
            stack.extend(getattr(value, f.name) for f in dataclasses.fields(value))
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())


@lru_cache(maxsize=4)
def library_retrieves(source: str, filename: str = "<library>") -> tuple[Retrieve, ...]:
    """The distinct retrieves of a library, sorted; a terminology that names a value set gives its url.

    The library's context (`context Patient`) counts as a retrieve of its type. Parsing a large
    library takes seconds, so the answer is kept per text (and process).
    """
    tree = parse(source, filename)
    valuesets = {definition.name: definition.url for definition in tree.valuesets}
    found = {Retrieve(node.type_name, valuesets.get(node.terminology) if node.terminology else None)
             for node in _nodes(tree) if isinstance(node, ast.Retrieve)}
    # `context Patient` reads the patient's own record (age, sex) without a retrieve.
    found |= {Retrieve(context.name) for context in tree.contexts}
    return tuple(sorted(found, key=lambda r: (r.type_name, r.valueset_url or "")))


def data_requirements(retrieves: tuple[Retrieve, ...], fhir_types: Mapping[str, str]) -> list[dict[str, Any]]:
    """R4 DataRequirements, one per retrieve of a FHIR type: its value set (if any) as the code filter.

    Code filters of one DataRequirement all apply at once, so each value set gets a requirement of its
    own; a retrieve without terminology is the whole type.
    """
    requirements = []
    for retrieve in retrieves:
        fhir_type = fhir_types.get(retrieve.type_name)
        if fhir_type is None:
            continue
        requirement: dict[str, Any] = {"type": fhir_type}
        if retrieve.valueset_url:
            requirement["codeFilter"] = [{"path": "code", "valueSet": retrieve.valueset_url}]
        requirements.append(requirement)
    return requirements
