"""Syntax tree -> checked library: name resolution and static types, every error at once.

Every problem a library can have without data (unknown name, value set, function, field; wrong
argument or operand type; bad unit or literal; a define or function that refers to itself) is
found here, with its file:line:col, and collected rather than stopping at the first. No closure is
built and nothing is evaluated: the result is a `CheckedLibrary` (the tree plus the static type of
every expression and what each name, call and retrieve resolved to), which `codegen.py` turns into
closures without checking anything again. A `CheckedLibrary` exists only for a library with no errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, Mapping

from . import ast
from . import functions as fn
from . import operators as ops
from . import regex_guard
from . import types as T
from .errors import CqlError, CqlNameError, CqlTypeError, closest_name, did_you_mean
from .model import ModelInfo
from .parser import source_line
from .quantity import Quantity, is_valid_unit
from .valuesets import ValueSet
from .values import Code

ROW = "\x00row"   # scope slot of the row a sort item reads


# ---- what names, calls and retrieves resolve to (read by codegen.py) ----------------------------

@dataclass(frozen=True)
class NameTarget:
    """What a name refers to. kind: row field, scope (operand or alias), define, parameter,
    valueset, code, patient; `value` is the ValueSet or Code for those kinds."""
    kind: str
    name: str
    value: Any = None


@dataclass(frozen=True)
class BuiltinTarget:
    """A call of a built-in; `argument_types` are the types its arguments are converted to
    (Coalesce's common type), None where they are passed as they are."""
    spec: fn.FunctionSpec
    argument_types: tuple[T.CqlType, ...] | None = None


@dataclass(frozen=True)
class UserTarget:
    """A call of the user function overload the checker chose."""
    function: ast.FunctionDef


@dataclass(frozen=True)
class RetrieveTarget:
    """A retrieve: all records (`codes` and `valueset` None), an exact-code lookup, or, for a value
    set with filters, every record of the type tested for membership on `code_path`."""
    type_name: str
    codes: frozenset[Code] | None = None
    valueset: ValueSet | None = None
    code_path: str | None = None


ROW_ELEMENT = "row element"   # a sort item naming an element of rows of unknown type


# ---- the checked library ------------------------------------------------------------------------

@dataclass
class CheckedDefine:
    """A define with its static type."""
    name: str
    type: T.CqlType
    node: ast.ExpressionDef


@dataclass
class CheckedParameter:
    """A parameter: its type (declared, else its default's) and the default's own type."""
    name: str
    type: T.CqlType
    declared: T.CqlType | None
    default_type: T.CqlType
    node: ast.ParameterDef


@dataclass
class CheckedFunction:
    """A user function overload: operands, declared result (None: the body's type) and body type."""
    name: str
    operand_names: list[str]
    operand_types: list[T.CqlType]
    declared: T.CqlType | None
    returns: T.CqlType
    body_type: T.CqlType
    node: ast.FunctionDef


@dataclass
class CheckedLibrary:
    """A library that checked without error: the tree, its declarations and, per expression node
    (by id), its static type and what it resolved to. Only `check` builds one."""
    tree: ast.LibraryNode
    source: str
    filename: str
    model: ModelInfo
    defines: dict[str, CheckedDefine]          # in declaration order
    parameters: dict[str, CheckedParameter]
    functions: dict[int, CheckedFunction]      # by id of the FunctionDef
    types: dict[int, T.CqlType]
    targets: dict[int, Any] = field(default_factory=dict)

    def type_of(self, node: ast.Node) -> T.CqlType:
        """The static type the checker gave an expression node."""
        return self.types[id(node)]

    def target_of(self, node: ast.Node) -> Any:
        """What a name, call, retrieve or sort item resolved to (None for other nodes)."""
        return self.targets.get(id(node))


@dataclass(frozen=True)
class CheckResult:
    """Every error found, in source order, and the checked library when there are none."""
    errors: list[CqlError]
    library: CheckedLibrary | None


def check(tree: ast.LibraryNode, *, source: str, filename: str, model: ModelInfo,
          valuesets: Mapping[str, ValueSet]) -> CheckResult:
    """Resolve and type-check a parsed library; builds no closure and evaluates nothing."""
    checker = Checker(tree, source=source, filename=filename, model=model, valuesets=valuesets)
    checker.check()
    if checker.errors:
        return CheckResult(checker.errors, None)
    defines = {name: checker.defines[name] for name in checker.define_nodes}
    return CheckResult([], CheckedLibrary(tree, source, filename, model, defines, checker.parameters,
                                          checker.functions, checker.types, checker.targets))


class _Failed:
    """The result of a node that failed to check: reported once, so what contains it reports nothing more."""
    def __repr__(self) -> str:
        return "FAILED"


FAILED: Any = _Failed()

_BUILTIN_FIELDS = {"Quantity": {"value": T.DECIMAL, "unit": T.STRING},
                   "Code": {"code": T.STRING, "system": T.STRING, "display": T.STRING, "version": T.STRING},
                   "Concept": {"codes": T.list_of(T.CODE), "display": T.STRING}}


class Checker:
    """Walks a parsed library once, giving every expression a type and collecting every error."""
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
        self.parameters: dict[str, CheckedParameter] = {}
        self.define_nodes: dict[str, ast.ExpressionDef] = {}
        self.defines: dict[str, CheckedDefine] = {}
        self.function_nodes: dict[str, list[ast.FunctionDef]] = {}
        self.functions: dict[int, CheckedFunction] = {}
        self.types: dict[int, T.CqlType] = {}
        self.targets: dict[int, Any] = {}
        self.failed: set[int] = set()
        self._signatures: dict[int, tuple[list[str], list[T.CqlType]]] = {}
        self._checking: list[str] = []
        self._checking_functions: list[ast.FunctionDef] = []

    # ---- errors -----------------------------------------------------------
    def error(self, cls: type[CqlError], message: str, node: ast.Node | None = None, *, line: int | None = None,
              column: int | None = None, suggest: tuple[str, Iterable[str]] | None = None, **fields: Any) -> Any:
        """Record an error at the node (or explicit line/column); returns FAILED so checking goes on.

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
        return FAILED

    def _is_failed(self, node: ast.Node) -> bool:
        return id(node) in self.failed

    # ---- declarations -------------------------------------------------------
    def check(self) -> None:
        """Check every declaration and statement; problems land in `self.errors`, sorted by position."""
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
            self._parameter(param)
        for name, node in self.define_nodes.items():
            for kind, table in (("parameter", self.parameters), ("value set", self.valuesets), ("code", self.codes)):
                if name in table:
                    self.error(CqlNameError, f"define \"{name}\" has the name of a {kind}", node)
        for name in self.define_nodes:
            self.define(name)
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

    def _parameter(self, node: ast.ParameterDef) -> None:
        declared = self.type_of_spec(node.type_spec) if node.type_spec is not None else None
        default_type = T.ANY
        if node.default is not None:
            default_type = self.expr(node.default, {})
            if declared is not None and not T.assignable(default_type, declared):
                self.error(CqlTypeError, f"default of parameter \"{node.name}\" is {default_type}, declared {declared}",
                           node.default, expected=str(declared), found=str(default_type))
        self.parameters[node.name] = CheckedParameter(node.name, declared or default_type, declared, default_type, node)

    def define(self, name: str) -> CheckedDefine:
        """The checked define, checking it on first use (so defines may refer forward) and reporting cycles."""
        done = self.defines.get(name)
        if done is not None:
            return done
        node = self.define_nodes[name]
        if name in self._checking:
            cycle = " -> ".join(self._checking[self._checking.index(name):] + [name])
            self.error(CqlNameError, f"define \"{name}\" refers to itself: {cycle}", node)
            return CheckedDefine(name, T.ANY, node)
        self._checking.append(name)
        try:
            typ = self.expr(node.expression, {})
        finally:
            self._checking.pop()
        checked = CheckedDefine(name, typ, node)
        self.defines[name] = checked
        return checked

    def _function(self, node: ast.FunctionDef) -> CheckedFunction:
        done = self.functions.get(id(node))
        if done is not None:
            return done
        names, types = self._signature(node)
        declared = self.type_of_spec(node.returns) if node.returns is not None else None
        checked = CheckedFunction(node.name, names, types, declared, declared or T.ANY, T.ANY, node)
        self.functions[id(node)] = checked
        self._checking_functions.append(node)
        try:
            body_type = self.expr(node.body, dict(zip(names, types)))
        finally:
            self._checking_functions.pop()
        if declared is not None and not T.assignable(body_type, declared):
            self.error(CqlTypeError, f"function {node.name} is declared to return {declared} but its body is {body_type}",
                       node.body, expected=str(declared), found=str(body_type))
        checked.body_type = body_type
        checked.returns = declared or body_type
        return checked

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
    def expr(self, node: ast.Node, env: dict[str, T.CqlType]) -> T.CqlType:
        """Check one expression in an environment of operand/alias types; dispatches on the node class.

        A node that failed (reported here or below it) is typed Any and remembered, so the
        expressions around it report nothing more about it."""
        result = getattr(self, "_" + type(node).__name__)(node, env)
        if result is FAILED:
            self.failed.add(id(node))
            result = T.ANY
        self.types[id(node)] = result
        return result

    def _Literal(self, node: ast.Literal, env):
        kind, value = node.kind, node.value
        if kind == "Null":
            return T.ANY
        if kind == "Boolean":
            return T.BOOLEAN
        if kind == "String":
            return T.STRING
        if kind == "Integer":
            if int(value) > 2**31 - 1:
                return self.error(CqlTypeError, f"integer {value} is out of range; write it as a decimal", node)
            return T.INTEGER
        if kind == "Decimal":
            if Decimal(value).as_tuple().exponent < -8:
                return self.error(CqlTypeError, f"decimal {value} has more than 8 decimal places", node)
            return T.DECIMAL
        if kind == "Quantity":
            number, unit = value
            if unit not in ops.TIME_UNITS and not is_valid_unit(unit):
                return self.error(CqlTypeError, f"'{unit}' is not a valid UCUM unit", node)
            self.targets[id(node)] = Quantity(Decimal(number), unit)
            return T.QUANTITY
        if kind == "Date":
            parsed = ops.parse_date(value)
            if parsed is None:
                return self.error(CqlTypeError, f"@{value} is not a valid date", node)
            self.targets[id(node)] = parsed
            return T.DATE
        if kind == "DateTime":
            parsed = ops.parse_datetime(value)
            if parsed is None:
                return self.error(CqlTypeError, f"@{value} is not a valid datetime", node)
            self.targets[id(node)] = parsed
            return T.DATETIME
        return self.error(CqlTypeError, f"unsupported literal {kind}", node)

    def _all_names(self, env) -> list[str]:
        return (list(env) + list(self.define_nodes) + list(self.parameters) + list(self.valuesets)
                + list(self.codes) + list(self.codesystems) + ["Patient"])

    def _NameRef(self, node: ast.NameRef, env):
        name = node.name
        row_type = env.get(ROW)
        resolved: T.CqlType | None = None
        if row_type is not None:
            field_type = self.field_type(row_type, name)
            if field_type is not None:
                target, resolved = NameTarget("row field", name), field_type
        if resolved is not None:
            pass
        elif name in env and name != ROW:
            target, resolved = NameTarget("scope", name), env[name]
        elif name in self.define_nodes:
            target, resolved = NameTarget("define", name), self.define(name).type
        elif name in self.parameters:
            target, resolved = NameTarget("parameter", name), self.parameters[name].type
        elif name in self.valuesets:
            target, resolved = NameTarget("valueset", name, self.valuesets[name]), T.VALUESET
        elif name in self.codes:
            target, resolved = NameTarget("code", name, self.codes[name]), T.CODE
        elif name in self.codesystems:
            return self.error(CqlTypeError, f"code system \"{name}\" cannot be used as a value", node)
        elif name == "Patient":
            target, resolved = NameTarget("patient", name), T.CqlType(self.model.patient_type)
        elif row_type == T.ANY:   # a sort item over rows of unknown type: an element of the row
            target, resolved = NameTarget("row field", name), T.ANY
        else:
            return self.error(CqlNameError, f"unknown name \"{name}\"",
                              node, suggest=(name, self._all_names(env)))
        self.targets[id(node)] = target
        return resolved

    # fields -----------------------------------------------------------------------
    def field_type(self, target: T.CqlType, name: str) -> T.CqlType | None:
        """The type of element `name` of a value of type `target`, or None when it has no such element."""
        if target == T.ANY:
            return None
        if isinstance(target, T.TupleType):
            return target.element(name)
        model_type = self.model.types.get(target.name) if type(target) is T.CqlType else None
        if model_type is not None:
            return model_type.fields.get(name)
        builtin = _BUILTIN_FIELDS.get(target.name)
        if builtin is not None and type(target) is T.CqlType:
            return builtin.get(name)
        if isinstance(target, T.IntervalType):
            return {"low": target.point, "high": target.point, "lowClosed": T.BOOLEAN, "highClosed": T.BOOLEAN}.get(name)
        return None

    def _Member(self, node: ast.Member, env):
        target_type = self.expr(node.target, env)
        name = node.name
        if self._is_failed(node.target):
            return FAILED
        element_type, is_list = target_type, False
        if isinstance(target_type, T.ListType):
            element_type, is_list = target_type.element, True
        result_type = T.list_of(T.ANY) if is_list else T.ANY
        if element_type != T.ANY:
            field_type = self.field_type(element_type, name)
            if field_type is None:
                fhir = self._fhir_counterpart(node, element_type)
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
        return result_type

    def _fhir_counterpart(self, node: ast.Member, target_type: T.CqlType) -> tuple[str, str, str] | None:
        """(FHIR path, record type, facts field) when the member is a FHIR element name the model maps.

        `O.valueQuantity` is looked up on O's record type; `C.clinicalStatus.coding` as the path
        `clinicalStatus.coding` on C's. The mapping is the model file's `fhirNames`: data, not code.
        """
        paths = [(node.name, target_type)]
        if isinstance(node.target, ast.Member):
            # the target checked without error, so its own target was checked too: read its type
            paths.append((f"{node.target.name}.{node.name}", self.types.get(id(node.target.target), T.ANY)))
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
        target_type = self.expr(node.target, env)
        index_type = self.expr(node.index, env)
        if not T.assignable(index_type, T.INTEGER):
            return self.error(CqlTypeError, f"an index must be Integer, got {index_type}", node.index,
                              expected="Integer", found=str(index_type))
        if target_type == T.STRING:
            return T.STRING
        if isinstance(target_type, T.ListType):
            return target_type.element
        if target_type == T.ANY:
            return T.ANY
        return self.error(CqlTypeError, f"cannot index into {target_type}", node)

    # calls --------------------------------------------------------------------------
    def _Call(self, node: ast.Call, env):
        arg_types = [self.expr(arg, env) for arg in node.args]
        if any(self._is_failed(arg) for arg in node.args):
            if node.name not in self.function_nodes and node.name not in fn.REGISTRY:
                self._call_name_error(node)
            return FAILED
        if node.name in self.function_nodes:
            return self._user_call(node, arg_types)
        spec = fn.REGISTRY.get(node.name)
        if spec is None:
            return self._call_name_error(node)
        try:
            result_type = spec.resolve(arg_types)
        except fn.SignatureMismatch as exc:
            return self.error(CqlTypeError, f"{node.name} {exc} (signature: {spec.signature})", node,
                              expected=exc.expected, found=exc.found)
        argument_types = None
        if node.name == "Coalesce":   # the picked argument takes the common type (Integer -> Decimal)
            argument_types = tuple([result_type] * len(arg_types) if len(arg_types) > 1 else [T.list_of(result_type)])
        if node.name in ("Matches", "ReplaceMatches") and len(node.args) >= 2 and isinstance(node.args[1], ast.Literal) \
                and node.args[1].kind == "String":
            problem = regex_guard.pattern_problem(node.args[1].value)
            if problem is not None:
                return self.error(CqlTypeError, f"{node.name} pattern {node.args[1].value!r}: {problem}", node.args[1])
        self.targets[id(node)] = BuiltinTarget(spec, argument_types)
        return result_type

    def _call_name_error(self, node: ast.Call):
        candidates = list(fn.REGISTRY) + list(self.function_nodes)
        return self.error(CqlNameError, f"unknown function {node.name}",
                          node, suggest=(node.name, candidates))

    def _user_call(self, node: ast.Call, arg_types: list[T.CqlType]):
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
        stack_ids = [id(f) for f in self._checking_functions]
        if id(candidate) in stack_ids:
            path = self._checking_functions[stack_ids.index(id(candidate)):]
            cycle = " -> ".join([f.name for f in path] + [candidate.name])
            return self.error(CqlNameError, f"function {candidate.name} calls itself ({cycle}); "
                                            "recursive functions are not supported", node)
        checked = self._function(candidate)
        self.targets[id(node)] = UserTarget(candidate)
        return checked.returns

    # operators --------------------------------------------------------------------------
    def _Unary(self, node: ast.Unary, env):
        t = self.expr(node.operand, env)
        op = node.op
        if self._is_failed(node.operand):
            return FAILED
        if op == "not":
            self._require(t, (T.BOOLEAN,), "not", node.operand)
            return T.BOOLEAN
        if op == "exists":
            if t != T.ANY and not isinstance(t, T.ListType):
                return self.error(CqlTypeError, f"exists needs a List, got {t}", node.operand,
                                  expected="List", found=str(t))
            return T.BOOLEAN
        if op in ("negate", "plus"):
            self._require(t, (T.INTEGER, T.DECIMAL, T.QUANTITY), "unary " + ("-" if op == "negate" else "+"), node.operand)
            return t
        if op in ("distinct", "flatten"):
            if t != T.ANY and not isinstance(t, T.ListType):
                return self.error(CqlTypeError, f"{op} needs a List, got {t}", node.operand,
                                  expected="List", found=str(t))
            if op == "flatten" and isinstance(t, T.ListType) and t.element != T.ANY \
                    and not isinstance(t.element, T.ListType):
                return self.error(CqlTypeError, f"flatten needs a List of Lists, got {t}", node.operand,
                                  expected="List of Lists", found=str(t))
            if op == "flatten" and isinstance(t, T.ListType):
                return t.element if isinstance(t.element, T.ListType) else t
            return t
        if op in ("is null", "is not null"):
            return T.BOOLEAN
        if op.startswith("is "):
            self._require(t, (T.BOOLEAN,), op, node.operand)
            return T.BOOLEAN
        if op in ("start", "end"):
            if t != T.ANY and not isinstance(t, T.IntervalType):
                return self.error(CqlTypeError, f"{op} of needs an Interval, got {t}", node.operand,
                                  expected="Interval", found=str(t))
            return t.point if isinstance(t, T.IntervalType) else T.ANY
        if op.endswith(" from"):
            component = op[:-5]
            self._require(t, (T.DATE, T.DATETIME), op, node.operand)
            if component in ("hour", "minute", "second") and t == T.DATE:
                return self.error(CqlTypeError, f"a Date has no {component}", node)
            return T.DATE if component == "date" else T.INTEGER
        return self.error(CqlTypeError, f"unsupported operator {op}", node)

    def _require(self, t: T.CqlType, allowed: tuple[T.CqlType, ...], what: str, node: ast.Node) -> bool:
        if any(T.assignable(t, a) for a in allowed):
            return True
        names = " or ".join(str(a) for a in allowed)
        self.error(CqlTypeError, f"{what} needs {names}, got {t}", node, expected=names, found=str(t))
        return False

    def _Binary(self, node: ast.Binary, env):
        op = node.op
        lt = self.expr(node.left, env)
        rt = self.expr(node.right, env)
        if self._is_failed(node.left) or self._is_failed(node.right):   # already reported: no cascade of errors
            return FAILED
        if op in ("and", "or", "xor", "implies"):
            self._require(lt, (T.BOOLEAN,), op, node.left)
            self._require(rt, (T.BOOLEAN,), op, node.right)
            return T.BOOLEAN
        if op in ("=", "!=", "~", "!~"):
            if T.common_type(lt, rt) is None:
                return self.error(CqlTypeError, f"cannot compare {lt} with {rt} using '{op}'", node)
            return T.BOOLEAN
        if op in ("<", "<=", ">", ">="):
            common = T.common_type(lt, rt)
            if common is None or (common != T.ANY and common not in T.ORDERED):
                return self.error(CqlTypeError, f"cannot order {lt} and {rt} with '{op}'", node)
            return T.BOOLEAN
        if op in ("+", "-", "*", "/", "div", "mod", "^", "&"):
            result = arithmetic_type(op, lt, rt)
            if result is None:
                return self.error(CqlTypeError, f"operator '{op}' cannot be applied to {lt} and {rt}", node)
            return result
        if op in ("in", "contains", "during", "includes", "included in", "overlaps", "before", "after"):
            return self._membership(node, op, lt, rt)
        return self.error(CqlTypeError, f"unsupported operator {op}", node)

    def _membership(self, node: ast.Binary, op: str, lt: T.CqlType, rt: T.CqlType):
        op, swapped = membership_form(op, lt)
        if swapped:
            lt, rt = rt, lt
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
                return T.BOOLEAN
            if isinstance(rt, T.ListType):
                if T.common_type(lt, rt.element) is None:
                    return self.error(CqlTypeError, f"{lt} cannot be an element of {rt}", node)
                return T.BOOLEAN
            if isinstance(rt, T.IntervalType):
                if T.common_type(lt, rt.point) is None:
                    return self.error(CqlTypeError, f"{lt} cannot be a point of {rt}", node)
                return T.BOOLEAN
            if rt == T.ANY:
                return T.BOOLEAN
            return self.error(CqlTypeError, f"'in' needs a List, Interval or value set on the right, got {rt}", node,
                              expected="List, Interval or value set", found=str(rt))
        if op == "included in":
            if not (isinstance(rt, T.IntervalType) or rt == T.ANY):
                return self.error(CqlTypeError, f"'{node.op}' needs an Interval, got {rt}", node,
                                  expected="Interval", found=str(rt))
            return T.BOOLEAN
        if op == "overlaps":
            for t, side in ((lt, node.left), (rt, node.right)):
                if not (isinstance(t, T.IntervalType) or t == T.ANY):
                    return self.error(CqlTypeError, f"overlaps needs Intervals, got {t}", side,
                                      expected="Interval", found=str(t))
        return T.BOOLEAN

    def _Between(self, node: ast.Between, env):
        t = self.expr(node.operand, env)
        lt = self.expr(node.low, env)
        ht = self.expr(node.high, env)
        if any(self._is_failed(n) for n in (node.operand, node.low, node.high)):
            return FAILED
        for bound in (lt, ht):
            common = T.common_type(t, bound)
            if common is None or (common != T.ANY and common not in T.ORDERED):
                return self.error(CqlTypeError, f"between cannot order {t} against {bound}", node)
        return T.BOOLEAN

    def _DurationBetween(self, node: ast.DurationBetween, env):
        lt = self.expr(node.low, env)
        ht = self.expr(node.high, env)
        self._require(lt, (T.DATE, T.DATETIME), f"{node.precision} between", node.low)
        self._require(ht, (T.DATE, T.DATETIME), f"{node.precision} between", node.high)
        return T.INTEGER

    def _Convert(self, node: ast.Convert, env):
        t = self.expr(node.operand, env)
        self._require(t, (T.QUANTITY,), "convert", node.operand)
        if not is_valid_unit(node.unit):
            return self.error(CqlTypeError, f"'{node.unit}' is not a valid UCUM unit", node)
        return T.QUANTITY

    def _If(self, node: ast.If, env):
        ct = self.expr(node.condition, env)
        self._require(ct, (T.BOOLEAN,), "if", node.condition)
        tt = self.expr(node.then, env)
        ot = self.expr(node.otherwise, env)
        return self._branch_type([tt, ot], node)

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
        comp_t = self.expr(node.comparand, env) if node.comparand is not None else None
        types = []
        for when, then in node.items:
            wt = self.expr(when, env)
            if comp_t is None:
                self._require(wt, (T.BOOLEAN,), "case when", when)
            elif T.common_type(comp_t, wt) is None:
                self.error(CqlTypeError, f"case compares {comp_t} with {wt}", when, expected=str(comp_t), found=str(wt))
            types.append(self.expr(then, env))
        ot = self.expr(node.otherwise, env)
        return self._branch_type(types + [ot], node)

    # retrieves and queries ------------------------------------------------------------------
    def _Retrieve(self, node: ast.Retrieve, env):
        model_type = self.model.types.get(node.type_name)
        if model_type is None:
            return self.error(CqlNameError, f"unknown type '{node.type_name}' in retrieve", node,
                              suggest=(node.type_name, self.model.types))
        type_name = node.type_name
        result = T.list_of(T.CqlType(type_name))
        if node.terminology is None:
            self.targets[id(node)] = RetrieveTarget(type_name)
            return result
        if not model_type.primary_code_path:
            return self.error(CqlTypeError, f"{type_name} has no code to filter on", node)
        term = node.terminology
        if term in self.valuesets and self.valuesets[term].has_filters:
            self.targets[id(node)] = RetrieveTarget(type_name, valueset=self.valuesets[term],
                                                    code_path=model_type.primary_code_path)
            return result
        if term in self.valuesets:
            codes = frozenset(Code(c.code, c.system) for c in self.valuesets[term].codes)
        elif term in self.codes:
            code = self.codes[term]
            codes = frozenset({Code(code.code, code.system)})
        else:
            candidates = list(self.valuesets) + list(self.codes)
            return self.error(CqlNameError, f"unknown value set or code \"{term}\"",
                              line=node.terminology_line, column=node.terminology_column, suggest=(term, candidates))
        self.targets[id(node)] = RetrieveTarget(type_name, codes=codes)
        return result

    def _Query(self, node: ast.Query, env):
        source_type = self.expr(node.source, env)
        single = not isinstance(source_type, T.ListType) and source_type != T.ANY
        row_type = source_type.element if isinstance(source_type, T.ListType) else source_type
        alias = node.alias
        if alias in env or alias in self.define_nodes:
            self.error(CqlNameError, f"alias {alias} hides another name", node)
        inner_env = dict(env)
        inner_env.pop(ROW, None)
        inner_env[alias] = row_type
        for clause in node.withs:
            self._with_clause(clause, inner_env)
        if node.where is not None:
            wt = self.expr(node.where, inner_env)
            self._require(wt, (T.BOOLEAN,), "where", node.where)
        out_type = row_type
        if node.return_ is not None:
            out_type = self.expr(node.return_, inner_env)
        if node.sort:
            self._sort(node.sort, out_type, env)
        return out_type if single else T.list_of(out_type)

    def _with_clause(self, clause: ast.WithClause, env) -> None:
        source_type = self.expr(clause.source, env)
        row_type = source_type.element if isinstance(source_type, T.ListType) else source_type
        if clause.alias in env or clause.alias in self.define_nodes:
            self.error(CqlNameError, f"alias {clause.alias} hides another name", clause)
        inner_env = dict(env)
        inner_env[clause.alias] = row_type
        ct = self.expr(clause.condition, inner_env)
        self._require(ct, (T.BOOLEAN,), "such that", clause.condition)

    def _sort(self, items: list[ast.SortItem], row_type: T.CqlType, env) -> None:
        for item in items:
            if item.expression is None:
                continue
            sort_env = {k: v for k, v in env.items() if k != ROW}
            sort_env[ROW] = row_type
            if row_type == T.ANY and isinstance(item.expression, ast.NameRef):
                self.targets[id(item)] = ROW_ELEMENT
                continue
            key_type = self.expr(item.expression, sort_env)
            if key_type != T.ANY and key_type not in T.ORDERED:
                self.error(CqlTypeError, f"cannot sort by a {key_type}", item)

    # selectors -------------------------------------------------------------------------------
    def _IntervalSelector(self, node: ast.IntervalSelector, env):
        lt = self.expr(node.low, env)
        ht = self.expr(node.high, env)
        point = T.common_type(lt, ht)
        if point is None or (point != T.ANY and point not in T.ORDERED):
            return self.error(CqlTypeError, f"interval bounds must be one ordered type, got {lt} and {ht}", node)
        return T.interval_of(point)

    def _TupleSelector(self, node: ast.TupleSelector, env):
        elements = []
        seen = set()
        for name, value_node in node.elements:
            if name in seen:
                self.error(CqlNameError, f"tuple element '{name}' given twice", value_node)
            seen.add(name)
            elements.append((name, self.expr(value_node, env)))
        return T.tuple_of(tuple(elements))

    def _ListSelector(self, node: ast.ListSelector, env):
        types = [self.expr(item, env) for item in node.items]
        if node.element_type is not None:
            element = self.type_of_spec(node.element_type)
            for t, item in zip(types, node.items):
                if not T.assignable(t, element):
                    self.error(CqlTypeError, f"list element is {t}, declared {element}", item,
                               expected=str(element), found=str(t))
        else:
            element = self._branch_type(types, node) if types else T.ANY
        return T.list_of(element)


def membership_form(op: str, left_type: T.CqlType) -> tuple[str, bool]:
    """The membership or timing operator in its `in` / `included in` form, and whether the operands
    swap sides for it (`contains` is `in` reversed, `includes` is `included in` reversed; `during`
    is `in` for a point on the left and `included in` for an interval)."""
    if op == "contains":
        return "in", True
    if op == "includes":
        return "included in", True
    if op == "during":
        return ("included in" if isinstance(left_type, T.IntervalType) else "in"), False
    return op, False


def arithmetic_type(op: str, lt: T.CqlType, rt: T.CqlType) -> T.CqlType | None:
    """The result type of an arithmetic operator on these operand types, or None when it does not apply."""
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
