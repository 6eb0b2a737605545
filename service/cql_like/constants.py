"""Which expressions of a checked library have one value for every evaluation.

An expression is constant when it reads nothing of the evaluation (no retrieve, no `Patient`, no
parameter, no clock: `Today()`, `Now()`, the age functions and the `<component> from` extractors,
which read the evaluation's offset) and no operand or alias bound outside it, and every define and
function it reaches is constant in the same sense. Its value (a code table, a citation, a list of
accepted names, a pattern) is then the same for every patient, holds no record and so no evidence:
codegen.py computes it once per compiled library instead of once per patient.
"""

from __future__ import annotations

from dataclasses import fields

from . import ast
from .checker import ROW, BuiltinTarget, CheckedLibrary, NameTarget, UserTarget

_CONTEXT_NAMES = ("patient", "parameter")


def constant_nodes(checked: CheckedLibrary) -> frozenset[int]:
    """The ids of the expression nodes whose value does not depend on the evaluation."""
    return frozenset(_Analysis(checked).run())


class _Analysis:
    """One walk over every define and function body: per node, does it read the evaluation
    context, and which names bound outside it does it read."""

    def __init__(self, checked: CheckedLibrary) -> None:
        self.checked = checked
        self.constant: set[int] = set()
        self._define_reads: dict[str, bool] = {}
        self._function_reads: dict[int, bool] = {}

    def run(self) -> set[int]:
        for param in self.checked.parameters.values():
            if param.node.default is not None:
                self.visit(param.node.default)
        for name in self.checked.defines:
            self.define_reads_context(name)
        for checked_function in self.checked.functions.values():
            self.function_reads_context(checked_function.node)
        return self.constant

    def define_reads_context(self, name: str) -> bool:
        done = self._define_reads.get(name)
        if done is None:
            self._define_reads[name] = True   # the checker refused cycles; this only guards the walk
            done = self._define_reads[name] = self.visit(self.checked.defines[name].node.expression)[0]
        return done

    def function_reads_context(self, node: ast.FunctionDef) -> bool:
        done = self._function_reads.get(id(node))
        if done is None:
            self._function_reads[id(node)] = True
            done = self._function_reads[id(node)] = self.visit(node.body)[0]
        return done

    def visit(self, node: ast.Node) -> tuple[bool, frozenset[str]]:
        """(reads the evaluation context, names bound outside the node that it reads)."""
        reads, free = self._visit(node)
        if not reads and not free:
            self.constant.add(id(node))
        return reads, free

    def _children(self, nodes) -> tuple[bool, frozenset[str]]:
        reads, free = False, frozenset()
        for child in nodes:
            if child is None:
                continue
            child_reads, child_free = self.visit(child)
            reads, free = reads or child_reads, free | child_free
        return reads, free

    def _visit(self, node: ast.Node) -> tuple[bool, frozenset[str]]:
        target = self.checked.targets.get(id(node))
        if isinstance(node, ast.Literal):
            return False, frozenset()
        if isinstance(node, ast.Retrieve):
            return True, frozenset()
        if isinstance(node, ast.NameRef):
            assert isinstance(target, NameTarget)
            if target.kind == "scope":
                return False, frozenset({target.name})
            if target.kind == "row field":
                return False, frozenset({ROW})
            if target.kind == "define":
                return self.define_reads_context(target.name), frozenset()
            return target.kind in _CONTEXT_NAMES, frozenset()
        if isinstance(node, ast.Call):
            reads, free = self._children(node.args)
            if isinstance(target, UserTarget):
                reads = self.function_reads_context(target.function) or reads
            elif isinstance(target, BuiltinTarget) and target.spec.needs_context:
                reads = True
            return reads, free
        if isinstance(node, ast.Unary) and node.op.endswith(" from"):
            return True, self.visit(node.operand)[1]
        if isinstance(node, ast.Query):
            return self._query(node)
        return self._children(_expression_children(node))

    def _query(self, node: ast.Query) -> tuple[bool, frozenset[str]]:
        reads, free = self.visit(node.source)
        inner_reads, inner_free = False, frozenset()
        for clause in node.withs:
            source_reads, source_free = self.visit(clause.source)
            condition_reads, condition_free = self.visit(clause.condition)
            inner_reads = inner_reads or source_reads or condition_reads
            inner_free |= source_free | (condition_free - {clause.alias})
        body_reads, body_free = self._children([node.where, node.return_])
        inner_reads, inner_free = inner_reads or body_reads, inner_free | body_free
        reads, free = reads or inner_reads, free | (inner_free - {node.alias})
        for item in node.sort or ():
            if item.expression is None:
                continue
            if self.checked.targets.get(id(item)) is not None:   # an element of the row, by name
                continue
            key_reads, key_free = self.visit(item.expression)
            reads, free = reads or key_reads, free | (key_free - {ROW})
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
