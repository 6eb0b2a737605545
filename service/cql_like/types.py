"""Static types used by the compile-time checks.

Types are small immutable values; `ANY` stands for "not known until
evaluation" (null literals, untyped parameters) and is compatible with
everything, so the checker only reports what is certainly wrong.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CqlType:
    """A named static type (system or model); frozen so types compare and hash by value."""
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ListType(CqlType):
    """`List<element>`."""
    element: CqlType

    def __str__(self) -> str:
        return f"List<{self.element}>"


@dataclass(frozen=True)
class IntervalType(CqlType):
    """`Interval<point>`."""
    point: CqlType

    def __str__(self) -> str:
        return f"Interval<{self.point}>"


@dataclass(frozen=True)
class TupleType(CqlType):
    """`Tuple { ... }`, elements kept in declaration order."""
    elements: tuple[tuple[str, CqlType], ...]

    def element(self, name: str) -> CqlType | None:
        """The type of element `name`, or None when the tuple has no such element."""
        for key, value in self.elements:
            if key == name:
                return value
        return None

    def __str__(self) -> str:
        return "Tuple { " + ", ".join(f"{k} {v}" for k, v in self.elements) + " }"


ANY = CqlType("Any")
BOOLEAN = CqlType("Boolean")
INTEGER = CqlType("Integer")
DECIMAL = CqlType("Decimal")
STRING = CqlType("String")
QUANTITY = CqlType("Quantity")
DATE = CqlType("Date")
DATETIME = CqlType("DateTime")
CODE = CqlType("Code")
CONCEPT = CqlType("Concept")
VALUESET = CqlType("ValueSet")

SYSTEM_TYPES = {t.name: t for t in (ANY, BOOLEAN, INTEGER, DECIMAL, STRING, QUANTITY, DATE, DATETIME, CODE,
                                    CONCEPT, VALUESET)}


def list_of(element: CqlType) -> ListType:
    """The type `List<element>`."""
    return ListType("List", element)


def interval_of(point: CqlType) -> IntervalType:
    """The type `Interval<point>`."""
    return IntervalType("Interval", point)


def tuple_of(elements: dict[str, CqlType] | tuple[tuple[str, CqlType], ...]) -> TupleType:
    """The type `Tuple { ... }` from names and types, order kept."""
    items = tuple(elements.items()) if isinstance(elements, dict) else tuple(elements)
    return TupleType("Tuple", items)


NUMERIC = (INTEGER, DECIMAL)
ORDERED = (INTEGER, DECIMAL, QUANTITY, STRING, DATE, DATETIME)


def is_any(t: CqlType) -> bool:
    """True when the type is not known until evaluation."""
    return t == ANY


def is_list(t: CqlType) -> bool:
    """True for any `List<...>` type."""
    return isinstance(t, ListType)


def is_interval(t: CqlType) -> bool:
    """True for any `Interval<...>` type."""
    return isinstance(t, IntervalType)


def assignable(actual: CqlType, expected: CqlType) -> bool:
    """Can a value of `actual` be passed where `expected` is declared (with CQL's implicit conversions)?

    Integer/Decimal are not Quantities here: CQL converts them only inside Quantity `*` and `/`,
    which the arithmetic check handles, never for parameters, operands or list elements.
    """
    if actual == ANY or expected == ANY or actual == expected:
        return True
    if expected == DECIMAL and actual == INTEGER:
        return True
    if expected == DATETIME and actual == DATE:
        return True
    if expected == CONCEPT and actual == CODE:
        return True
    if isinstance(expected, ListType) and isinstance(actual, ListType):
        return assignable(actual.element, expected.element)
    if isinstance(expected, IntervalType) and isinstance(actual, IntervalType):
        return assignable(actual.point, expected.point)
    if isinstance(expected, TupleType) and isinstance(actual, TupleType):
        return all(assignable(actual.element(k) or ANY, v) for k, v in expected.elements)
    if expected.name == "Tuple" and isinstance(actual, TupleType):
        return True
    return False


def common_type(a: CqlType, b: CqlType) -> CqlType | None:
    """The type both operands are converted to for comparison/equality, or None if there is none."""
    if a == ANY:
        return b
    if b == ANY or a == b:
        return a
    if {a, b} == {INTEGER, DECIMAL}:
        return DECIMAL
    if {a, b} == {DATE, DATETIME}:
        return DATETIME
    if {a, b} == {CODE, CONCEPT}:
        return CONCEPT
    if isinstance(a, ListType) and isinstance(b, ListType):
        inner = common_type(a.element, b.element)
        return list_of(inner) if inner is not None else None
    if isinstance(a, IntervalType) and isinstance(b, IntervalType):
        inner = common_type(a.point, b.point)
        return interval_of(inner) if inner is not None else None
    if isinstance(a, TupleType) and isinstance(b, TupleType):
        return a
    return None
