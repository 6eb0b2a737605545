"""Runtime values of the cql_like language.

CQL's system types map onto Python values so that data providers can build
facts without knowing the engine's internals:

    Boolean -> bool          Integer  -> int        Decimal -> decimal.Decimal
    String  -> str           Date     -> datetime.date
    DateTime -> datetime.datetime (timezone-aware)  Quantity -> quantity.Quantity
    List    -> list          Tuple    -> CqlTuple   Interval -> Interval
    Code    -> Code          Concept  -> Concept    model types -> Record
    null    -> None
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping


@dataclass(frozen=True, slots=True)
class Code:
    """A terminology code (CQL System.Code): equality is system + code."""

    code: str
    system: str | None = None
    display: str | None = field(default=None, compare=False)
    version: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Concept:
    """A set of codes meaning one thing (CQL System.Concept)."""

    codes: tuple[Code, ...]
    display: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Interval:
    """A CQL interval; either bound may be None (unknown or open-ended)."""

    low: Any
    high: Any
    low_closed: bool = True
    high_closed: bool = True


class CqlTuple(Mapping[str, Any]):
    """An immutable CQL Tuple: ordered named elements. Not subclassed: the engine tests
    `type(value) is CqlTuple`, as `isinstance` goes through Mapping's ABC machinery, and the
    source inline.py generates reads `_elements` directly (one element read per row of a query)."""

    __slots__ = ("_elements",)

    def __init__(self, elements: Mapping[str, Any]) -> None:
        self._elements = dict(elements)

    def __getitem__(self, key: str) -> Any:
        return self._elements[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._elements)

    def __len__(self) -> int:
        return len(self._elements)

    # The dict's own methods: Mapping's generic ones go through __getitem__ element by element,
    # and evaluation reads tuple elements (and walks them for evidence) very often.
    def __contains__(self, key: object) -> bool:
        return key in self._elements

    def get(self, key: str, default: Any = None) -> Any:
        """The element's value, or `default` when the tuple has no such element."""
        return self._elements.get(key, default)

    def keys(self):
        """The element names, in order."""
        return self._elements.keys()

    def values(self):
        """The element values, in order."""
        return self._elements.values()

    def items(self):
        """(name, value) pairs, in order."""
        return self._elements.items()

    def __eq__(self, other: object) -> bool:
        if type(other) is CqlTuple:
            return self._elements == other._elements
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._elements.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v!r}" for k, v in self._elements.items())
        return f"Tuple {{ {inner} }}"


class Record:
    """An instance of a model type (Observation, Condition, ...) from a data provider.

    `source` is the reference the caller can resolve ("Observation/123" or a
    "urn:uuid:..." fullUrl); the engine collects it as evidence whenever the
    record contributes to a define's value.
    """

    __slots__ = ("type_name", "fields", "source")

    def __init__(self, type_name: str, fields: Mapping[str, Any], source: str | None = None) -> None:
        self.type_name = type_name
        self.fields = dict(fields)
        self.source = source

    def get(self, name: str) -> Any:
        """The field's value, or None (CQL null) when the record has no such field."""
        return self.fields.get(name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return (self.type_name, self.source, self.fields) == (other.type_name, other.source, other.fields)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.type_name, self.source))

    def __repr__(self) -> str:
        return f"Record({self.type_name!r}, source={self.source!r})"
