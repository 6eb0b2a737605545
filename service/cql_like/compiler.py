"""Syntax tree -> Python closures, with name resolution and type checks.

Every problem a library can have without data (unknown name, value set,
function, field; wrong argument or operand type; bad unit) is found here, all
at once, with positions. The result is one closure per define: evaluation
calls closures directly, with no tree walking or dispatch per node.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

from . import ast
from . import functions as fn
from . import operators as ops
from . import regex_guard
from . import types as T
from .errors import (CqlError, CqlNameError, CqlRuntimeError, CqlTypeError, EvaluationFailure, UnitError,
                     closest_name, did_you_mean)
from .model import ModelInfo
from .parser import source_line
from .quantity import Quantity, is_valid_unit
from .runtime import Context, collect_record_sources
from .valuesets import ValueSet
from .values import Code, Concept, CqlTuple, Interval, Record

Closure = Callable[[Context], Any]
_MISSING = object()
_ROW = "\x00row"   # scope slot of the row a sort item reads


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
    """A compiled user function; body is None only while its own body is being compiled."""
    name: str
    operand_names: list[str]
    operand_types: list[T.CqlType]
    returns: T.CqlType
    body: Closure | None
    node: ast.FunctionDef


def _fail(ctx):  # placeholder for parts that failed to compile (never evaluated)
    raise RuntimeError("evaluated a part of a library that failed to compile")


def _guard(closure: Closure, node: ast.Node) -> Closure:
    """Turn value-level failures (units, dates, regex) into EvaluationFailure at this node's position."""
    line, column = node.line, node.column

    def guarded(ctx: Context) -> Any:
        """The closure with value-level failures raised at this node's position; division by zero is null, as in CQL."""
        try:
            return closure(ctx)
        except EvaluationFailure:
            raise
        except (UnitError, CqlRuntimeError) as exc:
            raise EvaluationFailure(str(exc).split("\n")[0], line, column) from None
        except ZeroDivisionError:
            return None
        except (ArithmeticError, ValueError, TypeError, OverflowError):
            raise EvaluationFailure("this expression cannot be evaluated on these values", line, column) from None
    return guarded


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
                                  if isinstance(value, CqlTuple) else value)
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


def _consuming(closure: Closure) -> Closure:
    """The operand's records become evidence: an operator read the whole value (=, is null, Length, ...)."""
    def consumed(ctx: Context) -> Any:
        """The closure's value, with its records recorded as evidence."""
        value = closure(ctx)
        kind = type(value)
        if kind is list or kind is Record or kind is CqlTuple:
            collect_record_sources(value, ctx.ev)
        return value
    return consumed


