"""Checked library -> Python closures, one per define, parameter default and function.

This stage trusts the checker: it takes only a `CheckedLibrary` (which exists only for a library
without errors), reads each node's static type and resolved target from it, and never reports a
type or name error. Evaluation then calls closures directly, with no tree walking or dispatch per
node. Three-valued logic and every other operator's semantics are `operators.py`'s; this module
decides only evaluation order, evidence and where implicit conversions apply, and what is not
repeated: a constant expression (constants.py) is computed once per library, a user function call
once per evaluation and arguments (once per library and arguments, within bounds, for a function of
texts, numbers, codes and concepts whose body reads nothing of the evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from . import ast
from . import functions as fn
from . import inline
from . import operators as ops
from . import types as T
from .checker import ROW, ROW_ELEMENT, CheckedLibrary, NameTarget, RetrieveTarget, UserTarget, membership_form
from .constants import classification
from .errors import CqlRuntimeError, EvaluationFailure, UnitError
from .runtime import Context, collect_record_sources
from .valuesets import ValueSet
from .values import Code, Concept, CqlTuple, Interval, Record

Closure = Callable[[Context], Any]
_MISSING = object()


def _restore_alias(scope: dict[str, Any], alias: str, saved: Any) -> None:
    """Give `alias` back the value it had in the scope before a query or `with` bound it to its
    rows (`saved`, from `scope.get(alias, _MISSING)`); an alias that was unbound is removed."""
    if saved is _MISSING:
        scope.pop(alias, None)
    else:
        scope[alias] = saved


@dataclass
class CompiledDefine:
    """A compiled `define`: its closure, static type and node (for positions in evaluation errors)."""
    name: str
    closure: Closure
    type: T.CqlType
    node: ast.Node


@dataclass
class CompiledParameter:
    """A compiled `parameter`; default is None when the library gives none (the value is then null unless supplied)."""
    name: str
    type: T.CqlType
    default: Closure | None
    node: ast.Node


@dataclass
class CompiledFunction:
    """A compiled user function; body is None only while its own body is being generated."""
    name: str
    operand_names: list[str]
    operand_types: list[T.CqlType]
    returns: T.CqlType
    body: Closure | None
    node: ast.FunctionDef


@dataclass
class GeneratedLibrary:
    """What `generate` returns: the closures of every define (declaration order) and parameter."""
    tree: ast.LibraryNode
    source: str
    filename: str
    defines: dict[str, CompiledDefine]
    parameters: dict[str, CompiledParameter]


def generate(checked: CheckedLibrary, *, inline: bool = True) -> GeneratedLibrary:
    """The closures of a checked library; anything but a `CheckedLibrary` is refused.

    `inline` (the default) compiles expression regions to Python source (inline.py); without it
    every node is a closure of its own (the reference form, kept for tests and fallbacks)."""
    if not isinstance(checked, CheckedLibrary):
        raise TypeError(f"codegen takes a CheckedLibrary from checker.check, not {type(checked).__name__}")
    return Generator(checked, inline=inline).generate()


def _guard(closure: Closure, node: ast.Node) -> Closure:
    """Turn value-level failures (units, dates, regex) into EvaluationFailure at this node's position."""
    line, column = node.line, node.column

    def guarded(ctx: Context) -> Any:
        """The closure with value-level failures raised at this node's position; division by zero is null, as in CQL."""
        try:
            return closure(ctx)
        except EvaluationFailure:
            raise
        except VALUE_FAILURES as exc:
            return value_failure(exc, line, column)
    return guarded


# What a value-level failure of an expression can raise (EvaluationFailure is raised on as it is).
VALUE_FAILURES = (UnitError, CqlRuntimeError, ArithmeticError, ValueError, TypeError, OverflowError)


def value_failure(exc: BaseException, line: int, column: int) -> None:
    """A value-level failure at (line, column): null for a division by zero, as in CQL; otherwise an
    EvaluationFailure there, with the unit or runtime error's own first line when it has one."""
    if isinstance(exc, (UnitError, CqlRuntimeError)):
        raise EvaluationFailure(str(exc).split("\n")[0], line, column) from None
    if isinstance(exc, ZeroDivisionError):
        return None
    raise EvaluationFailure("this expression cannot be evaluated on these values", line, column) from None


def value_converter(actual: T.CqlType, target: T.CqlType) -> Callable[[Any], Any] | None:
    """The runtime form of CQL's implicit Integer -> Decimal promotion from `actual` to `target`
    (also inside lists, interval bounds and tuple elements), or None when values need no change."""
    if actual == T.INTEGER and target == T.DECIMAL:
        return lambda value: Decimal(value) if type(value) is int else value
    if isinstance(actual, T.ListType) and isinstance(target, T.ListType):
        inner = value_converter(actual.element, target.element)
        if inner is not None:
            return lambda value: [inner(v) for v in value] if isinstance(value, list) else value
    if isinstance(actual, T.IntervalType) and isinstance(target, T.IntervalType):
        point = value_converter(actual.point, target.point)
        if point is not None:
            return lambda value: (Interval(point(value.low), point(value.high), value.low_closed, value.high_closed)
                                  if isinstance(value, Interval) else value)
    if isinstance(actual, T.TupleType) and isinstance(target, T.TupleType):
        parts = {name: value_converter(actual.element(name) or T.ANY, wanted) for name, wanted in target.elements}
        parts = {name: conv for name, conv in parts.items() if conv is not None}
        if parts:
            return lambda value: (CqlTuple({k: parts[k](v) if k in parts else v for k, v in value.items()})
                                  if type(value) is CqlTuple else value)
    return None


