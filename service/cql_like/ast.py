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
    line: int = 0
    column: int = 0


# ---- type specifiers -------------------------------------------------------

@dataclass
class NamedTypeSpec(Node):
    name: str
    namespace: str | None = None


@dataclass
class ListTypeSpec(Node):
    element: Node


@dataclass
class IntervalTypeSpec(Node):
    point: Node


@dataclass
class TupleTypeSpec(Node):
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
    name: str


@dataclass
class Call(Node):
    name: str
    args: list[Node]


@dataclass
class Member(Node):
    target: Node
    name: str


@dataclass
class Indexer(Node):
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
    op: str
    left: Node
    right: Node


@dataclass
class Between(Node):
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
    operand: Node
    unit: str


@dataclass
class If(Node):
    condition: Node
    then: Node
    otherwise: Node


@dataclass
class Case(Node):
    comparand: Node | None
    items: list[tuple[Node, Node]]
    otherwise: Node


@dataclass
class Retrieve(Node):
    type_name: str
    terminology: str | None = None
    terminology_line: int = 0
    terminology_column: int = 0


@dataclass
class WithClause(Node):
    kind: str  # with | without
    source: Node
    alias: str
    condition: Node


@dataclass
class SortItem(Node):
    expression: Node | None
    descending: bool = False


@dataclass
class Query(Node):
    source: Node
    alias: str
    withs: list[WithClause] = field(default_factory=list)
    where: Node | None = None
    return_: Node | None = None
    return_all: bool = False
    sort: list[SortItem] | None = None


@dataclass
class IntervalSelector(Node):
    low: Node
    high: Node
    low_closed: bool
    high_closed: bool


@dataclass
class TupleSelector(Node):
    elements: list[tuple[str, Node]]


@dataclass
class ListSelector(Node):
    element_type: Node | None
    items: list[Node]


# ---- library declarations --------------------------------------------------

@dataclass
class UsingDef(Node):
    model: str
    version: str | None = None


@dataclass
class CodeSystemDef(Node):
    name: str
    url: str
    version: str | None = None


@dataclass
class ValueSetDef(Node):
    name: str
    url: str
    version: str | None = None


@dataclass
class CodeDef(Node):
    name: str
    code: str
    system: str
    display: str | None = None


@dataclass
class ParameterDef(Node):
    name: str
    type_spec: Node | None
    default: Node | None


@dataclass
class ContextDef(Node):
    name: str


@dataclass
class ExpressionDef(Node):
    name: str
    expression: Node


@dataclass
class FunctionDef(Node):
    name: str
    operands: list[tuple[str, Node]]
    returns: Node | None
    body: Node


@dataclass
class LibraryNode(Node):
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