class Compiler:
    """Checks a parsed library and turns it into closures, collecting every error rather than stopping at the first."""
    def __init__(self, library: ast.LibraryNode, *, source: str, filename: str, model: ModelInfo,
                 valuesets: Mapping[str, ValueSet]) -> None:
        self.lib = library
        self.source = source
        self.filename = filename
        self.model = model
        self.available_valuesets = valuesets
        self.errors: list[CqlError] = []
        self.codesystems: dict[str, str] = {}
        self.valuesets: dict[str, ValueSet] = {}
        self.codes: dict[str, Code] = {}
        self.parameters: dict[str, CompiledParameter] = {}
        self.define_nodes: dict[str, ast.ExpressionDef] = {}
        self.defines: dict[str, CompiledDefine] = {}
        self.function_nodes: dict[str, list[ast.FunctionDef]] = {}
        self.functions: dict[int, CompiledFunction] = {}
        self._signatures: dict[int, tuple[list[str], list[T.CqlType]]] = {}
        self._compiling: list[str] = []
        self._compiling_functions: list[ast.FunctionDef] = []

    # ---- errors -----------------------------------------------------------
    def error(self, cls: type[CqlError], message: str, node: ast.Node | None = None, *, line: int | None = None,
              column: int | None = None, suggest: tuple[str, Iterable[str]] | None = None,
              **fields: Any) -> tuple[Closure, T.CqlType]:
        """Record an error at the node (or explicit line/column); returns a placeholder so compilation goes on.

        `suggest` is (misspelt name, known names): the closest known name becomes the error's `suggestion`
        and the message's "(did you mean ...)"; `fields` are the class's own (`expected`, `found`).
        """
        line = line if line is not None else (node.line if node is not None else None)
        column = column if column is not None else (node.column if node is not None else None)
        if suggest is not None:
            fields["suggestion"] = closest_name(*suggest)
            message += did_you_mean(fields["suggestion"])
        self.errors.append(cls(message, filename=self.filename, line=line, column=column,
                               source_line=source_line(self.source, line), **fields))
        return _fail, T.ANY

    # ---- declarations -------------------------------------------------------
    def compile(self) -> None:
        """Compile every declaration and statement; problems land in `self.errors`, sorted by position."""
        lib = self.lib
        for using in lib.usings:
            if using.model != "System" and using.model != self.model.model:
                wanted = f"using {self.model.model}" + (f" version '{self.model.version}'" if self.model.version else "")
                if using.model == "FHIR":
                    self.error(CqlNameError, f"model 'FHIR' is not available: this engine reads normalized facts, "
                                             f"not FHIR resources; declare `{wanted}`", using,
                               suggestion=self.model.model)
                else:
                    self.error(CqlNameError, f"unknown model '{using.model}'; this engine provides "
                                             f"'{self.model.model}' (`{wanted}`)", using, suggestion=self.model.model)
            elif using.version and self.model.version and using.version != self.model.version and using.model != "System":
                self.error(CqlNameError, f"model {using.model} version '{using.version}' is not available "
                                         f"(have '{self.model.version}')", using)
        for ctxdef in lib.contexts:
            if ctxdef.name != "Patient":
                self.error(CqlNameError, f"unknown context '{ctxdef.name}'; only 'context Patient' is supported", ctxdef)
        for cs in lib.codesystems:
            self._declare(cs, self.codesystems, cs.url)
        for vs in lib.valuesets:
            found = self.available_valuesets.get(vs.url)
            if found is None:
                self.error(CqlNameError, f"value set '{vs.url}' (\"{vs.name}\") not found among the loaded value sets",
                           vs, suggest=(vs.url, self.available_valuesets))
                found = ValueSet(vs.url, frozenset())
            self._declare(vs, self.valuesets, found)
        for code in lib.codes:
            system = self.codesystems.get(code.system)
            if system is None:
                self.error(CqlNameError, f"unknown code system \"{code.system}\"", code,
                           suggest=(code.system, self.codesystems))
            self._declare(code, self.codes, Code(code.code, system, code.display))
        for statement in lib.statements:
            if isinstance(statement, ast.ExpressionDef):
                if statement.name in self.define_nodes:
                    self.error(CqlNameError, f"\"{statement.name}\" is defined twice", statement)
                self.define_nodes[statement.name] = statement
            elif isinstance(statement, ast.FunctionDef):
                self.function_nodes.setdefault(statement.name, []).append(statement)
        self._check_function_declarations()
        for param in lib.parameters:
            self._compile_parameter(param)
        for name, node in self.define_nodes.items():
            for kind, table in (("parameter", self.parameters), ("value set", self.valuesets), ("code", self.codes)):
                if name in table:
                    self.error(CqlNameError, f"define \"{name}\" has the name of a {kind}", node)
        for name in self.define_nodes:
            self.compile_define(name)
        for overloads in self.function_nodes.values():
            for node in overloads:
                self._function(node)
        self.errors.sort(key=lambda e: (e.line or 0, e.column or 0))

    def _check_function_declarations(self) -> None:
        """Each operand name once per function, each signature once per name (else calls are ambiguous)."""
        for name, overloads in self.function_nodes.items():
            seen: dict[tuple[T.CqlType, ...], ast.FunctionDef] = {}
            for node in overloads:
                names, types = self._signature(node)
                for i, operand in enumerate(names):
                    if operand in names[:i]:
                        self.error(CqlNameError, f"function {name} has two operands named {operand}", node)
                key = tuple(types)
                if key in seen:
                    self.error(CqlNameError, f"function {name}(" + ", ".join(str(t) for t in types)
                               + f") is defined twice (first at line {seen[key].line})", node)
                seen.setdefault(key, node)

    def _signature(self, node: ast.FunctionDef) -> tuple[list[str], list[T.CqlType]]:
        done = self._signatures.get(id(node))
        if done is None:
            done = self._signatures[id(node)] = ([n for n, _ in node.operands],
                                                 [self.type_of_spec(t) for _, t in node.operands])
        return done

    def _declare(self, node, table: dict, value) -> None:
        if node.name in table:
            self.error(CqlNameError, f"\"{node.name}\" is declared twice", node)
        table[node.name] = value

    def _compile_parameter(self, node: ast.ParameterDef) -> None:
        declared = self.type_of_spec(node.type_spec) if node.type_spec is not None else None
        default, default_type = (None, T.ANY)
        if node.default is not None:
            default, default_type = self.expr(node.default, {})
            if declared is not None and not T.assignable(default_type, declared):
                self.error(CqlTypeError, f"default of parameter \"{node.name}\" is {default_type}, declared {declared}",
                           node.default, expected=str(declared), found=str(default_type))
            elif declared is not None:
                default = _coerce(default, default_type, declared)
        self.parameters[node.name] = CompiledParameter(node.name, declared or default_type, default, node)

    def compile_define(self, name: str) -> CompiledDefine:
        """The compiled define, compiling it on first use (so defines may refer forward) and reporting cycles."""
        done = self.defines.get(name)
        if done is not None:
            return done
        node = self.define_nodes[name]
        if name in self._compiling:
            cycle = " -> ".join(self._compiling[self._compiling.index(name):] + [name])
            self.error(CqlNameError, f"define \"{name}\" refers to itself: {cycle}", node)
            return CompiledDefine(name, _fail, T.ANY, node)
        self._compiling.append(name)
        try:
            closure, typ = self.expr(node.expression, {})
        finally:
            self._compiling.pop()
        compiled = CompiledDefine(name, closure, typ, node)
        self.defines[name] = compiled
        return compiled

    def _function(self, node: ast.FunctionDef) -> CompiledFunction:
        done = self.functions.get(id(node))
        if done is not None:
            return done
        names, types = self._signature(node)
        declared = self.type_of_spec(node.returns) if node.returns is not None else None
        compiled = CompiledFunction(node.name, names, types, declared or T.ANY, None, node)
        self.functions[id(node)] = compiled
        self._compiling_functions.append(node)
        try:
            body, body_type = self.expr(node.body, dict(zip(names, types)))
        finally:
            self._compiling_functions.pop()
        if declared is not None and not T.assignable(body_type, declared):
            self.error(CqlTypeError, f"function {node.name} is declared to return {declared} but its body is {body_type}",
                       node.body, expected=str(declared), found=str(body_type))
        elif declared is not None:
            body = _coerce(body, body_type, declared)
        compiled.body = body
        compiled.returns = declared or body_type
        return compiled

    # ---- types ---------------------------------------------------------------
    def type_of_spec(self, spec: ast.Node) -> T.CqlType:
        """The static type a type specifier names; unknown names are reported and checked as Any."""
        if isinstance(spec, ast.NamedTypeSpec):
            if spec.namespace not in (None, "System", self.model.model):
                self.error(CqlNameError, f"unknown model '{spec.namespace}'", spec)
                return T.ANY
            if spec.name in T.SYSTEM_TYPES and spec.namespace in (None, "System"):
                return T.SYSTEM_TYPES[spec.name]
            if spec.name in self.model.types:
                return T.CqlType(spec.name)
            candidates = list(T.SYSTEM_TYPES) + list(self.model.types)
            self.error(CqlNameError, f"unknown type '{spec.name}'", spec, suggest=(spec.name, candidates))
            return T.ANY
        if isinstance(spec, ast.ListTypeSpec):
            return T.list_of(self.type_of_spec(spec.element))
        if isinstance(spec, ast.IntervalTypeSpec):
            return T.interval_of(self.type_of_spec(spec.point))
        if isinstance(spec, ast.TupleTypeSpec):
            return T.tuple_of(tuple((n, self.type_of_spec(t)) for n, t in spec.elements))
        return T.ANY

    # ---- expressions -----------------------------------------------------------
    def expr(self, node: ast.Node, env: dict[str, T.CqlType]) -> tuple[Closure, T.CqlType]:
        """Compile one expression in an environment of operand/alias types; dispatches on the node class."""
        method = getattr(self, "_" + type(node).__name__)
        return method(node, env)

    def _Literal(self, node: ast.Literal, env):
        kind, value = node.kind, node.value
        if kind == "Null":
            return (lambda ctx: None), T.ANY
        if kind == "Boolean":
            return ((lambda ctx: True) if value else (lambda ctx: False)), T.BOOLEAN
        if kind == "String":
            return (lambda ctx: value), T.STRING
        if kind == "Integer":
            number = int(value)
            if number > 2**31 - 1:
                return self.error(CqlTypeError, f"integer {value} is out of range; write it as a decimal", node)
            return (lambda ctx: number), T.INTEGER
        if kind == "Decimal":
            dec = Decimal(value)
            if dec.as_tuple().exponent < -8:
                return self.error(CqlTypeError, f"decimal {value} has more than 8 decimal places", node)
            return (lambda ctx: dec), T.DECIMAL
        if kind == "Quantity":
            number, unit = value
            if unit not in ops.TIME_UNITS and not is_valid_unit(unit):
                return self.error(CqlTypeError, f"'{unit}' is not a valid UCUM unit", node)
            quantity = Quantity(Decimal(number), unit)
            return (lambda ctx: quantity), T.QUANTITY
        if kind == "Date":
            parsed = ops.parse_date(value)
            if parsed is None:
                return self.error(CqlTypeError, f"@{value} is not a valid date", node)
            return (lambda ctx: parsed), T.DATE
        if kind == "DateTime":
            parsed = ops.parse_datetime(value)
            if parsed is None:
                return self.error(CqlTypeError, f"@{value} is not a valid datetime", node)
            return (lambda ctx: parsed), T.DATETIME
        return self.error(CqlTypeError, f"unsupported literal {kind}", node)

    def _all_names(self, env) -> list[str]:
        return (list(env) + list(self.define_nodes) + list(self.parameters) + list(self.valuesets)
                + list(self.codes) + list(self.codesystems) + ["Patient"])

    def _NameRef(self, node: ast.NameRef, env):
        name = node.name
        row_type = env.get(_ROW)
        if row_type is not None:
            field_type = self._field_type(row_type, name)
            if field_type is not None:
                getter = self._member_getter(name, track=False)
                return (lambda ctx: getter(ctx.scope[_ROW])), field_type
        if name in env and name != _ROW:
            return (lambda ctx: ctx.scope[name]), env[name]
        if name in self.define_nodes:
            compiled = self.compile_define(name)
            return (lambda ctx: ctx.library.define_value(ctx, name)), compiled.type
        if name in self.parameters:
            param = self.parameters[name]
            return (lambda ctx: ctx.library.parameter_value(ctx, name)), param.type
        if name in self.valuesets:
            vs = self.valuesets[name]
            return (lambda ctx: vs), T.VALUESET
        if name in self.codes:
            code = self.codes[name]
            return (lambda ctx: code), T.CODE
        if name in self.codesystems:
            return self.error(CqlTypeError, f"code system \"{name}\" cannot be used as a value", node)
        if name == "Patient":
            return (lambda ctx: ctx.patient()), T.CqlType(self.model.patient_type)
        if row_type == T.ANY:   # a sort item over rows of unknown type: an element of the row
            getter = self._member_getter(name, track=False)
            return (lambda ctx: getter(ctx.scope[_ROW])), T.ANY
        return self.error(CqlNameError, f"unknown name \"{name}\"",
                          node, suggest=(name, self._all_names(env)))

    # fields -----------------------------------------------------------------------
    def _field_type(self, target: T.CqlType, name: str) -> T.CqlType | None:
        if target == T.ANY:
            return None
        if isinstance(target, T.TupleType):
            return target.element(name)
        model_type = self.model.types.get(target.name) if type(target) is T.CqlType else None
        if model_type is not None:
            return model_type.fields.get(name)
        builtin = {"Quantity": {"value": T.DECIMAL, "unit": T.STRING},
                   "Code": {"code": T.STRING, "system": T.STRING, "display": T.STRING, "version": T.STRING},
                   "Concept": {"codes": T.list_of(T.CODE), "display": T.STRING}}.get(target.name)
        if builtin is not None and type(target) is T.CqlType:
            return builtin.get(name)
        if isinstance(target, T.IntervalType):
            return {"low": target.point, "high": target.point, "lowClosed": T.BOOLEAN, "highClosed": T.BOOLEAN}.get(name)
        return None

    @staticmethod
    def _member_getter(name: str, track: bool = True):
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
            if isinstance(value, CqlTuple):
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

    def _Member(self, node: ast.Member, env):
        target, target_type = self.expr(node.target, env)
        name = node.name
        if target is _fail:
            return _fail, T.ANY
        element_type, is_list = target_type, False
        if isinstance(target_type, T.ListType):
            element_type, is_list = target_type.element, True
        result_type = T.list_of(T.ANY) if is_list else T.ANY
        if element_type != T.ANY:
            field_type = self._field_type(element_type, name)
            if field_type is None:
                fhir = self._fhir_counterpart(node, element_type, env)
                if fhir is not None:
                    fhir_path, record, facts_field = fhir
                    return self.error(CqlTypeError, f"{element_type} has no element '{name}' (the facts model is "
                                                    f"not FHIR: FHIR's {record}.{fhir_path} is the facts field "
                                                    f"'{facts_field}')", node, suggestion=facts_field)
                candidates = self._field_names(element_type)
                return self.error(CqlTypeError, f"{element_type} has no element '{name}'", node,
                                  suggest=(name, candidates))
            result_type = T.list_of(field_type.element if isinstance(field_type, T.ListType) else field_type) \
                if is_list else field_type
        get = self._member_getter(name)
        return (lambda ctx: get(ctx, target(ctx))), result_type

    def _fhir_counterpart(self, node: ast.Member, target_type: T.CqlType, env) -> tuple[str, str, str] | None:
        """(FHIR path, record type, facts field) when the member is a FHIR element name the model maps.

        `O.valueQuantity` is looked up on O's record type; `C.clinicalStatus.coding` as the path
        `clinicalStatus.coding` on C's. The mapping is the model file's `fhirNames`: data, not code.
        """
        paths = [(node.name, target_type)]
        if isinstance(node.target, ast.Member):
            # the target compiled without error, so its own target does too: this only reads its type
            paths.append((f"{node.target.name}.{node.name}", self.expr(node.target.target, env)[1]))
        for path, owner_type in paths:
            if isinstance(owner_type, T.ListType):
                owner_type = owner_type.element
            model_type = self.model.types.get(getattr(owner_type, "name", None) or "")
            if model_type is not None and path in model_type.fhir_names:
                return path, model_type.name, model_type.fhir_names[path]
        return None

    def _field_names(self, target: T.CqlType) -> list[str]:
        if isinstance(target, T.TupleType):
            return [k for k, _ in target.elements]
        model_type = self.model.types.get(target.name)
        return list(model_type.fields) if model_type else []

    def _Indexer(self, node: ast.Indexer, env):
        target, target_type = self.expr(node.target, env)
        index, index_type = self.expr(node.index, env)
        if not T.assignable(index_type, T.INTEGER):
            return self.error(CqlTypeError, f"an index must be Integer, got {index_type}", node.index,
                              expected="Integer", found=str(index_type))
        if target_type == T.STRING:
            result_type = T.STRING
        elif isinstance(target_type, T.ListType):
            result_type = target_type.element
        elif target_type == T.ANY:
            result_type = T.ANY
        else:
            return self.error(CqlTypeError, f"cannot index into {target_type}", node)

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
        return _guard(run, node), result_type

    # calls --------------------------------------------------------------------------
    def _Call(self, node: ast.Call, env):
        compiled_args = [self.expr(arg, env) for arg in node.args]
        closures = [c for c, _ in compiled_args]
        arg_types = [t for _, t in compiled_args]
        if any(c is _fail for c in closures):
            if node.name not in self.function_nodes and node.name not in fn.REGISTRY:
                self._call_name_error(node)
            return _fail, T.ANY
        if node.name in self.function_nodes:
            return self._user_call(node, closures, arg_types)
        spec = fn.REGISTRY.get(node.name)
        if spec is None:
            return self._call_name_error(node)
        try:
            result_type = spec.resolve(arg_types)
        except fn.SignatureMismatch as exc:
            return self.error(CqlTypeError, f"{node.name} {exc} (signature: {spec.signature})", node,
                              expected=exc.expected, found=exc.found)
        if node.name == "Coalesce":   # the picked argument takes the common type (Integer -> Decimal)
            targets = [result_type] * len(arg_types) if len(arg_types) > 1 else [T.list_of(result_type)]
            closures = [_coerce(c, a, t) for c, a, t in zip(closures, arg_types, targets)]
        if node.name in ("Matches", "ReplaceMatches") and len(node.args) >= 2 and isinstance(node.args[1], ast.Literal) \
                and node.args[1].kind == "String":
            problem = regex_guard.pattern_problem(node.args[1].value)
            if problem is not None:
                return self.error(CqlTypeError, f"{node.name} pattern {node.args[1].value!r}: {problem}", node.args[1])
        if spec.evidence == "none":
            closures = [_consuming(c) for c in closures]
        return _guard(self._builtin_call(spec, closures), node), result_type

    def _call_name_error(self, node: ast.Call):
        candidates = list(fn.REGISTRY) + list(self.function_nodes)
        return self.error(CqlNameError, f"unknown function {node.name}",
                          node, suggest=(node.name, candidates))

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
                if spec.propagates_null and any(v is None for v in values):
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
            if spec.propagates_null and any(v is None for v in values):
                return None
            return impl(*values)
        return many

    def _user_call(self, node: ast.Call, closures, arg_types):
        """CQL function resolution: the overload needing the fewest implicit conversions; a tie is ambiguous."""
        overloads = self.function_nodes[node.name]
        ranked = []
        for candidate in overloads:
            _, types = self._signature(candidate)
            if len(types) == len(arg_types) and all(T.assignable(a, p) for a, p in zip(arg_types, types)):
                ranked.append((sum(a != p for a, p in zip(arg_types, types)), candidate))
        if not ranked:
            wanted = "; ".join(f"{node.name}(" + ", ".join(str(t) for t in self._signature(c)[1]) + ")"
                               for c in overloads)
            got = ", ".join(str(t) for t in arg_types)
            return self.error(CqlTypeError, f"no overload of {node.name} accepts ({got}); declared: {wanted}", node)
        best = min(cost for cost, _ in ranked)
        chosen = [c for cost, c in ranked if cost == best]
        if len(chosen) > 1:
            options = "; ".join(f"{node.name}(" + ", ".join(str(t) for t in self._signature(c)[1]) + ")" for c in chosen)
            got = ", ".join(str(t) for t in arg_types)
            return self.error(CqlTypeError, f"call {node.name}({got}) is ambiguous between {options}", node)
        candidate = chosen[0]
        stack_ids = [id(f) for f in self._compiling_functions]
        if id(candidate) in stack_ids:
            path = self._compiling_functions[stack_ids.index(id(candidate)):]
            cycle = " -> ".join([f.name for f in path] + [candidate.name])
            return self.error(CqlNameError, f"function {candidate.name} calls itself ({cycle}); "
                                            "recursive functions are not supported", node)
        compiled = self._function(candidate)
        names = compiled.operand_names
        args = [_coerce(c, a, p) for c, a, p in zip(closures, arg_types, compiled.operand_types)]

        def call(ctx: Context) -> Any:
            """Evaluate the function body with its operands bound, restoring the caller's scope after."""
            values = [a(ctx) for a in args]
            saved = ctx.scope
            ctx.scope = dict(zip(names, values))
            try:
                return compiled.body(ctx)
            finally:
                ctx.scope = saved
        return call, compiled.returns

    # operators --------------------------------------------------------------------------
    def _Unary(self, node: ast.Unary, env):
        operand, t = self.expr(node.operand, env)
        op = node.op
        if operand is _fail:
            return _fail, T.ANY
        if op == "not":
            self._require(t, (T.BOOLEAN,), "not", node.operand)
            return (lambda ctx: ops.logical_not(operand(ctx))), T.BOOLEAN
        if op == "exists":
            if t != T.ANY and not isinstance(t, T.ListType):
                return self.error(CqlTypeError, f"exists needs a List, got {t}", node.operand,
                                  expected="List", found=str(t))

            def exists(ctx: Context) -> bool:
                """True when the list has a non-null element; those elements become evidence."""
                value = operand(ctx)
                if not value:
                    return False
                present = [v for v in value if v is not None]
                collect_record_sources(present, ctx.ev)
                return bool(present)
            return exists, T.BOOLEAN
        if op in ("negate", "plus"):
            self._require(t, (T.INTEGER, T.DECIMAL, T.QUANTITY), "unary " + ("-" if op == "negate" else "+"), node.operand)
            if op == "plus":
                return operand, t
            return _guard(lambda ctx: ops.negate(operand(ctx)), node), t
        if op in ("distinct", "flatten"):
            if t != T.ANY and not isinstance(t, T.ListType):
                return self.error(CqlTypeError, f"{op} needs a List, got {t}", node.operand,
                                  expected="List", found=str(t))
            if op == "flatten" and isinstance(t, T.ListType) and t.element != T.ANY \
                    and not isinstance(t.element, T.ListType):
                return self.error(CqlTypeError, f"flatten needs a List of Lists, got {t}", node.operand,
                                  expected="List of Lists", found=str(t))
            impl = ops.distinct if op == "distinct" else ops.flatten
            result = t
            if op == "flatten" and isinstance(t, T.ListType):
                result = t.element if isinstance(t.element, T.ListType) else t
            return _guard(lambda ctx: impl(operand(ctx)), node), result
        if op == "is null":
            operand = _consuming(operand)
            return (lambda ctx: operand(ctx) is None), T.BOOLEAN
        if op == "is not null":
            operand = _consuming(operand)
            return (lambda ctx: operand(ctx) is not None), T.BOOLEAN
        if op.startswith("is "):
            self._require(t, (T.BOOLEAN,), op, node.operand)
            negated = op.startswith("is not ")
            wanted = op.endswith("true")
            if negated:
                return (lambda ctx: operand(ctx) is not wanted), T.BOOLEAN
            return (lambda ctx: operand(ctx) is wanted), T.BOOLEAN
        if op in ("start", "end"):
            if t != T.ANY and not isinstance(t, T.IntervalType):
                return self.error(CqlTypeError, f"{op} of needs an Interval, got {t}", node.operand,
                                  expected="Interval", found=str(t))
            impl = ops.start_of if op == "start" else ops.end_of
            return (lambda ctx: impl(operand(ctx))), (t.point if isinstance(t, T.IntervalType) else T.ANY)
        if op.endswith(" from"):
            component = op[:-5]
            self._require(t, (T.DATE, T.DATETIME), op, node.operand)
            if component in ("hour", "minute", "second") and t == T.DATE:
                return self.error(CqlTypeError, f"a Date has no {component}", node)
            result = T.DATE if component == "date" else T.INTEGER

            def component_from(ctx: Context) -> Any:
                """A date/time component read at the offset of ctx.now, so it does not depend on the input's zone."""
                value = operand(ctx)
                if isinstance(value, datetime):   # every component is read at the evaluation's offset
                    value = value.astimezone(ctx.now.tzinfo)
                return ops.component_of(value, component)
            return _guard(component_from, node), result
        return self.error(CqlTypeError, f"unsupported operator {op}", node)

    def _require(self, t: T.CqlType, allowed: tuple[T.CqlType, ...], what: str, node: ast.Node) -> bool:
        if any(T.assignable(t, a) for a in allowed):
            return True
        names = " or ".join(str(a) for a in allowed)
        self.error(CqlTypeError, f"{what} needs {names}, got {t}", node, expected=names, found=str(t))
        return False

    _LOGIC = {"and": ops.logical_and, "or": ops.logical_or, "xor": ops.logical_xor, "implies": ops.logical_implies}
    _COMPARE = {"<": ops.less, "<=": ops.less_equal, ">": ops.greater, ">=": ops.greater_equal}

    def _Binary(self, node: ast.Binary, env):
        op = node.op
        left, lt = self.expr(node.left, env)
        right, rt = self.expr(node.right, env)
        if left is _fail or right is _fail:   # already reported: no cascade of errors
            return _fail, T.ANY
        if op not in self._LOGIC:
            left, right = _consuming(left), _consuming(right)
        if op in ("and", "or"):
            self._require(lt, (T.BOOLEAN,), op, node.left)
            self._require(rt, (T.BOOLEAN,), op, node.right)
            # The truth tables are operators.py's; only the order of evaluation is decided here.
            logical_and, logical_or = ops.logical_and, ops.logical_or
            if op == "and":
                def and_(ctx: Context) -> bool | None:
                    """Three-valued `and`; after a false (which decides it) the right side is not evaluated."""
                    a = left(ctx)
                    if a is False:
                        return False
                    return logical_and(a, right(ctx))
                return and_, T.BOOLEAN

            def or_(ctx: Context) -> bool | None:
                """Three-valued `or`; after a true (which decides it) the right side is not evaluated."""
                a = left(ctx)
                if a is True:
                    return True
                return logical_or(a, right(ctx))
            return or_, T.BOOLEAN
        if op in ("xor", "implies"):
            self._require(lt, (T.BOOLEAN,), op, node.left)
            self._require(rt, (T.BOOLEAN,), op, node.right)
            impl = self._LOGIC[op]
            return (lambda ctx: impl(left(ctx), right(ctx))), T.BOOLEAN
        if op in ("=", "!=", "~", "!~"):
            if T.common_type(lt, rt) is None:
                return self.error(CqlTypeError, f"cannot compare {lt} with {rt} using '{op}'", node)
            impl = {"=": ops.equal, "!=": ops.not_equal, "~": ops.equivalent,
                    "!~": lambda a, b: not ops.equivalent(a, b)}[op]
            return _guard(lambda ctx: impl(left(ctx), right(ctx)), node), T.BOOLEAN
        if op in self._COMPARE:
            common = T.common_type(lt, rt)
            if common is None or (common != T.ANY and common not in T.ORDERED):
                return self.error(CqlTypeError, f"cannot order {lt} and {rt} with '{op}'", node)
            impl = self._COMPARE[op]
            return _guard(lambda ctx: impl(left(ctx), right(ctx)), node), T.BOOLEAN
        if op in ("+", "-", "*", "/", "div", "mod", "^", "&"):
            result = self._arithmetic_type(op, lt, rt)
            if result is None:
                return self.error(CqlTypeError, f"operator '{op}' cannot be applied to {lt} and {rt}", node)
            impl = {"+": ops.add, "-": ops.subtract, "*": ops.multiply, "/": ops.divide, "div": ops.truncated_divide,
                    "mod": ops.modulo, "^": ops.power, "&": ops.concatenate_ampersand}[op]
            if result == T.DECIMAL:   # Integer operands of Decimal arithmetic are Decimals (no 32-bit overflow)
                left, right = _coerce(left, lt, T.DECIMAL), _coerce(right, rt, T.DECIMAL)
            return _guard(lambda ctx: impl(left(ctx), right(ctx)), node), result
        if op in ("in", "contains", "during", "includes", "included in", "overlaps", "before", "after"):
            return self._membership(node, op, left, lt, right, rt)
        return self.error(CqlTypeError, f"unsupported operator {op}", node)

    @staticmethod
    def _arithmetic_type(op: str, lt: T.CqlType, rt: T.CqlType) -> T.CqlType | None:
        numeric = (T.INTEGER, T.DECIMAL)
        if op == "&":
            return T.STRING if lt in (T.STRING, T.ANY) and rt in (T.STRING, T.ANY) else None
        if lt == T.ANY and rt == T.ANY:
            return T.ANY
        if lt == T.ANY or rt == T.ANY:
            known = rt if lt == T.ANY else lt
            if op == "/" and known in numeric:
                return T.DECIMAL
            if known in numeric + (T.QUANTITY, T.STRING, T.DATE, T.DATETIME):
                return T.ANY if known in (T.DATE, T.DATETIME) and lt == T.ANY else known
            return None
        if lt in numeric and rt in numeric:
            if op == "/":
                return T.DECIMAL
            if op == "^":
                return T.INTEGER if lt == rt == T.INTEGER else T.DECIMAL
            return T.INTEGER if lt == rt == T.INTEGER else T.DECIMAL
        if op in ("+", "-"):
            if lt == rt == T.QUANTITY:
                return T.QUANTITY
            if lt in (T.DATE, T.DATETIME) and rt == T.QUANTITY:
                return lt
            if op == "+" and lt == rt == T.STRING:
                return T.STRING
            return None
        if op in ("*", "/"):
            if T.QUANTITY in (lt, rt) and lt in numeric + (T.QUANTITY,) and rt in numeric + (T.QUANTITY,):
                return T.QUANTITY
        return None

    def _membership(self, node, op, left, lt, right, rt):
        if op == "contains":
            op, left, lt, right, rt = "in", right, rt, left, lt
        elif op == "includes":
            op, left, lt, right, rt = "included in", right, rt, left, lt
        elif op == "during":
            op = "included in" if isinstance(lt, T.IntervalType) else "in"
        if op in ("included in", "overlaps", "before", "after"):
            left_point = lt.point if isinstance(lt, T.IntervalType) else lt
            right_point = rt.point if isinstance(rt, T.IntervalType) else rt
            common = T.common_type(left_point, right_point)
            if common is None or (common != T.ANY and common not in T.ORDERED):
                return self.error(CqlTypeError, f"'{node.op}' cannot relate {lt} and {rt}: "
                                                "their points are of different types", node)
        if op == "in":
            if rt == T.VALUESET:
                if lt not in (T.CODE, T.CONCEPT, T.ANY, T.STRING):
                    return self.error(CqlTypeError, f"only a Code or Concept can be in a value set, got {lt}", node,
                                      expected="Code or Concept", found=str(lt))

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
                return in_valueset, T.BOOLEAN
            if isinstance(rt, T.ListType):
                if T.common_type(lt, rt.element) is None:
                    return self.error(CqlTypeError, f"{lt} cannot be an element of {rt}", node)
                return _guard(lambda ctx: ops.list_contains(right(ctx), left(ctx)), node), T.BOOLEAN
            if isinstance(rt, T.IntervalType):
                if T.common_type(lt, rt.point) is None:
                    return self.error(CqlTypeError, f"{lt} cannot be a point of {rt}", node)
                return _guard(lambda ctx: ops.point_in_interval(left(ctx), right(ctx)), node), T.BOOLEAN
            if rt == T.ANY:
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
                return _guard(in_any, node), T.BOOLEAN
            return self.error(CqlTypeError, f"'in' needs a List, Interval or value set on the right, got {rt}", node,
                              expected="List, Interval or value set", found=str(rt))
        if op == "included in":
            if not (isinstance(rt, T.IntervalType) or rt == T.ANY):
                return self.error(CqlTypeError, f"'{node.op}' needs an Interval, got {rt}", node,
                                  expected="Interval", found=str(rt))
            if isinstance(lt, T.IntervalType) or lt == T.ANY:
                def included(ctx: Context) -> bool | None:
                    """`included in` for an interval or a point, decided by the run-time value."""
                    inner = left(ctx)
                    if isinstance(inner, Interval) or inner is None:
                        return ops.interval_included_in(inner, right(ctx))
                    return ops.point_in_interval(inner, right(ctx))
                return _guard(included, node), T.BOOLEAN
            return _guard(lambda ctx: ops.point_in_interval(left(ctx), right(ctx)), node), T.BOOLEAN
        if op == "overlaps":
            for t, side in ((lt, node.left), (rt, node.right)):
                if not (isinstance(t, T.IntervalType) or t == T.ANY):
                    return self.error(CqlTypeError, f"overlaps needs Intervals, got {t}", side,
                                      expected="Interval", found=str(t))
            return _guard(lambda ctx: ops.overlaps(left(ctx), right(ctx)), node), T.BOOLEAN
        impl = ops.before if op == "before" else ops.after
        return _guard(lambda ctx: impl(left(ctx), right(ctx)), node), T.BOOLEAN

    def _Between(self, node: ast.Between, env):
        operand, t = self.expr(node.operand, env)
        low, lt = self.expr(node.low, env)
        high, ht = self.expr(node.high, env)
        if _fail in (operand, low, high):
            return _fail, T.ANY
        for bound in (lt, ht):
            common = T.common_type(t, bound)
            if common is None or (common != T.ANY and common not in T.ORDERED):
                return self.error(CqlTypeError, f"between cannot order {t} against {bound}", node)

        def between(ctx: Context) -> bool | None:
            """Inclusive `between`, with CQL's null propagation."""
            value = operand(ctx)
            return ops.logical_and(ops.greater_equal(value, low(ctx)), ops.less_equal(value, high(ctx)))
        return _guard(between, node), T.BOOLEAN

    def _DurationBetween(self, node: ast.DurationBetween, env):
        low, lt = self.expr(node.low, env)
        high, ht = self.expr(node.high, env)
        self._require(lt, (T.DATE, T.DATETIME), f"{node.precision} between", node.low)
        self._require(ht, (T.DATE, T.DATETIME), f"{node.precision} between", node.high)
        impl = ops.boundaries_between if node.difference else ops.whole_periods_between
        precision = node.precision
        return _guard(lambda ctx: impl(low(ctx), high(ctx), precision), node), T.INTEGER

    def _Convert(self, node: ast.Convert, env):
        operand, t = self.expr(node.operand, env)
        self._require(t, (T.QUANTITY,), "convert", node.operand)
        if not is_valid_unit(node.unit):
            return self.error(CqlTypeError, f"'{node.unit}' is not a valid UCUM unit", node)
        unit = node.unit

        def convert(ctx: Context) -> Any:
            """The quantity in the requested UCUM unit; null stays null."""
            value = operand(ctx)
            return None if value is None else fn.REGISTRY["ConvertQuantity"].impl(ops.as_quantity(value), unit)
        return _guard(convert, node), T.QUANTITY

    def _If(self, node: ast.If, env):
        cond, ct = self.expr(node.condition, env)
        self._require(ct, (T.BOOLEAN,), "if", node.condition)
        then, tt = self.expr(node.then, env)
        other, ot = self.expr(node.otherwise, env)
        result = self._branch_type([tt, ot], node)
        then, other = _coerce(then, tt, result), _coerce(other, ot, result)
        return (lambda ctx: then(ctx) if cond(ctx) is True else other(ctx)), result

    def _branch_type(self, types: list[T.CqlType], node) -> T.CqlType:
        result = T.ANY
        for t in types:
            common = T.common_type(result, t)
            if common is None:
                self.error(CqlTypeError, f"branches have different types: {result} and {t}", node)
                return T.ANY
            result = common
        return result

    def _Case(self, node: ast.Case, env):
        comparand = None
        if node.comparand is not None:
            comparand, comp_t = self.expr(node.comparand, env)
        items, types = [], []
        for when, then in node.items:
            w, wt = self.expr(when, env)
            if comparand is None:
                self._require(wt, (T.BOOLEAN,), "case when", when)
            elif T.common_type(comp_t, wt) is None:
                self.error(CqlTypeError, f"case compares {comp_t} with {wt}", when, expected=str(comp_t), found=str(wt))
            t_closure, tt = self.expr(then, env)
            items.append((w, t_closure))
            types.append(tt)
        other, ot = self.expr(node.otherwise, env)
        result = self._branch_type(types + [ot], node)
        items = [(w, _coerce(t_closure, t, result)) for (w, t_closure), t in zip(items, types)]
        other = _coerce(other, ot, result)
        if comparand is None:
            def case(ctx: Context) -> Any:
                """The first branch whose condition is true (null counts as not true), else the else branch."""
                for w, t in items:
                    if w(ctx) is True:
                        return t(ctx)
                return other(ctx)
            return case, result

        def case_of(ctx: Context) -> Any:
            """The first branch whose value equals the comparand, else the else branch."""
            value = comparand(ctx)
            for w, t in items:
                if ops.equal(value, w(ctx)) is True:
                    return t(ctx)
            return other(ctx)
        return _guard(case_of, node), result

    # retrieves and queries ------------------------------------------------------------------
    def _Retrieve(self, node: ast.Retrieve, env):
        model_type = self.model.types.get(node.type_name)
        if model_type is None:
            return self.error(CqlNameError, f"unknown type '{node.type_name}' in retrieve", node,
                              suggest=(node.type_name, self.model.types))
        type_name = node.type_name
        result = T.list_of(T.CqlType(type_name))
        if node.terminology is None:
            return (lambda ctx: ctx.retrieve(type_name, None)), result
        if not model_type.primary_code_path:
            return self.error(CqlTypeError, f"{type_name} has no code to filter on", node)
        term = node.terminology
        if term in self.valuesets and self.valuesets[term].has_filters:
            return self._filtered_retrieve(type_name, self.valuesets[term], model_type.primary_code_path), result
        if term in self.valuesets:
            codes = frozenset(Code(c.code, c.system) for c in self.valuesets[term].codes)
        elif term in self.codes:
            code = self.codes[term]
            codes = frozenset({Code(code.code, code.system)})
        else:
            candidates = list(self.valuesets) + list(self.codes)
            return self.error(CqlNameError, f"unknown value set or code \"{term}\"",
                              line=node.terminology_line, column=node.terminology_column, suggest=(term, candidates))
        return (lambda ctx: ctx.retrieve(type_name, codes)), result

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

    def _Query(self, node: ast.Query, env):
        source, source_type = self.expr(node.source, env)
        single = not isinstance(source_type, T.ListType) and source_type != T.ANY
        row_type = source_type.element if isinstance(source_type, T.ListType) else source_type
        alias = node.alias
        if alias in env or alias in self.define_nodes:
            self.error(CqlNameError, f"alias {alias} hides another name", node)
        inner_env = dict(env)
        inner_env.pop(_ROW, None)
        inner_env[alias] = row_type
        withs = [self._with_clause(w, inner_env) for w in node.withs]
        where = None
        if node.where is not None:
            where, wt = self.expr(node.where, inner_env)
            self._require(wt, (T.BOOLEAN,), "where", node.where)
        ret = None
        out_type = row_type
        if node.return_ is not None:
            ret, out_type = self.expr(node.return_, inner_env)
        distinct_rows = node.return_ is not None and not node.return_all
        sorter = self._sort(node.sort, out_type, env) if node.sort else None
        filters = withs + ([where] if where is not None else [])

        def run(ctx: Context) -> Any:
            """Filter, project, deduplicate and sort the rows; a single (non-list) source gives a single result."""
            value = source(ctx)
            if value is None:
                return None
            is_single = not isinstance(value, list)
            rows = [value] if is_single else value
            scope = ctx.scope
            saved = scope.get(alias, _MISSING)
            kept = []
            try:
                for row in rows:
                    scope[alias] = row
                    if filters:
                        outer_ev = ctx.ev
                        row_ev = ctx.ev = set()
                        try:
                            ok = all(f(ctx) is True for f in filters)
                        finally:
                            ctx.ev = outer_ev
                        if not ok:
                            continue
                        if isinstance(row, Record):
                            # the row itself counts only where the result is used (First, Count, ...)
                            row_ev.discard(row.source)
                        outer_ev.update(row_ev)
                    kept.append(ret(ctx) if ret is not None else row)
            finally:
                if saved is _MISSING:
                    scope.pop(alias, None)
                else:
                    scope[alias] = saved
            if distinct_rows:
                kept = ops.distinct(kept)
            if sorter is not None:
                kept = sorter(ctx, kept)
            if is_single:
                return kept[0] if kept else None
            return kept
        result_type = out_type if single else T.list_of(out_type)
        return _guard(run, node), result_type

    def _with_clause(self, clause: ast.WithClause, env):
        source, source_type = self.expr(clause.source, env)
        row_type = source_type.element if isinstance(source_type, T.ListType) else source_type
        if clause.alias in env or clause.alias in self.define_nodes:
            self.error(CqlNameError, f"alias {clause.alias} hides another name", clause)
        inner_env = dict(env)
        inner_env[clause.alias] = row_type
        cond, ct = self.expr(clause.condition, inner_env)
        self._require(ct, (T.BOOLEAN,), "such that", clause.condition)
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
                if saved is _MISSING:
                    scope.pop(alias, None)
                else:
                    scope[alias] = saved
            return found is wanted
        return check

    def _sort(self, items: list[ast.SortItem], row_type: T.CqlType, env):
        keys = []
        for item in items:
            if item.expression is None:
                keys.append((None, item.descending))
                continue
            sort_env = {k: v for k, v in env.items() if k != _ROW}
            sort_env[_ROW] = row_type if row_type != T.ANY else T.ANY
            if row_type == T.ANY and isinstance(item.expression, ast.NameRef):
                name = item.expression.name
                get = self._member_getter(name, track=False)
                keys.append(((lambda ctx, get=get: get(ctx.scope[_ROW])), item.descending))
                continue
            closure, key_type = self.expr(item.expression, sort_env)
            if key_type != T.ANY and key_type not in T.ORDERED:
                self.error(CqlTypeError, f"cannot sort by a {key_type}", item)
            keys.append((closure, item.descending))

        def sort(ctx: Context, rows: list[Any]) -> list[Any]:
            """Stable sort by the items (last item first, so the first item decides); reading keys is not evidence."""
            if not rows:
                return rows
            outer_ev = ctx.ev
            ctx.ev = set()      # reading sort keys is not evidence
            saved = ctx.scope.get(_ROW, _MISSING)
            try:
                for closure, descending in reversed(keys):
                    if closure is None:
                        rows = ops.sort_values(rows, lambda r: r, descending)
                        continue

                    def key(row: Any, closure: Closure = closure) -> Any:
                        """The sort key of one row, read with the row in the sort scope slot."""
                        ctx.scope[_ROW] = row
                        return closure(ctx)
                    decorated = [(key(r), r) for r in rows]
                    decorated = ops.sort_values(decorated, lambda pair: pair[0], descending)
                    rows = [r for _, r in decorated]
            finally:
                ctx.ev = outer_ev
                if saved is _MISSING:
                    ctx.scope.pop(_ROW, None)
                else:
                    ctx.scope[_ROW] = saved
            return rows
        return sort

    # selectors -------------------------------------------------------------------------------
    def _IntervalSelector(self, node: ast.IntervalSelector, env):
        low, lt = self.expr(node.low, env)
        high, ht = self.expr(node.high, env)
        point = T.common_type(lt, ht)
        if point is None or (point != T.ANY and point not in T.ORDERED):
            return self.error(CqlTypeError, f"interval bounds must be one ordered type, got {lt} and {ht}", node)
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
        return _guard(interval, node), T.interval_of(point)

    def _TupleSelector(self, node: ast.TupleSelector, env):
        elements = []
        seen = set()
        for name, value_node in node.elements:
            if name in seen:
                self.error(CqlNameError, f"tuple element '{name}' given twice", value_node)
            seen.add(name)
            closure, t = self.expr(value_node, env)
            elements.append((name, closure, t))
        names = [n for n, _, _ in elements]
        closures = [c for _, c, _ in elements]
        result = T.tuple_of(tuple((n, t) for n, _, t in elements))
        return (lambda ctx: CqlTuple(dict(zip(names, [c(ctx) for c in closures])))), result

    def _ListSelector(self, node: ast.ListSelector, env):
        compiled = [self.expr(item, env) for item in node.items]
        closures = [c for c, _ in compiled]
        if node.element_type is not None:
            element = self.type_of_spec(node.element_type)
            for (c, t), item in zip(compiled, node.items):
                if not T.assignable(t, element):
                    self.error(CqlTypeError, f"list element is {t}, declared {element}", item,
                               expected=str(element), found=str(t))
        else:
            element = self._branch_type([t for _, t in compiled], node) if compiled else T.ANY
        closures = [_coerce(c, t, element) for c, t in compiled]
        return (lambda ctx: [c(ctx) for c in closures]), T.list_of(element)
