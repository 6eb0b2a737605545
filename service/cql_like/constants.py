"""Which expressions of a checked library have one value for every evaluation.

An expression is constant when it reads nothing of the evaluation (no retrieve, no `Patient`, no
parameter, no clock: `Today()`, `Now()`, the age functions and the `<component> from` extractors,
which read the evaluation's offset) and no operand or alias bound outside it, and every define and
function it reaches is constant in the same sense. Its value (a code table, a citation, a list of
accepted names, a pattern) is then the same for every patient, holds no record and so no evidence:
codegen.py computes it once per compiled library instead of once per patient.

An expression that reads the clock or parameters but nothing of the patient's data (no retrieve,
no `Patient`, no age function, no define or function that reads them) and no operand or alias
bound outside it has one value per evaluation: `Now() - "Lookback"` in a function body or in a
query's `where` would otherwise be computed for every call and every row. Those in such a repeated
place (a function body; a query's `with`, `where`, `return` and sort keys) are `per_evaluation`,
which codegen.py computes once per evaluation when it compiles regions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from . import ast
from .checker import ROW, BuiltinTarget, CheckedLibrary, NameTarget, UserTarget

# What an expression reads of the evaluation: the patient's data, or only what is fixed for one
# evaluation (the clock, the evaluation's offset, parameters).
DATA, EVALUATION = "data", "evaluation"
_NOTHING: frozenset[str] = frozenset()
_CLOCK_FUNCTIONS = frozenset({"Today", "Now"})   # the other context functions read the patient
_SINGLE_NODES = (ast.Literal, ast.NameRef)       # a value read as it is: nothing to keep


def constant_nodes(checked: CheckedLibrary) -> frozenset[int]:
    """The ids of the expression nodes whose value does not depend on the evaluation."""
    return classify(checked)[0]


def classify(checked: CheckedLibrary) -> tuple[frozenset[int], frozenset[int]]:
    """(the constant nodes, the per-evaluation nodes: in a place evaluated repeatedly, depending on
    the clock or parameters only), as ids."""
    found = classification(checked)
    return found.constant, found.per_evaluation


@dataclass(frozen=True)
class Classification:
    """What `classification` finds, as node ids."""

    constant: frozenset[int]
    per_evaluation: frozenset[int]
    # the functions whose body reads nothing of the evaluation: their value depends on their
    # arguments only (a name's normal form, whether a text mentions a term)
    argument_only_functions: frozenset[int]


def classification(checked: CheckedLibrary) -> Classification:
    """The constant and per-evaluation nodes (see `classify`) and the functions of the arguments only."""
    analysis = _Analysis(checked)
    analysis.run()
    return Classification(frozenset(analysis.constant), frozenset(analysis.per_evaluation),
                          frozenset(key for key, reads in analysis.function_reads.items() if not reads))


class _Analysis:
    """One walk over every define and function body: per node, what it reads of the evaluation
    (DATA, EVALUATION), and which names bound outside it it reads."""

    def __init__(self, checked: CheckedLibrary) -> None:
        self.checked = checked
        self.constant: set[int] = set()
        self.per_evaluation: set[int] = set()
        self._define_reads: dict[str, frozenset[str]] = {}
        self.function_reads: dict[int, frozenset[str]] = {}
        self._repeated = False   # inside a function body or a query's per-row part

    def run(self) -> set[int]:
        for param in self.checked.parameters.values():
            if param.node.default is not None:
                self.visit(param.node.default)
        for name in self.checked.defines:
            self.define_reads_context(name)
        for checked_function in self.checked.functions.values():
            self.function_reads_context(checked_function.node)
        return self.constant

    def define_reads_context(self, name: str) -> frozenset[str]:
        done = self._define_reads.get(name)
        if done is None:
            self._define_reads[name] = frozenset({DATA})   # the checker refused cycles; this only guards the walk
            done = self._define_reads[name] = self._visit_in(False, self.checked.defines[name].node.expression)[0]
        return done

    def function_reads_context(self, node: ast.FunctionDef) -> frozenset[str]:
        done = self.function_reads.get(id(node))
        if done is None:
            self.function_reads[id(node)] = frozenset({DATA})
            done = self.function_reads[id(node)] = self._visit_in(True, node.body)[0]
        return done

    def _visit_in(self, repeated: bool, node: ast.Node) -> tuple[frozenset[str], frozenset[str]]:
        outer, self._repeated = self._repeated, repeated
        try:
            return self.visit(node)
        finally:
            self._repeated = outer

    def visit(self, node: ast.Node) -> tuple[frozenset[str], frozenset[str]]:
        """(what the node reads of the evaluation, names bound outside the node that it reads)."""
        reads, free = self._visit(node)
        if not free:
            if not reads:
                self.constant.add(id(node))
            elif (reads == {EVALUATION} and self._repeated and not isinstance(node, _SINGLE_NODES)
                  and not (isinstance(node, ast.Call) and not node.args)):
                self.per_evaluation.add(id(node))
        return reads, free

    def _children(self, nodes) -> tuple[frozenset[str], frozenset[str]]:
        reads, free = _NOTHING, _NOTHING
        for child in nodes:
            if child is None:
                continue
            child_reads, child_free = self.visit(child)
            reads, free = reads | child_reads, free | child_free
        return reads, free

    def _visit(self, node: ast.Node) -> tuple[frozenset[str], frozenset[str]]:
        target = self.checked.targets.get(id(node))
        if isinstance(node, ast.Literal):
            return _NOTHING, _NOTHING
        if isinstance(node, ast.Retrieve):
            return frozenset({DATA}), _NOTHING
        if isinstance(node, ast.NameRef):
            assert isinstance(target, NameTarget)
            if target.kind == "scope":
                return _NOTHING, frozenset({target.name})
            if target.kind == "row field":
                return _NOTHING, frozenset({ROW})
            if target.kind == "define":
                return self.define_reads_context(target.name), _NOTHING
            if target.kind == "patient":
                return frozenset({DATA}), _NOTHING
            if target.kind == "parameter":
                return frozenset({EVALUATION}), _NOTHING
            return _NOTHING, _NOTHING
        if isinstance(node, ast.Call):
            reads, free = self._children(node.args)
            if isinstance(target, UserTarget):
                reads = reads | self.function_reads_context(target.function)
            elif isinstance(target, BuiltinTarget) and target.spec.needs_context:
                reads = reads | {EVALUATION if target.spec.name in _CLOCK_FUNCTIONS else DATA}
            return reads, free
        if isinstance(node, ast.Unary) and node.op.endswith(" from"):
            reads, free = self.visit(node.operand)
            return reads | {EVALUATION}, free
        if isinstance(node, ast.Query):
            return self._query(node)
        return self._children(_expression_children(node))

    def _query(self, node: ast.Query) -> tuple[frozenset[str], frozenset[str]]:
        reads, free = self.visit(node.source)
        outer, self._repeated = self._repeated, True   # the rest is evaluated once per row
        try:
            inner_reads, inner_free = _NOTHING, _NOTHING
            for clause in node.withs:
                source_reads, source_free = self.visit(clause.source)
                condition_reads, condition_free = self.visit(clause.condition)
                inner_reads = inner_reads | source_reads | condition_reads
                inner_free |= source_free | (condition_free - {clause.alias})
            body_reads, body_free = self._children([node.where, node.return_])
            inner_reads, inner_free = inner_reads | body_reads, inner_free | body_free
            reads, free = reads | inner_reads, free | (inner_free - {node.alias})
            for item in node.sort or ():
                if item.expression is None:
                    continue
                if self.checked.targets.get(id(item)) is not None:   # an element of the row, by name
                    continue
                key_reads, key_free = self.visit(item.expression)
                reads, free = reads | key_reads, free | (key_free - {ROW})
        finally:
            self._repeated = outer
        return reads, free


def _expression_children(node: ast.Node) -> list[ast.Node]:
    """The expression nodes directly below `node` (type specifiers excluded)."""
    children: list[ast.Node] = []
    for f in fields(node):
        value = getattr(node, f.name)
        for item in value if isinstance(value, list) else [value]:
            for part in item if isinstance(item, tuple) else (item,):
                if isinstance(part, ast.Node) and not _is_type_spec(part):
                    children.append(part)
    return children


def _is_type_spec(node: ast.Node) -> bool:
    return isinstance(node, (ast.NamedTypeSpec, ast.ListTypeSpec, ast.IntervalTypeSpec, ast.TupleTypeSpec))