def promote_value(value: Any, declared: T.CqlType) -> Any:
    """A caller-supplied value (e.g. a parameter override) in its declared type: Integers become Decimals."""
    if value is None:
        return None
    if declared == T.DECIMAL and type(value) is int:
        return Decimal(value)
    if isinstance(declared, T.ListType) and isinstance(value, list):
        return [promote_value(v, declared.element) for v in value]
    if isinstance(declared, T.IntervalType) and isinstance(value, Interval):
        return Interval(promote_value(value.low, declared.point), promote_value(value.high, declared.point),
                        value.low_closed, value.high_closed)
    return value


def _coerce(closure: Closure, actual: T.CqlType, target: T.CqlType) -> Closure:
    """Apply CQL's implicit Integer -> Decimal conversion where the static type says Decimal."""
    convert = value_converter(actual, target)
    if convert is None:
        return closure

    def promoted(ctx: Context) -> Any:
        """The closure's non-null value converted to the target type."""
        value = closure(ctx)
        return None if value is None else convert(value)
    return promoted


def _computed_once(closure: Closure) -> Closure:
    """A constant expression (see constants.py), evaluated by the first evaluation that reaches it
    and then kept for every later one; a failure is not kept, so each evaluation reports it."""
    kept: list[Any] = []

    def constant(ctx: Context) -> Any:
        """The expression's one value."""
        if kept:
            return kept[0]
        value = closure(ctx)
        kept[:] = [value]
        return value
    constant.kept = kept   # inline.py reads a kept value here without calling
    return constant


def _once_per_evaluation(closure: Closure, key: int) -> Closure:
    """An expression of the clock and parameters only (see constants.py), computed by the first
    row or call of an evaluation that reaches it and kept in the context with its evidence; a
    failure is not kept, so every place that reaches it reports it."""
    def per_evaluation(ctx: Context) -> Any:
        """The expression's value in this evaluation; its evidence is added where it is read."""
        kept = ctx.kept.get(key)
        if kept is None:
            outer_ev = ctx.ev
            own_ev = ctx.ev = set()
            try:
                value = closure(ctx)
            finally:
                ctx.ev = outer_ev
            kept = ctx.kept[key] = (value, own_ev)
        if kept[1]:
            ctx.ev.update(kept[1])
        return kept[0]
    per_evaluation.key = key   # inline.py reads a kept value here without calling
    return per_evaluation


# Static types whose values are never, and never hold, a record: consuming them is no evidence.
_RECORD_FREE = frozenset({T.BOOLEAN, T.INTEGER, T.DECIMAL, T.STRING, T.QUANTITY, T.DATE, T.DATETIME, T.CODE,
                          T.CONCEPT, T.VALUESET})


def _holds_no_record(static_type: T.CqlType) -> bool:
    if static_type in _RECORD_FREE or isinstance(static_type, T.IntervalType):
        return True
    if isinstance(static_type, T.ListType):
        return _holds_no_record(static_type.element)
    if isinstance(static_type, T.TupleType):
        return all(_holds_no_record(element) for _, element in static_type.elements)
    return False


def _consuming(closure: Closure, static_type: T.CqlType) -> Closure:
    """The operand's records become evidence: an operator read the whole value (=, is null, Length, ...).
    An operand whose static type holds no record (a String, an Interval, ...) is left as it is."""
    if Generator.holds_no_record(static_type):
        return closure

    def consumed(ctx: Context) -> Any:
        """The closure's value, with its records recorded as evidence."""
        value = closure(ctx)
        kind = type(value)
        if kind is list or kind is Record or kind is CqlTuple:
            collect_record_sources(value, ctx.ev)
        return value
    return consumed


def member_getter(name: str, track: bool = True):
    """A reader of element `name`: get(ctx, value) when reading a record is evidence (`track`),
    else get(value)."""
    attr = {"lowClosed": "low_closed", "highClosed": "high_closed"}.get(name, name)

    def get(ctx: Context | None, value: Any) -> Any:
        """Field `name` of a record, tuple, interval or concept, mapped and flattened over lists;
        reading a record makes it evidence."""
        if value is None:
            return None
        if type(value) is Record:
            if track and value.source:
                ctx.ev.add(value.source)
            return value.fields.get(name)
        if type(value) is CqlTuple:
            return value.get(name)
        if isinstance(value, list):
            out = []
            for item in value:
                got = get(ctx, item)
                if isinstance(got, list):
                    out.extend(got)
                elif got is not None:
                    out.append(got)
            return out
        if isinstance(value, Concept) and name == "codes":
            return list(value.codes)
        return getattr(value, attr, None)
    if track:
        return get
    return lambda value: get(None, value)


