"""Expression regions compiled to Python source: one function instead of a closure per node.

A region is a tree of nodes that need no state of their own (names, members, operators, `if`,
`case`, built-in and user function calls, selectors); queries, constants and retrieves through a
filtered value set stay closures of their own (codegen.py builds them once) and are called from
the region. The source calls the same operator and helper functions as the closures, in the same
order, so values and evidence are the same.

What the region leaves out is the per-node guard that turns a value-level failure into an error at
that node's position (or null, for a division by zero). Instead, the region catches those
exceptions as a whole and evaluates again with its closure-per-node form, which gives exactly the
answer or the positioned error the closures give: up to the failure both forms did the same
thing, every cache they touched holds only complete answers, and the evidence they added is a
subset of what the closures add again.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from . import ast
from . import functions as fn
from . import operators as ops
from . import types as T
from .checker import ROW, NameTarget, RetrieveTarget, UserTarget, membership_form
from .errors import CqlRuntimeError
from .runtime import Context, collect_record_sources
from .valuesets import ValueSet
from .values import Concept, CqlTuple, Interval, Record

# The code generator (codegen.Generator) passes itself as `gen`; it is not imported here, as
# codegen imports this module: it gives types, targets, constants, `expr`, `plain_closure`,
# `invoker`, `member_getter`, `value_converter` and `holds_no_record`.
Generator = Any

Closure = Callable[[Context], Any]

# What the closures' guards catch: a region that raises one of these is evaluated again node by node.
FALLBACK_ERRORS = (ArithmeticError, ValueError, TypeError)
# Nodes deeper than this below a region's root start a region of their own (Python's parser
# limits how deeply parentheses nest).
MAX_DEPTH = 20

_INLINABLE = (ast.NameRef, ast.Member, ast.Indexer, ast.Unary, ast.Binary, ast.Between, ast.DurationBetween,
              ast.Convert, ast.If, ast.Case, ast.Call, ast.TupleSelector, ast.ListSelector, ast.IntervalSelector,
              ast.Query)


def inlinable(node: ast.Node) -> bool:
    """True when a node can be part of (or start) a region."""
    return isinstance(node, _INLINABLE)


def region(gen: Generator, node: ast.Node, build: Callable[[ast.Node], Closure]) -> Closure:
    """One function evaluating `node` and its inlinable parts; the closure form alone when the
    region would hold a single node (nothing to gain)."""
    emitter = _Emitter(gen)
    body = emitter.root(node)
    if emitter.count < 2:
        return gen.plain_closure(build, node)
    slow = gen.plain_closure(build, node)
    source = "".join(emitter.helpers) + (
              f"def region(ctx):\n"
              f"    try:\n"
              f"        return {body}\n"
              f"    except FALLBACK_ERRORS:\n"
              f"        return slow(ctx)\n")
    namespace = dict(emitter.names, FALLBACK_ERRORS=FALLBACK_ERRORS, slow=slow)
    filename = f"<cql {gen.checked.filename}:{node.line}:{node.column}>"
    exec(compile(source, filename, "exec"), namespace)   # noqa: S102 - source built from a checked tree only
    function = namespace["region"]
    function.source = source   # for reading what was generated
    return function


# ---- helpers the generated source calls (each the exact semantics of a closure in codegen.py) ----
# The kinds of value that can hold a record: consuming one makes its records evidence.
_HOLDERS = frozenset({list, Record, CqlTuple})


def _consume(ctx: Context, value: Any) -> Any:
    kind = type(value)
    if kind is list or kind is Record or kind is CqlTuple:
        collect_record_sources(value, ctx.ev)
    return value


def _exists(ctx: Context, value: Any) -> bool:
    if not value:
        return False
    if None not in value:   # the usual list: every element is present (`in` tests identity first)
        collect_record_sources(value, ctx.ev)
        return True
    present = [v for v in value if v is not None]
    collect_record_sources(present, ctx.ev)
    return bool(present)


def _index(value: Any, i: Any) -> Any:
    if value is None or i is None:
        return None
    if not isinstance(value, (str, list, tuple)):
        raise CqlRuntimeError("cannot index into a value that is not a String or a List")
    if i < 0 or i >= len(value):
        return None
    return value[i]


def _component(ctx: Context, value: Any, component: str) -> Any:
    if isinstance(value, datetime):
        value = value.astimezone(ctx.now.tzinfo)
    return ops.component_of(value, component)


def _in_valueset(value: Any, vs: ValueSet) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return vs.contains_code_text(value)
    codes = value.codes if isinstance(value, Concept) else (value,)
    return any(vs.contains(c.system, c.code) for c in codes)


def _in_any(container: Any, value: Any) -> bool | None:
    if isinstance(container, Interval):
        return ops.point_in_interval(value, container)
    if isinstance(container, ValueSet):
        codes = value.codes if isinstance(value, Concept) else (value,)
        return value is not None and any(container.contains(c.system, c.code) for c in codes)
    return ops.list_contains(container, value)


def _included(inner: Any, container: Any) -> bool | None:
    if isinstance(inner, Interval) or inner is None:
        return ops.interval_included_in(inner, container)
    return ops.point_in_interval(inner, container)


_convert_quantity = fn.REGISTRY["ConvertQuantity"].impl


def _convert(value: Any, unit: str) -> Any:
    return None if value is None else _convert_quantity(ops.as_quantity(value), unit)


def _interval(lo: Any, hi: Any, low_closed: bool, high_closed: bool) -> Interval:
    if lo is not None and hi is not None:
        order = ops.compare(lo, hi)
        if order > 0:
            raise CqlRuntimeError("an interval's low bound is greater than its high bound")
        if order == 0 and not (low_closed and high_closed):
            raise CqlRuntimeError("an interval cannot be both closed and open on the same point")
    return Interval(lo, hi, low_closed, high_closed)


def _context_call(impl: Callable, ctx: Context, values: list) -> Any:
    return None if None in values else impl(ctx, *values)


def _reads(ctx: Context, impl: Callable, propagates_null: bool, value: Any) -> Any:
    if value is None:
        return None if propagates_null else impl(None)
    collect_record_sources(value, ctx.ev)
    return impl(value)


def _picks(ctx: Context, impl: Callable, propagates_null: bool, values: list) -> Any:
    if propagates_null and None in values:
        return None
    result = impl(*values)
    if isinstance(result, Record) and result.source:
        ctx.ev.add(result.source)
    return result


def _many(impl: Callable, propagates_null: bool, values: list) -> Any:
    if propagates_null and None in values:
        return None
    return impl(*values)


_EQUALITY = {"=": ops.equal, "!=": ops.not_equal, "~": ops.equivalent, "!~": lambda a, b: not ops.equivalent(a, b)}
_COMPARE = {"<": ops.less, "<=": ops.less_equal, ">": ops.greater, ">=": ops.greater_equal}
_ARITHMETIC = {"+": ops.add, "-": ops.subtract, "*": ops.multiply, "/": ops.divide, "div": ops.truncated_divide,
               "mod": ops.modulo, "^": ops.power, "&": ops.concatenate_ampersand}
_LOGIC = {"xor": ops.logical_xor, "implies": ops.logical_implies}


class _Emitter:
    """The source of one region: `root` returns an expression over `ctx`; `names` holds every
    value and function it refers to."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.names: dict[str, Any] = {}
        self._refs: dict[int, str] = {}
        self.count = 0
        self._temps = 0
        self._depth = 0
        self.helpers: list[str] = []          # the source of one function per query of the region
        self._rows: dict[str, str] = {}       # query alias -> the local holding its row, in the query's function

    # ---- names and temporaries ----
    def ref(self, value: Any) -> str:
        name = self._refs.get(id(value))
        if name is None or self.names[name] is not value:
            name = self._refs[id(value)] = f"_v{len(self.names)}"
            self.names[name] = value
        return name

    def temp(self) -> str:
        self._temps += 1
        return f"_t{self._temps}"

    # ---- nodes ----
    def root(self, node: ast.Node) -> str:
        self.count += 1
        return getattr(self, "_" + type(node).__name__)(node)

    def child(self, node: ast.Node) -> str:
        if isinstance(node, ast.Literal):
            self.count += 1
            return self._Literal(node)
        gen = self.gen
        plain_retrieve = isinstance(node, ast.Retrieve) and gen.targets[id(node)].valueset is None
        if id(node) in gen.constants:   # computed once per library: read the kept value once there is one
            closure = gen.expr(node)
            kept = getattr(closure, "kept", None)
            if kept is None:
                return f"{self.ref(closure)}(ctx)"
            k = self.ref(kept)
            return f"({k}[0] if {k} else {self.ref(closure)}(ctx))"
        if gen.hoisted(node):   # once per evaluation: read the kept value, else compute and keep it
            closure, h = gen.expr(node), self.temp()
            return (f"({h}[0] if ({h} := ctx.kept.get({closure.key})) is not None"
                    f" and (not {h}[1] or ctx.ev.update({h}[1]) or True) else {self.ref(closure)}(ctx))")
        if not (inlinable(node) or plain_retrieve) or self._depth >= MAX_DEPTH:
            return f"{self.ref(gen.expr(node))}(ctx)"
        self.count += 1
        self._depth += 1
        try:
            return getattr(self, "_" + type(node).__name__)(node)
        finally:
            self._depth -= 1

    def typed(self, node: ast.Node) -> tuple[str, T.CqlType]:
        return self.child(node), self.gen.types[id(node)]

    def coerced(self, source: str, actual: T.CqlType, target: T.CqlType) -> str:
        convert = self.gen.value_converter(actual, target)
        if convert is None:
            return source
        t = self.temp()
        return f"(None if ({t} := {source}) is None else {self.ref(convert)}({t}))"

    def consumed(self, source: str, static_type: T.CqlType) -> str:
        if self.gen.holds_no_record(static_type):
            return source
        t = self.temp()
        return f"({t} if type({t} := {source}) not in {self.ref(_HOLDERS)} else {self.ref(_consume)}(ctx, {t}))"

    def _Literal(self, node: ast.Literal) -> str:
        kind, value = node.kind, node.value
        if kind == "Null":
            return "None"
        if kind == "Boolean":
            return "True" if value else "False"
        if kind == "String":
            return self.ref(value)
        if kind == "Integer":
            return self.ref(int(value))
        if kind == "Decimal":
            return self.ref(Decimal(value))
        return self.ref(self.gen.targets[id(node)])

    def _NameRef(self, node: ast.NameRef) -> str:
        target: NameTarget = self.gen.targets[id(node)]
        kind, name = target.kind, target.name
        if kind == "row field":
            return f"{self.ref(self.gen.member_getter(name, track=False))}(ctx.scope[{ROW!r}])"
        if kind == "scope":   # a query's row is the local of its loop; operands are in the scope
            return self._rows.get(name) or f"ctx.scope[{name!r}]"
        if kind == "define":   # a kept value is read here; a first evaluation goes through the library
            h = self.temp()
            return (f"({h}[0] if ({h} := ctx.define_cache.get({name!r})) is not None"
                    f" and (not {h}[1] or ctx.ev.update({h}[1]) or True)"
                    f" else ctx.library.define_value(ctx, {name!r}))")
        if kind == "parameter":
            return f"ctx.library.parameter_value(ctx, {name!r})"
        if kind in ("valueset", "code"):
            return self.ref(target.value)
        return "ctx.patient()"

    def _Member(self, node: ast.Member) -> str:
        target = self.child(node.target)
        getter = self.ref(self.gen.member_getter(node.name))
        # a record's field (its source becomes evidence, as the getter does) and a tuple's element
        # are read here; anything else by the getter
        t, name = self.temp(), repr(node.name)
        return (f"({t}.fields.get({name}) if type({t} := {target}) is {self.ref(Record)}"
                f" and (not {t}.source or ctx.ev.add({t}.source) or True)"
                f" else {t}._elements.get({name}) if type({t}) is {self.ref(CqlTuple)} else {getter}(ctx, {t}))")

    def _Indexer(self, node: ast.Indexer) -> str:
        return f"{self.ref(_index)}({self.child(node.target)}, {self.child(node.index)})"

    def _Retrieve(self, node: ast.Retrieve) -> str:
        target: RetrieveTarget = self.gen.targets[id(node)]
        return f"ctx.retrieve({target.type_name!r}, {self.ref(target.codes)})"

    def _Unary(self, node: ast.Unary) -> str:
        operand, t = self.typed(node.operand)
        op = node.op
        if op == "not":
            return f"{self.ref(ops.logical_not)}({operand})"
        if op == "exists":
            return f"{self.ref(_exists)}(ctx, {operand})"
        if op == "plus":
            return operand
        if op == "negate":
            return f"{self.ref(ops.negate)}({operand})"
        if op in ("distinct", "flatten"):
            return f"{self.ref(ops.distinct if op == 'distinct' else ops.flatten)}({operand})"
        if op == "is null":
            return f"({self.consumed(operand, t)} is None)"
        if op == "is not null":
            return f"({self.consumed(operand, t)} is not None)"
        if op.startswith("is "):
            wanted = op.endswith("true")
            return f"({operand} {'is not' if op.startswith('is not ') else 'is'} {wanted})"
        if op in ("start", "end"):
            return f"{self.ref(ops.start_of if op == 'start' else ops.end_of)}({operand})"
        return f"{self.ref(_component)}(ctx, {operand}, {op[:-5]!r})"

    def _Binary(self, node: ast.Binary) -> str:
        op = node.op
        left, lt = self.typed(node.left)
        right, rt = self.typed(node.right)
        if op == "and":   # true and a Boolean is that Boolean; anything else is logical_and's
            a, b = self.temp(), self.temp()
            return (f"(False if ({a} := {left}) is False else {b} if (({b} := {right}) is True or {b} is False)"
                    f" and {a} is True else {self.ref(ops.logical_and)}({a}, {b}))")
        if op == "or":   # false or a Boolean is that Boolean
            a, b = self.temp(), self.temp()
            return (f"(True if ({a} := {left}) is True else {b} if (({b} := {right}) is True or {b} is False)"
                    f" and {a} is False else {self.ref(ops.logical_or)}({a}, {b}))")
        if op in _LOGIC:
            return f"{self.ref(_LOGIC[op])}({left}, {right})"
        left, right = self.consumed(left, lt), self.consumed(right, rt)
        if op == "&":   # ops.concatenate_ampersand, written out: null is ''
            a, b = self.temp(), self.temp()
            return f"(('' if ({a} := {left}) is None else {a}) + ('' if ({b} := {right}) is None else {b}))"
        if op in _EQUALITY or op in _COMPARE:
            return f"{self.ref((_EQUALITY | _COMPARE)[op])}({left}, {right})"
        if op in _ARITHMETIC:
            if self.gen.types[id(node)] == T.DECIMAL:
                left, right = self.coerced(left, lt, T.DECIMAL), self.coerced(right, rt, T.DECIMAL)
            return f"{self.ref(_ARITHMETIC[op])}({left}, {right})"
        return self._membership(node, left, lt, right, rt)

    def _membership(self, node: ast.Binary, left: str, lt: T.CqlType, right: str, rt: T.CqlType) -> str:
        op, swapped = membership_form(node.op, lt)
        if swapped:
            left, lt, right, rt = right, rt, left, lt
        if op == "in":
            if rt == T.VALUESET:
                return f"{self.ref(_in_valueset)}({left}, {right})"
            if isinstance(rt, T.ListType):
                return f"{self.ref(ops.list_contains)}({right}, {left})"
            if isinstance(rt, T.IntervalType):
                return f"{self.ref(ops.point_in_interval)}({left}, {right})"
            return f"{self.ref(_in_any)}({right}, {left})"
        if op == "included in":
            if isinstance(lt, T.IntervalType) or lt == T.ANY:
                return f"{self.ref(_included)}({left}, {right})"
            return f"{self.ref(ops.point_in_interval)}({left}, {right})"
        impl = ops.overlaps if op == "overlaps" else ops.before if op == "before" else ops.after
        return f"{self.ref(impl)}({left}, {right})"

    def _Between(self, node: ast.Between) -> str:
        operand, low, high = self.child(node.operand), self.child(node.low), self.child(node.high)
        v = self.temp()
        return (f"{self.ref(ops.logical_and)}({self.ref(ops.greater_equal)}(({v} := {operand}), {low}),"
                f" {self.ref(ops.less_equal)}({v}, {high}))")

    def _DurationBetween(self, node: ast.DurationBetween) -> str:
        impl = ops.boundaries_between if node.difference else ops.whole_periods_between
        return f"{self.ref(impl)}({self.child(node.low)}, {self.child(node.high)}, {node.precision!r})"

    def _Convert(self, node: ast.Convert) -> str:
        return f"{self.ref(_convert)}({self.child(node.operand)}, {node.unit!r})"

    def _If(self, node: ast.If) -> str:
        result = self.gen.types[id(node)]
        cond = self.child(node.condition)
        then, tt = self.typed(node.then)
        other, ot = self.typed(node.otherwise)
        return f"({self.coerced(then, tt, result)} if {cond} is True else {self.coerced(other, ot, result)})"

    def _Case(self, node: ast.Case) -> str:
        result = self.gen.types[id(node)]
        comparand = self.child(node.comparand) if node.comparand is not None else None
        items = []
        for when, then in node.items:
            w = self.child(when)
            t, tt = self.typed(then)
            items.append((w, self.coerced(t, tt, result)))
        other, ot = self.typed(node.otherwise)
        text = self.coerced(other, ot, result)
        if comparand is None:
            for w, t in reversed(items):
                text = f"({t} if {w} is True else {text})"
            return text
        if not items:   # the comparand is still evaluated, as the closure form does
            return f"({comparand}, {text})[1]"
        v = self.temp()
        equal = self.ref(ops.equal)
        for i, (w, t) in reversed(list(enumerate(items))):
            value = f"({v} := {comparand})" if i == 0 else v
            text = f"({t} if {equal}({value}, {w}) is True else {text})"
        return text

    def _Call(self, node: ast.Call) -> str:
        gen = self.gen
        args = [self.typed(arg) for arg in node.args]
        target = gen.targets[id(node)]
        if isinstance(target, UserTarget):
            compiled = gen._function(target.function)
            values = [self.coerced(s, a, p) for (s, a), p in zip(args, compiled.operand_types)]
            return f"{self.ref(gen.invoker(target.function))}(ctx, [{', '.join(values)}])"
        spec = target.spec
        sources = [s for s, _ in args]
        if target.argument_types is not None:
            sources = [self.coerced(s, a, t) for s, (_, a), t in zip(sources, args, target.argument_types)]
        if spec.evidence == "none":
            sources = [self.consumed(s, a) for s, (_, a) in zip(sources, args)]
        impl = self.ref(spec.impl)
        listed = f"[{', '.join(sources)}]"
        if spec.needs_context:
            if not sources:
                return f"{impl}(ctx)"
            if spec.propagates_null:
                return f"{self.ref(_context_call)}({impl}, ctx, {listed})"
            return f"{impl}(ctx, {', '.join(sources)})"
        if spec.evidence == "reads":
            (source,) = sources
            return f"{self.ref(_reads)}(ctx, {impl}, {spec.propagates_null}, {source})"
        if spec.evidence == "picks":
            return f"{self.ref(_picks)}(ctx, {impl}, {spec.propagates_null}, {listed})"
        if len(sources) == 1 and spec.propagates_null:
            t = self.temp()
            return f"(None if ({t} := {sources[0]}) is None else {impl}({t}))"
        if len(sources) == 2 and spec.propagates_null:
            t0, t1 = self.temp(), self.temp()
            return (f"(None if (({t0} := {sources[0]}) is None) | (({t1} := {sources[1]}) is None)"
                    f" else {impl}({t0}, {t1}))")
        return f"{self.ref(_many)}({impl}, {spec.propagates_null}, {listed})"

    def _TupleSelector(self, node: ast.TupleSelector) -> str:
        parts = [f"{name!r}: {self.child(value)}" for name, value in node.elements]
        return f"{self.ref(CqlTuple)}({{{', '.join(parts)}}})"

    def _ListSelector(self, node: ast.ListSelector) -> str:
        element = self.gen.types[id(node)].element
        items = [self.coerced(s, t, element) for s, t in (self.typed(item) for item in node.items)]
        return f"[{', '.join(items)}]"

    def _IntervalSelector(self, node: ast.IntervalSelector) -> str:
        point = self.gen.types[id(node)].point
        low, lt = self.typed(node.low)
        high, ht = self.typed(node.high)
        return (f"{self.ref(_interval)}({self.coerced(low, lt, point)}, {self.coerced(high, ht, point)},"
                f" {node.low_closed}, {node.high_closed})")

    def _Query(self, node: ast.Query) -> str:
        """A function of its own (a loop needs statements), doing what codegen's query `run` does,
        with the `where` and `return` expressions written into the loop: the same rows, evidence,
        distinct and sort. The alias is still bound in the scope, for what is called from the loop."""
        gen = self.gen
        name = f"_query{len(self.helpers)}"
        self.helpers.append("")   # the slot keeps nested queries' functions apart from this one
        slot = len(self.helpers) - 1
        rows, depth, self._depth = self._rows, self._depth, 0
        self._rows = {}   # an enclosing query's row is a local of another function: read from the scope
        try:
            source = self.child(node.source)
            row = f"_row{slot}"
            self._rows = {node.alias: row}
            checks = [f"{self.ref(gen.with_check(clause))}(ctx) is True" for clause in node.withs]
            if node.where is not None:
                checks.append(f"({self.child(node.where)}) is True")
            kept = self.child(node.return_) if node.return_ is not None else row
        finally:
            self._rows, self._depth = rows, depth
        alias = repr(node.alias)
        lines = [f"def {name}(ctx):",
                 f"    value = {source}",
                 "    if value is None:",
                 "        return None",
                 f"    single = not isinstance(value, {self.ref(list)})",
                 "    rows = [value] if single else value",
                 "    scope = ctx.scope",
                 f"    saved = scope.get({alias}, {self.ref(gen.MISSING)})",
                 "    kept = []",
                 "    outer_ev = ctx.ev",
                 "    try:"]
        if checks:
            lines += ["        row_ev = set()",
                      f"        for {row} in rows:",
                      f"            scope[{alias}] = {row}",
                      "            ctx.ev = row_ev",
                      f"            ok = {' and '.join(checks)}",
                      "            ctx.ev = outer_ev",
                      "            if ok:",
                      "                if row_ev:",
                      f"                    if type({row}) is {self.ref(Record)}:",
                      f"                        row_ev.discard({row}.source)",
                      "                    outer_ev.update(row_ev)",
                      f"                kept.append({kept})",
                      "            if row_ev:",
                      "                row_ev.clear()"]
        elif node.return_ is not None:
            lines += [f"        for {row} in rows:",
                      f"            scope[{alias}] = {row}",
                      f"            kept.append({kept})"]
        else:
            lines += ["        kept = list(rows)"]
        lines += ["    finally:",
                  "        ctx.ev = outer_ev",
                  f"        {self.ref(gen.restore_alias)}(scope, {alias}, saved)"]
        if node.return_ is not None and not node.return_all:
            lines.append(f"    kept = {self.ref(ops.distinct)}(kept)")
        if node.sort:
            lines.append(f"    kept = {self.ref(gen.sorter(node.sort))}(ctx, kept)")
        lines += ["    if single:",
                  "        return kept[0] if kept else None",
                  "    return kept"]
        self.helpers[slot] = "\n".join(lines) + "\n\n"
        return f"{name}(ctx)"
