"""Syntax tree of a cql_like library.

Plain dataclasses with the 1-based line/column of their first token, so the
compiler can report errors at the right place; `dump()` renders a stable text
form used by the parser's golden tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(kw_only=True)
class Node:
    """Base of every tree node: carries the 1-based position of its first token for error messages."""
    line: int = 0
    column: int = 0


# ---- type specifiers -------------------------------------------------------

@dataclass
class NamedTypeSpec(Node):
    """A named type such as `Decimal` or `Facts.Observation` (namespace is the model prefix, if any)."""
    name: str
    namespace: str | None = None


@dataclass
class ListTypeSpec(Node):
    """`List<T>` in a type specifier."""
    element: Node


@dataclass
class IntervalTypeSpec(Node):
    """`Interval<T>` in a type specifier."""
    point: Node


@dataclass
class TupleTypeSpec(Node):
    """`Tuple { name Type, ... }` in a type specifier, elements in source order."""
    elements: list[tuple[str, Node]]


# ---- expressions -----------------------------------------------------------

@dataclass
class Literal(Node):
    """kind: Boolean, Integer, Decimal, String, Quantity, Date, DateTime, Null.

    value keeps the source spelling (e.g. '2.50', or (number, unit) for Quantity)
    so the compiler decides the runtime representation in one place.
    """

    kind: str
    value: Any


@dataclass
class NameRef(Node):
    """An identifier: a define, parameter, operand, query alias, code or value set, resolved by the compiler."""
    name: str


@dataclass
class Call(Node):
    """A function call by name; the compiler resolves it to a user function or a built-in."""
    name: str
    args: list[Node]


@dataclass
class Member(Node):
    """Property access `target.name`."""
    target: Node
    name: str


@dataclass
class Indexer(Node):
    """List or string indexing `target[index]`."""
    target: Node
    index: Node


@dataclass
class Unary(Node):
    """op: not, exists, negate, plus, distinct, flatten, is null, is not null,
    is true, is false, is not true, is not false, start, end, `<component> from`."""

    op: str
    operand: Node


@dataclass
class Binary(Node):
    """A binary operator; op is the CQL spelling (e.g. `and`, `<=`, `included in`)."""
    op: str
    left: Node
    right: Node


@dataclass
class Between(Node):
    """`operand between low and high` (inclusive on both ends, as in CQL)."""
    operand: Node
    low: Node
    high: Node


@dataclass
class DurationBetween(Node):
    """`years between a and b` (whole periods) or `difference in years between` (boundaries)."""

    precision: str
    low: Node
    high: Node
    difference: bool = False


@dataclass
class Convert(Node):
    """`convert operand to 'unit'`: UCUM unit conversion of a quantity."""
    operand: Node
    unit: str


@dataclass
class If(Node):
    """`if condition then then else otherwise`."""
    condition: Node
    then: Node
    otherwise: Node


@dataclass
class Case(Node):
    """`case [comparand] when ... then ... else otherwise end`; comparand is None for the boolean form."""
    comparand: Node | None
    items: list[tuple[Node, Node]]
    otherwise: Node


@dataclass
class Retrieve(Node):
    """`[Type: terminology]` retrieve; terminology names a value set or code, with its own position for errors."""
    type_name: str
    terminology: str | None = None
    terminology_line: int = 0
    terminology_column: int = 0


@dataclass
class WithClause(Node):
    """A `with`/`without` clause of a query: a semi-join on `condition` over `source` bound as `alias`."""
    kind: str  # with | without
    source: Node
    alias: str
    condition: Node


@dataclass
class SortItem(Node):
    """One `sort by` item; expression is None for `sort asc|desc` over the query result itself."""
    expression: Node | None
    descending: bool = False


@dataclass
class Query(Node):
    """A single-source query; return_all keeps duplicates (`return all`), sort None means unsorted."""
    source: Node
    alias: str
    withs: list[WithClause] = field(default_factory=list)
    where: Node | None = None
    return_: Node | None = None
    return_all: bool = False
    sort: list[SortItem] | None = None


@dataclass
class IntervalSelector(Node):
    """`Interval[low, high]` with its open/closed ends."""
    low: Node
    high: Node
    low_closed: bool
    high_closed: bool


@dataclass
class TupleSelector(Node):
    """`Tuple { name: value, ... }` selector, elements in source order."""
    elements: list[tuple[str, Node]]


@dataclass
class ListSelector(Node):
    """`List<T> { ... }` or `{ ... }`; element_type is None when not declared."""
    element_type: Node | None
    items: list[Node]


# ---- library declarations --------------------------------------------------

@dataclass
class UsingDef(Node):
    """`using Facts version '1.0.0'` declaration."""
    model: str
    version: str | None = None


@dataclass
class CodeSystemDef(Node):
    """`codesystem Name: 'url'` declaration."""
    name: str
    url: str
    version: str | None = None


@dataclass
class ValueSetDef(Node):
    """`valueset Name: 'url'` declaration."""
    name: str
    url: str
    version: str | None = None


@dataclass
class CodeDef(Node):
    """`code Name: 'code' from System display '...'` declaration; system is the codesystem name."""
    name: str
    code: str
    system: str
    display: str | None = None


@dataclass
class ParameterDef(Node):
    """`parameter Name [Type] [default expr]`; a value supplied at evaluation overrides the default."""
    name: str
    type_spec: Node | None
    default: Node | None


@dataclass
class ContextDef(Node):
    """`context Patient` declaration."""
    name: str


@dataclass
class ExpressionDef(Node):
    """`define Name: expression` statement."""
    name: str
    expression: Node


@dataclass
class FunctionDef(Node):
    """`define function Name(operand Type, ...) returns Type: body` statement."""
    name: str
    operands: list[tuple[str, Node]]
    returns: Node | None
    body: Node


@dataclass
class LibraryNode(Node):
    """Root of a parsed library: header, declarations and statements in source order."""
    name: str | None = None
    version: str | None = None
    usings: list[UsingDef] = field(default_factory=list)
    codesystems: list[CodeSystemDef] = field(default_factory=list)
    valuesets: list[ValueSetDef] = field(default_factory=list)
    codes: list[CodeDef] = field(default_factory=list)
    parameters: list[ParameterDef] = field(default_factory=list)
    contexts: list[ContextDef] = field(default_factory=list)
    statements: list[Node] = field(default_factory=list)


# Deepest expression nesting a library may have: more is a syntax error ("expression nested too deeply").
# 2,000 chained binary terms or 500 nested calls fit; the checker and evaluator of libraries nested
# deeper than SHALLOW_NESTING run on a worker thread with a large stack (see deep.py).
MAX_NESTING = 3000
SHALLOW_NESTING = 80


def nesting_depth(root: Node) -> tuple[int, Node]:
    """(deepest nesting of nodes below `root`, the node at that depth), walked without recursion."""
    best, deepest = 0, root
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Node):
            if depth > best:
                best, deepest = depth, value
            for f in fields(value):
                child = getattr(value, f.name)
                if isinstance(child, (Node, list, tuple)):
                    stack.append((child, depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth) for item in value if isinstance(item, (Node, list, tuple)))
    return best, deepest


def dump(node: Any, indent: int = 0) -> str:
    """Stable, indented text rendering of a tree (positions as @line:col)."""
    pad = "  " * indent
    if isinstance(node, Node):
        head = f"{pad}{type(node).__name__} @{node.line}:{node.column}"
        scalars, children = [], []
        for f in fields(node):
            if f.name in ("line", "column") or f.name.startswith("terminology_"):
                continue
            value = getattr(node, f.name)
            if _has_nodes(value):
                children.append((f.name, value))
            elif value is not None and value != []:
                scalars.append(f"{f.name}={value!r}")
        lines = [head + (" " + " ".join(scalars) if scalars else "")]
        for name, value in children:
            lines.append(f"{pad}  .{name}")
            lines.append(dump(value, indent + 2))
        return "\n".join(lines)
    if isinstance(node, (list, tuple)):
        return "\n".join(dump(item, indent) for item in node)
    return f"{pad}{node!r}"


def _has_nodes(value: Any) -> bool:
    if isinstance(value, Node):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_nodes(v) for v in value)
    return False