def argument_key(value: Any) -> Any:
    """A key equal for two arguments only when no function can tell them apart: strings, whole
    numbers and booleans by value and kind, Decimals by their digits and exponent (1.0 and 1.00
    print differently), lists element by element, anything else (records, dates, quantities,
    tuples) by identity."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is int or kind is bool:
        return (kind, value)
    if kind is Decimal:
        return (kind, str(value))   # the exact digits and exponent, as as_tuple() has them, without building it
    if kind is list:
        kinds = {*map(type, value)}
        if kinds <= _ONLY_RECORDS:   # the usual list argument: records, keyed by identity at C speed
            return (_RECORD_LIST, *map(id, value))
        if kinds <= _ONLY_TEXTS:     # names and codes: each its own key already, without a call each
            return (list, *value)
        return (list, *map(argument_key, value))
    return (object, id(value))


_ONLY_RECORDS = frozenset({Record})
_ONLY_TEXTS = frozenset({str, type(None)})
_BY_IDENTITY = frozenset({Record, CqlTuple, Concept})   # argument_key's answer for them: (object, id)
_RECORD_LIST = "list of records"   # the first item of a list's key holding only its records' identities

# Calls of a function of its arguments only, kept across evaluations (each such function's at most
# this many): its value for the same texts (a name's normal form) is then computed once per process.
REMEMBERED_CALLS = 1024
_REMEMBERED_TEXT_LENGTH = 1024   # arguments with more text than this (a note) are not kept: memory stays bounded
_KEPT_VALUE_TYPES = (T.STRING, T.BOOLEAN, T.INTEGER, T.DECIMAL)
_CONTENT_KEYED = (T.CONCEPT, T.CODE)
_UNKNOWN = object()
_NO_EVIDENCE: frozenset[str] = frozenset()


def _code_content(code: Code) -> tuple[str | None, ...]:
    """Everything a function can read of a code: its system, code, display and version."""
    return (code.system, code.code, code.display, code.version)


def content_key(value: Any) -> Any:
    """`argument_key`, but a concept or code by everything a function can read of it (`_code_content`
    of each code, and the concept's text) instead of by identity."""
    kind = type(value)
    if kind is Concept:
        return (Concept, value.display, *map(_code_content, value.codes))
    if kind is Code:
        return (Code, *_code_content(value))
    return argument_key(value)


def _text_length(texts: Any) -> int:
    return sum(len(text) for text in texts if type(text) is str)


def _short_texts(values: list) -> bool:
    """True when the texts among the arguments (alone, in a list, of a concept or code: all its key
    holds) are short enough to keep: _REMEMBERED_TEXT_LENGTH characters in all."""
    total = 0
    for value in values:
        kind = type(value)
        if kind is str:
            total += len(value)
        elif kind is list:
            total += _text_length(value)
        elif kind is Concept:
            total += _text_length((value.display,)) + sum(_text_length(_code_content(code)) for code in value.codes)
        elif kind is Code:
            total += _text_length(_code_content(value))
        if total > _REMEMBERED_TEXT_LENGTH:
            return False
    return True


class Generator:
    """Builds the closures of a checked library: one method per node class, no checks."""
    def __init__(self, checked: CheckedLibrary, *, inline: bool = True) -> None:
        self.checked = checked
        self.types = checked.types
        self.targets = checked.targets
        self.functions: dict[int, CompiledFunction] = {}
        found = classification(checked)
        self.constants, per_evaluation = found.constant, found.per_evaluation
        # functions whose value across evaluations is kept (inline only: the closure form is the reference)
        self.remembered_functions = found.argument_only_functions if inline else frozenset()
        self._inside_constant = False
        self.inline = inline
        # computed once per evaluation where regions are compiled (the closure form is the reference)
        self.per_evaluation = per_evaluation if inline else frozenset()
        self._inside_hoisted = False   # building a per-evaluation expression: its parts need no keeping
        self._built: dict[int, Closure] = {}   # closures of constant and non-inlined nodes, built once
        self._plain = False                     # building the closure-per-node form of an inlined region

    def generate(self) -> GeneratedLibrary:
        """Closures for every parameter default and define (function bodies as calls reach them)."""
        checked = self.checked
        parameters = {}
        for name, param in checked.parameters.items():
            default = None
            if param.node.default is not None:
                default = self.expr(param.node.default)
                if param.declared is not None:
                    default = _coerce(default, param.default_type, param.declared)
            parameters[name] = CompiledParameter(name, param.type, default, param.node)
        defines = {name: CompiledDefine(name, self.expr(define.node.expression), define.type, define.node)
                   for name, define in checked.defines.items()}
        return GeneratedLibrary(checked.tree, checked.source, checked.filename, defines, parameters)

    def _function(self, node: ast.FunctionDef) -> CompiledFunction:
        done = self.functions.get(id(node))
        if done is not None:
            return done
        checked = self.checked.functions[id(node)]
        compiled = CompiledFunction(node.name, checked.operand_names, checked.operand_types, checked.returns, None, node)
        self.functions[id(node)] = compiled
        inside_constant, self._inside_constant = self._inside_constant, False   # every call shares the body
        plain, self._plain = self._plain, False
        hoisted, self._inside_hoisted = self._inside_hoisted, False
        try:
            body = self.expr(node.body)
        finally:
            self._inside_constant, self._plain, self._inside_hoisted = inside_constant, plain, hoisted
        if checked.declared is not None:
            body = _coerce(body, checked.body_type, checked.declared)
        compiled.body = body
        return compiled

    def expr(self, node: ast.Node) -> Closure:
        """The closure of one expression; dispatches on the node class. The outermost node of a
        constant expression is computed once per library (its parts then need no caching). With
        `inline`, a region of inlinable nodes becomes one compiled Python function (inline.py),
        and every other node is built once, whichever region refers to it."""
        build = getattr(self, "_" + type(node).__name__)
        if self._inside_constant or isinstance(node, ast.Literal):
            return build(node)
        if id(node) in self.constants:
            return self._once(node, lambda: _computed_once(self._inside(build, node)))
        if self.hoisted(node):
            return self._once(node, lambda: _once_per_evaluation(self._hoist(build, node), id(node)))
        if not self.inline:
            return build(node)
        if inline.inlinable(node):
            return build(node) if self._plain else inline.region(self, node, build)
        return self._once(node, lambda: self._unplain(build, node))

    # what inline.py asks of this stage (it cannot import codegen, which imports it)
    member_getter = staticmethod(member_getter)
    value_converter = staticmethod(value_converter)
    restore_alias = staticmethod(_restore_alias)
    MISSING = _MISSING

    def with_check(self, clause: ast.WithClause) -> Closure:
        """The closure of a `with`/`without` clause: True when the current row passes it."""
        return self._with_clause(clause)

    def sorter(self, items: list[ast.SortItem]) -> Callable[[Context, list], list]:
        """sort(ctx, rows): a query's rows in the order of its `sort` items."""
        return self._sort(items)

    @staticmethod
    def holds_no_record(static_type: T.CqlType) -> bool:
        """True when consuming a value of this static type is no evidence (see `_consuming`): a
        scalar, an interval, and a list or tuple made only of those (`status in {'final', ...}`)."""
        return _holds_no_record(static_type)

    def _once(self, node: ast.Node, make: Callable[[], Closure]) -> Closure:
        closure = self._built.get(id(node))
        if closure is None:
            closure = self._built[id(node)] = make()
        return closure

    def hoisted(self, node: ast.Node) -> bool:
        """True when the node is computed once per evaluation (constants.py's per-evaluation nodes),
        and not inside another such node."""
        return id(node) in self.per_evaluation and not self._inside_hoisted

    def _hoist(self, build, node: ast.Node) -> Closure:
        saved = self._inside_hoisted, self._plain
        self._inside_hoisted, self._plain = True, False
        try:
            return build(node)
        finally:
            self._inside_hoisted, self._plain = saved

    def _inside(self, build, node: ast.Node) -> Closure:
        self._inside_constant = True
        try:
            return build(node)
        finally:
            self._inside_constant = False

    def _unplain(self, build, node: ast.Node) -> Closure:
        plain, self._plain = self._plain, False
        try:
            return build(node)
        finally:
            self._plain = plain

    def plain_closure(self, build, node: ast.Node) -> Closure:
        """The closure-per-node form of an inlined region (what it falls back to on a failure)."""
        plain, self._plain = self._plain, True
        try:
            return build(node)
        finally:
            self._plain = plain

    def _typed(self, node: ast.Node) -> tuple[Closure, T.CqlType]:
        return self.expr(node), self.types[id(node)]

    def _Literal(self, node: ast.Literal):
        kind, value = node.kind, node.value
        if kind == "Null":
            return lambda ctx: None
        if kind == "Boolean":
            return (lambda ctx: True) if value else (lambda ctx: False)
        if kind == "String":
            return lambda ctx: value
        if kind == "Integer":
            number = int(value)
            return lambda ctx: number
        if kind == "Decimal":
            dec = Decimal(value)
            return lambda ctx: dec
        constant = self.targets[id(node)]   # Quantity, Date, DateTime: the value the checker parsed
        return lambda ctx: constant

    def _NameRef(self, node: ast.NameRef):
        target: NameTarget = self.targets[id(node)]
        kind, name = target.kind, target.name
        if kind == "row field":
            getter = member_getter(name, track=False)
            return lambda ctx: getter(ctx.scope[ROW])
        if kind == "scope":
            return lambda ctx: ctx.scope[name]
        if kind == "define":
            return lambda ctx: ctx.library.define_value(ctx, name)
        if kind == "parameter":
            return lambda ctx: ctx.library.parameter_value(ctx, name)
        if kind in ("valueset", "code"):
            value = target.value
            return lambda ctx: value
        return lambda ctx: ctx.patient()   # kind == "patient"

    def _Member(self, node: ast.Member):
        target = self.expr(node.target)
        get = member_getter(node.name)
        return lambda ctx: get(ctx, target(ctx))

    def _Indexer(self, node: ast.Indexer):
        target, index = self.expr(node.target), self.expr(node.index)

        def run(ctx: Context) -> Any:
            """The element at a 0-based index, or null when the index is out of range (CQL)."""
            value, i = target(ctx), index(ctx)
            if value is None or i is None:
                return None
            if not isinstance(value, (str, list, tuple)):  # a fact of another type than the model declares
                raise CqlRuntimeError("cannot index into a value that is not a String or a List")
            if i < 0 or i >= len(value):
                return None
            return value[i]
        return _guard(run, node)

    # calls --------------------------------------------------------------------------
    def _Call(self, node: ast.Call):
        compiled_args = [self._typed(arg) for arg in node.args]
        closures = [c for c, _ in compiled_args]
        arg_types = [t for _, t in compiled_args]
        target = self.targets[id(node)]
        if isinstance(target, UserTarget):
            return self._user_call(target.function, closures, arg_types)
        spec = target.spec
        if target.argument_types is not None:
            closures = [_coerce(c, a, t) for c, a, t in zip(closures, arg_types, target.argument_types)]
        if spec.evidence == "none":
            closures = [_consuming(c, t) for c, t in zip(closures, arg_types)]
        return _guard(self._builtin_call(spec, closures), node)

    @staticmethod
    def _builtin_call(spec: fn.FunctionSpec, args: list[Closure]) -> Closure:
        impl = spec.impl
        if spec.needs_context:
            if not args:
                return lambda ctx: impl(ctx)
            if spec.propagates_null:
                def ctx_call(ctx: Context) -> Any:
                    """Call a context-aware built-in; a null argument gives null without calling it."""
                    values = [a(ctx) for a in args]
                    return None if None in values else impl(ctx, *values)
                return ctx_call
            return lambda ctx: impl(ctx, *[a(ctx) for a in args])
        if spec.evidence == "reads":
            (arg,) = args

            def reads(ctx: Context) -> Any:
                """Call a built-in that reads its whole argument: the argument's records become evidence."""
                value = arg(ctx)
                if value is None:
                    return None if spec.propagates_null else impl(None)
                collect_record_sources(value, ctx.ev)
                return impl(value)
            return reads
        if spec.evidence == "picks":
            def picks(ctx: Context) -> Any:
                """Call a built-in that picks one element: only the picked record becomes evidence."""
                values = [a(ctx) for a in args]
                if spec.propagates_null and None in values:
                    return None
                result = impl(*values)
                if isinstance(result, Record) and result.source:
                    ctx.ev.add(result.source)
                return result
            return picks
        if len(args) == 1 and spec.propagates_null:
            (a0,) = args

            def one(ctx: Context) -> Any:
                """Call a one-argument built-in, with null in giving null out."""
                v = a0(ctx)
                return None if v is None else impl(v)
            return one
        if len(args) == 2 and spec.propagates_null:
            a0, a1 = args

            def two(ctx: Context) -> Any:
                """Call a two-argument built-in, with a null argument giving null."""
                v0, v1 = a0(ctx), a1(ctx)
                return None if v0 is None or v1 is None else impl(v0, v1)
            return two

        def many(ctx: Context) -> Any:
            """Call a built-in with any number of arguments."""
            values = [a(ctx) for a in args]
            if spec.propagates_null and None in values:
                return None
            return impl(*values)
        return many

    def _user_call(self, function: ast.FunctionDef, closures: list[Closure], arg_types: list[T.CqlType]) -> Closure:
        compiled = self._function(function)
        args = [_coerce(c, a, p) for c, a, p in zip(closures, arg_types, compiled.operand_types)]
        invoke = self.invoker(function)
        return lambda ctx: invoke(ctx, [a(ctx) for a in args])

    def invoker(self, function: ast.FunctionDef) -> Callable[[Context, list], Any]:
        """invoke(ctx, argument values): the user function's body with its operands bound."""
        compiled = self._function(function)
        names = compiled.operand_names
        function_key = id(function)

        only_name = names[0] if len(names) == 1 else None
        remembered: dict[tuple, Any] | None = {} if self._remembers(function, compiled) else None
        # a concept or code argument is kept by its content: within an evaluation, by its identity
        by_content = remembered is not None and any(kind in _CONTENT_KEYED for kind in compiled.operand_types)

        def call(ctx: Context, values: list) -> Any:
            """The function body's value with its operands bound, computed once per evaluation and
            arguments (or kept across evaluations: `_remembers`): a repeated call gives the kept value
            and adds the same evidence again."""
            if only_name is not None:   # the usual case, without building an iterator
                value = values[0]
                kind = type(value)
                key = (function_key, value if kind is str or value is None
                       else (object, id(value)) if kind in _BY_IDENTITY
                       else (_RECORD_LIST, *map(id, value)) if kind is list and {*map(type, value)} <= _ONLY_RECORDS
                       else argument_key(value))   # argument_key's own answer, the usual ones without a call
            else:   # argument_key's answers, strings, nulls, records and concepts without a call
                key = (function_key, *[value if value is None or type(value) is str
                                       else (object, id(value)) if type(value) in _BY_IDENTITY
                                       else argument_key(value) for value in values])
            if remembered is not None and not by_content:
                known = remembered.get(key, _UNKNOWN)
                if known is not _UNKNOWN:
                    return known
            kept = ctx.call_cache.get(key)
            if kept is not None:
                if kept[1]:
                    ctx.ev.update(kept[1])
                return kept[0]
            if by_content:
                lasting = (function_key, *map(content_key, values))
                known = remembered.get(lasting, _UNKNOWN)
                if known is not _UNKNOWN:
                    ctx.call_cache[key] = (known, _NO_EVIDENCE, values)
                    return known
            saved_scope, saved_ev = ctx.scope, ctx.ev
            ctx.scope = {only_name: values[0]} if only_name is not None else dict(zip(names, values))
            own_ev = ctx.ev = set()
            try:
                value = compiled.body(ctx)
            finally:
                ctx.scope, ctx.ev = saved_scope, saved_ev
            if own_ev:
                saved_ev.update(own_ev)
            ctx.call_cache[key] = (value, own_ev, values)   # the arguments stay alive: their ids stay theirs
            if remembered is not None and not own_ev and _short_texts(values):
                if len(remembered) >= REMEMBERED_CALLS:
                    remembered.clear()   # bounded: texts never seen again (each patient's own) cannot pile up
                remembered[lasting if by_content else key] = value
            return value
        return call

    def _remembers(self, function: ast.FunctionDef, compiled: CompiledFunction) -> bool:
        """True when a call's value can be kept across evaluations: the body reads nothing of the
        evaluation (constants.py), the value is a text, number or truth value, and the arguments are
        those or concepts and codes (kept by their content, `content_key`): equal keys are then equal
        values (never identities, which a later evaluation reuses) and no record, hence no evidence,
        is involved."""
        return (id(function) in self.remembered_functions and compiled.returns in _KEPT_VALUE_TYPES
                and all(kind in _KEPT_VALUE_TYPES or kind in _CONTENT_KEYED
                        or (isinstance(kind, T.ListType) and kind.element == T.STRING)
                        for kind in compiled.operand_types))

    # operators --------------------------------------------------------------------------
    def _Unary(self, node: ast.Unary):
        operand, t = self._typed(node.operand)
        op = node.op
        if op == "not":
            return lambda ctx: ops.logical_not(operand(ctx))
        if op == "exists":
            def exists(ctx: Context) -> bool:
                """True when the list has a non-null element; those elements become evidence."""
                value = operand(ctx)
                if not value:
                    return False
                if None not in value:   # the usual list: every element is present (`in` tests identity first)
                    collect_record_sources(value, ctx.ev)
                    return True
                present = [v for v in value if v is not None]
                collect_record_sources(present, ctx.ev)
                return bool(present)
            return exists
        if op == "plus":
            return operand
        if op == "negate":
            return _guard(lambda ctx: ops.negate(operand(ctx)), node)
        if op in ("distinct", "flatten"):
            impl = ops.distinct if op == "distinct" else ops.flatten
            return _guard(lambda ctx: impl(operand(ctx)), node)
        if op == "is null":
            operand = _consuming(operand, t)
            return lambda ctx: operand(ctx) is None
        if op == "is not null":
            operand = _consuming(operand, t)
            return lambda ctx: operand(ctx) is not None
        if op.startswith("is "):
            wanted = op.endswith("true")
            if op.startswith("is not "):
                return lambda ctx: operand(ctx) is not wanted
            return lambda ctx: operand(ctx) is wanted
        if op in ("start", "end"):
            impl = ops.start_of if op == "start" else ops.end_of
            return lambda ctx: impl(operand(ctx))
        component = op[:-5]   # "<component> from"

        def component_from(ctx: Context) -> Any:
            """A date/time component read at the offset of ctx.now, so it does not depend on the input's zone."""
            value = operand(ctx)
            if isinstance(value, datetime):   # every component is read at the evaluation's offset
                value = value.astimezone(ctx.now.tzinfo)
            return ops.component_of(value, component)
        return _guard(component_from, node)

    _LOGIC = {"xor": ops.logical_xor, "implies": ops.logical_implies}
    _EQUALITY = {"=": ops.equal, "!=": ops.not_equal, "~": ops.equivalent,
                 "!~": lambda a, b: not ops.equivalent(a, b)}
    _COMPARE = {"<": ops.less, "<=": ops.less_equal, ">": ops.greater, ">=": ops.greater_equal}
    _ARITHMETIC = {"+": ops.add, "-": ops.subtract, "*": ops.multiply, "/": ops.divide, "div": ops.truncated_divide,
                   "mod": ops.modulo, "^": ops.power, "&": ops.concatenate_ampersand}

    def _Binary(self, node: ast.Binary):
        op = node.op
        left, lt = self._typed(node.left)
        right, rt = self._typed(node.right)
        if op in ("and", "or"):
            # The truth tables are operators.py's; only the order of evaluation is decided here.
            logical_and, logical_or = ops.logical_and, ops.logical_or
            if op == "and":
                def and_(ctx: Context) -> bool | None:
                    """Three-valued `and`; after a false (which decides it) the right side is not evaluated."""
                    a = left(ctx)
                    if a is False:
                        return False
                    return logical_and(a, right(ctx))
                return and_

            def or_(ctx: Context) -> bool | None:
                """Three-valued `or`; after a true (which decides it) the right side is not evaluated."""
                a = left(ctx)
                if a is True:
                    return True
                return logical_or(a, right(ctx))
            return or_
        if op in self._LOGIC:
            impl = self._LOGIC[op]
            return lambda ctx: impl(left(ctx), right(ctx))
        left, right = _consuming(left, lt), _consuming(right, rt)
        if op in self._EQUALITY:
            impl = self._EQUALITY[op]
            return _guard(lambda ctx: impl(left(ctx), right(ctx)), node)
        if op in self._COMPARE:
            impl = self._COMPARE[op]
            return _guard(lambda ctx: impl(left(ctx), right(ctx)), node)
        if op in self._ARITHMETIC:
            impl = self._ARITHMETIC[op]
            if self.types[id(node)] == T.DECIMAL:   # Integer operands of Decimal arithmetic are Decimals (no 32-bit overflow)
                left, right = _coerce(left, lt, T.DECIMAL), _coerce(right, rt, T.DECIMAL)
            return _guard(lambda ctx: impl(left(ctx), right(ctx)), node)
        return self._membership(node, left, lt, right, rt)

    def _membership(self, node: ast.Binary, left: Closure, lt: T.CqlType, right: Closure, rt: T.CqlType) -> Closure:
        op, swapped = membership_form(node.op, lt)
        if swapped:
            left, lt, right, rt = right, rt, left, lt
        if op == "in":
            if rt == T.VALUESET:
                def in_valueset(ctx: Context) -> bool:
                    """Value set membership by code and system (a bare string by code only);
                    null is not a member."""
                    value, vs = left(ctx), right(ctx)
                    if value is None:
                        return False
                    if isinstance(value, str):
                        return vs.contains_code_text(value)
                    codes = value.codes if isinstance(value, Concept) else (value,)
                    return any(vs.contains(c.system, c.code) for c in codes)
                return in_valueset
            if isinstance(rt, T.ListType):
                return _guard(lambda ctx: ops.list_contains(right(ctx), left(ctx)), node)
            if isinstance(rt, T.IntervalType):
                return _guard(lambda ctx: ops.point_in_interval(left(ctx), right(ctx)), node)

            def in_any(ctx: Context) -> bool | None:
                """`in` on an operand whose type is known only at run time: interval, value set or list."""
                container = right(ctx)
                if isinstance(container, Interval):
                    return ops.point_in_interval(left(ctx), container)
                if isinstance(container, ValueSet):
                    value = left(ctx)
                    codes = value.codes if isinstance(value, Concept) else (value,)
                    return value is not None and any(container.contains(c.system, c.code) for c in codes)
                return ops.list_contains(container, left(ctx))
            return _guard(in_any, node)
        if op == "included in":
            if isinstance(lt, T.IntervalType) or lt == T.ANY:
                def included(ctx: Context) -> bool | None:
                    """`included in` for an interval or a point, decided by the run-time value."""
                    inner = left(ctx)
                    if isinstance(inner, Interval) or inner is None:
                        return ops.interval_included_in(inner, right(ctx))
                    return ops.point_in_interval(inner, right(ctx))
                return _guard(included, node)
            return _guard(lambda ctx: ops.point_in_interval(left(ctx), right(ctx)), node)
        if op == "overlaps":
            return _guard(lambda ctx: ops.overlaps(left(ctx), right(ctx)), node)
        impl = ops.before if op == "before" else ops.after
        return _guard(lambda ctx: impl(left(ctx), right(ctx)), node)

    def _Between(self, node: ast.Between):
        operand, low, high = self.expr(node.operand), self.expr(node.low), self.expr(node.high)

        def between(ctx: Context) -> bool | None:
            """Inclusive `between`, with CQL's null propagation."""
            value = operand(ctx)
            return ops.logical_and(ops.greater_equal(value, low(ctx)), ops.less_equal(value, high(ctx)))
        return _guard(between, node)

    def _DurationBetween(self, node: ast.DurationBetween):
        low, high = self.expr(node.low), self.expr(node.high)
        impl = ops.boundaries_between if node.difference else ops.whole_periods_between
        precision = node.precision
        return _guard(lambda ctx: impl(low(ctx), high(ctx), precision), node)

    def _Convert(self, node: ast.Convert):
        operand = self.expr(node.operand)
        unit = node.unit
        convert_quantity = fn.REGISTRY["ConvertQuantity"].impl

        def convert(ctx: Context) -> Any:
            """The quantity in the requested UCUM unit; null stays null."""
            value = operand(ctx)
            return None if value is None else convert_quantity(ops.as_quantity(value), unit)
        return _guard(convert, node)

    def _If(self, node: ast.If):
        result = self.types[id(node)]
        cond = self.expr(node.condition)
        then, tt = self._typed(node.then)
        other, ot = self._typed(node.otherwise)
        then, other = _coerce(then, tt, result), _coerce(other, ot, result)
        return lambda ctx: then(ctx) if cond(ctx) is True else other(ctx)

    def _Case(self, node: ast.Case):
        result = self.types[id(node)]
        comparand = self.expr(node.comparand) if node.comparand is not None else None
        items = []
        for when, then in node.items:
            w = self.expr(when)
            t_closure, tt = self._typed(then)
            items.append((w, _coerce(t_closure, tt, result)))
        other, ot = self._typed(node.otherwise)
        other = _coerce(other, ot, result)
        if comparand is None:
            def case(ctx: Context) -> Any:
                """The first branch whose condition is true (null counts as not true), else the else branch."""
                for w, t in items:
                    if w(ctx) is True:
                        return t(ctx)
                return other(ctx)
            return case

        def case_of(ctx: Context) -> Any:
            """The first branch whose value equals the comparand, else the else branch."""
            value = comparand(ctx)
            for w, t in items:
                if ops.equal(value, w(ctx)) is True:
                    return t(ctx)
            return other(ctx)
        return _guard(case_of, node)

    # retrieves and queries ------------------------------------------------------------------
    def _Retrieve(self, node: ast.Retrieve):
        target: RetrieveTarget = self.targets[id(node)]
        type_name, codes = target.type_name, target.codes
        if target.valueset is not None:
            return self._filtered_retrieve(type_name, target.valueset, target.code_path)
        return lambda ctx: ctx.retrieve(type_name, codes)

    @staticmethod
    def _filtered_retrieve(type_name: str, vs: ValueSet, code_path: str) -> Closure:
        """A retrieve through a value set with filters (ICD-10-CM is-a): the provider indexes exact codes
        only, so every record of the type is read once (cached per evaluation) and tested for membership,
        in the provider's order. Value sets without filters keep the provider's exact-code lookup."""
        def retrieve(ctx: Context) -> list:
            key = (type_name, vs)
            cached = ctx.retrieve_cache.get(key)
            if cached is None:
                cached = []
                for record in ctx.retrieve(type_name, None):
                    concept = record.get(code_path)
                    codes = concept.codes if isinstance(concept, Concept) else (concept,) if isinstance(concept, Code) else ()
                    if any(vs.contains(c.system, c.code) for c in codes):
                        cached.append(record)
                ctx.retrieve_cache[key] = cached
            return cached
        return retrieve

    def _Query(self, node: ast.Query):
        source = self.expr(node.source)
        alias = node.alias
        withs = [self._with_clause(w) for w in node.withs]
        where = self.expr(node.where) if node.where is not None else None
        ret = self.expr(node.return_) if node.return_ is not None else None
        distinct_rows = node.return_ is not None and not node.return_all
        sorter = self._sort(node.sort) if node.sort else None
        filters = withs + ([where] if where is not None else [])
        only_filter = filters[0] if len(filters) == 1 else None

        line, column = node.line, node.column

        def run(ctx: Context) -> Any:
            """Filter, project, deduplicate and sort the rows; a single (non-list) source gives a single result.

            Value-level failures are raised at the query's position, as `_guard` raises them (one frame
            instead of two per query); the rows' filters write to one evidence set, emptied per row."""
            try:
                value = source(ctx)
                if value is None:
                    return None
                is_single = not isinstance(value, list)
                rows = [value] if is_single else value
                scope = ctx.scope
                saved = scope.get(alias, _MISSING)
                kept = []
                outer_ev = ctx.ev
                try:
                    if filters:
                        row_ev: set[str] = set()
                        for row in rows:
                            scope[alias] = row
                            ctx.ev = row_ev
                            if only_filter is not None:
                                ok = only_filter(ctx) is True
                            else:
                                ok = all(f(ctx) is True for f in filters)
                            ctx.ev = outer_ev
                            if ok:
                                if row_ev:
                                    if type(row) is Record:
                                        # the row itself counts only where the result is used (First, Count, ...)
                                        row_ev.discard(row.source)
                                    outer_ev.update(row_ev)
                                kept.append(ret(ctx) if ret is not None else row)
                            if row_ev:
                                row_ev.clear()
                    elif ret is not None:
                        for row in rows:
                            scope[alias] = row
                            kept.append(ret(ctx))
                    else:
                        kept = list(rows)
                finally:
                    ctx.ev = outer_ev
                    _restore_alias(scope, alias, saved)
                if distinct_rows:
                    kept = ops.distinct(kept)
                if sorter is not None:
                    kept = sorter(ctx, kept)
                if is_single:
                    return kept[0] if kept else None
                return kept
            except EvaluationFailure:
                raise
            except VALUE_FAILURES as exc:
                return value_failure(exc, line, column)
        return run

    def _with_clause(self, clause: ast.WithClause) -> Closure:
        source = self.expr(clause.source)
        cond = self.expr(clause.condition)
        alias = clause.alias
        wanted = clause.kind == "with"

        def check(ctx: Context) -> bool:
            """True when some row satisfies the condition (`with`) or none does (`without`);
            only `with` matches are evidence."""
            rows = source(ctx) or []
            if not isinstance(rows, list):
                rows = [rows]
            scope = ctx.scope
            saved = scope.get(alias, _MISSING)
            found = False
            outer_ev = ctx.ev
            try:
                for row in rows:
                    scope[alias] = row
                    trial_ev = ctx.ev = set()
                    if cond(ctx) is True:
                        found = True
                        if wanted:   # `with`: the matching row is evidence; `without`: nothing matched is
                            outer_ev.update(trial_ev)
                        break
            finally:
                ctx.ev = outer_ev
                _restore_alias(scope, alias, saved)
            return found is wanted
        return check

    def _sort(self, items: list[ast.SortItem]):
        keys = []   # (reader of a row's element, or closure of a key expression, or neither; descending)
        for item in items:
            if item.expression is None:
                keys.append((None, None, item.descending))
            elif self.targets.get(id(item)) == ROW_ELEMENT:
                name = item.expression.name
                keys.append(((member_getter(name, track=False), name), None, item.descending))
            else:
                keys.append((None, self.expr(item.expression), item.descending))

        def sort(ctx: Context, rows: list[Any]) -> list[Any]:
            """Stable sort by the items (last item first, so the first item decides); reading keys is not evidence."""
            if not rows:
                return rows
            outer_ev = ctx.ev
            ctx.ev = set()      # reading sort keys is not evidence
            scope = ctx.scope
            saved = scope.get(ROW, _MISSING)
            try:
                for element, closure, descending in reversed(keys):
                    if element is not None:   # an element of the row: a record's field read in place
                        get, name = element
                        row_keys = [row.fields.get(name) if type(row) is Record else get(row) for row in rows]
                    elif closure is not None:
                        row_keys = []
                        for row in rows:
                            scope[ROW] = row
                            row_keys.append(closure(ctx))
                    else:
                        row_keys = rows
                    rows = ops.sort_by_keys(rows, row_keys, descending)
            finally:
                ctx.ev = outer_ev
                _restore_alias(scope, ROW, saved)
            return rows
        return sort

    # selectors -------------------------------------------------------------------------------
    def _IntervalSelector(self, node: ast.IntervalSelector):
        point = self.types[id(node)].point
        low, lt = self._typed(node.low)
        high, ht = self._typed(node.high)
        low_closed, high_closed = node.low_closed, node.high_closed
        low, high = _coerce(low, lt, point), _coerce(high, ht, point)

        def interval(ctx: Context) -> Interval:
            """The interval, rejecting low > high and an open end on a one-point interval at run time."""
            lo, hi = low(ctx), high(ctx)
            if lo is not None and hi is not None:
                order = ops.compare(lo, hi)
                if order > 0:
                    raise CqlRuntimeError("an interval's low bound is greater than its high bound")
                if order == 0 and not (low_closed and high_closed):
                    raise CqlRuntimeError("an interval cannot be both closed and open on the same point")
            return Interval(lo, hi, low_closed, high_closed)
        return _guard(interval, node)

    def _TupleSelector(self, node: ast.TupleSelector):
        names = [name for name, _ in node.elements]
        closures = [self.expr(value_node) for _, value_node in node.elements]
        return lambda ctx: CqlTuple(dict(zip(names, [c(ctx) for c in closures])))

    def _ListSelector(self, node: ast.ListSelector):
        element = self.types[id(node)].element
        closures = [_coerce(c, t, element) for c, t in (self._typed(item) for item in node.items)]
        return lambda ctx: [c(ctx) for c in closures]
