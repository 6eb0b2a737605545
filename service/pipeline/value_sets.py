"""The value sets the rule library evaluates, read once by the engine's own loader.

Whoever else needs to know which codes a value set holds (the CDS hooks' "same test" grouping)
reads them here, so it sees the same expansion as the rules: listed concepts, `expansion.contains`,
is-a filters and excludes alike.
"""

from __future__ import annotations

from pathlib import Path

from ..cql_like.valuesets import ValueSet, load_valueset_dir

__all__ = ["ValueSet", "read_value_sets"]


def read_value_sets(directory: str | Path) -> tuple[ValueSet, ...]:
    """Every ValueSet of `directory`, expanded as the engine expands it, in url order.

    Raises the engine's CqlValueSetError for a definition it cannot honour, as compiling the library would.
    """
    found = load_valueset_dir(directory)
    return tuple(found[url] for url in sorted(found))
