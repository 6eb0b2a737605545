"""Every production of the engine's grammar is mapped to its CQL 1.5 rule in the engine README."""

from __future__ import annotations

import re
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "service" / "cql_like"


def _productions() -> set[str]:
    text = (ENGINE / "grammar.lark").read_text(encoding="utf-8")
    return {m.group(1).lstrip("?!") for m in re.finditer(r"^([?!]?[a-z_]+|[A-Z_]+)(?:\.\d+)?\s*:", text, re.M)}


def _mapped() -> set[str]:
    text = (ENGINE / "README.md").read_text(encoding="utf-8")
    section = text.split("## Mapping to the CQL 1.5 grammar", 1)[1].split("\n## ", 1)[0]
    first_column = "\n".join(line.split("|")[1] for line in section.splitlines() if line.startswith("| `"))
    return set(re.findall(r"`([A-Za-z_]+)`", first_column))


def test_every_grammar_production_is_mapped_to_a_cql_rule():
    unmapped = {name for name in _productions() if name not in _mapped()}
    # Lark's own helper terminals (whitespace, digits) have no CQL counterpart worth mapping.
    unmapped -= {"WS", "DIGIT", "INT", "LINE_COMMENT"}
    assert not unmapped, f"grammar productions missing from the README mapping: {sorted(unmapped)}"
