"""Text -> syntax tree, with lark's LALR parser over grammar.lark.

The grammar is built once per process; syntax errors become CqlSyntaxError
with the file:line:col of the offending token.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lark import Lark, Tree, v_args
from lark.visitors import Transformer_NonRecursive
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast
from .errors import CqlError, CqlSyntaxError, EscapeError, UnplacedError

if TYPE_CHECKING:
    from lark.tree import Meta

GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")

# CQL DateTimes without seconds are partial (comparisons at a finer precision are uncertain);
# this engine has no partial values, so a literal must give at least the seconds.
_FULL_DATETIME = re.compile(r"^@\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")

_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "f": "\f"}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", propagate_positions=True,
                maybe_placeholders=True)

_HEX = frozenset("0123456789abcdefABCDEF")


def unescape(text: str) -> str:
    """Body of a CQL string or quoted identifier with its escapes resolved.

    Only CQL's escapes are accepted (\\' \\" \\` \\\\ \\/ \\f \\n \\r \\t and \\u with exactly four
    hex digits): anything else raises EscapeError, so a typo never silently changes the text.
    """
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt == "u":
            digits = text[i + 2:i + 6]
            if len(digits) != 4 or not set(digits) <= _HEX:
                raise EscapeError("a \\u escape needs exactly four hex digits", i)
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        if nxt not in _ESCAPES:
            raise EscapeError(f"unknown escape \\{nxt}" if nxt else "unfinished escape", i)
        out.append(_ESCAPES[nxt])
        i += 2
    return "".join(out)


def _body(token) -> str:
    """Unescaped body of a quoted token; a bad escape is a syntax error at the backslash."""
    text = str(token)
    try:
        return unescape(text[1:-1])
    except EscapeError as exc:
        prefix = text[:exc.offset + 1]
        line = (getattr(token, "line", None) or 1) + prefix.count("\n")
        column = len(prefix) - prefix.rfind("\n") if "\n" in prefix else (getattr(token, "column", None) or 1) + len(prefix)
        raise CqlSyntaxError(exc.message, line=line, column=column) from None


def _pos(meta_or_token) -> dict:
    line = getattr(meta_or_token, "line", None)
    column = getattr(meta_or_token, "column", None)
    return {"line": line or 0, "column": column or 0}


def _name(tree_or_token) -> tuple[str, dict]:
    """identifier subtree -> (name, position)."""
    token = tree_or_token.children[0] if isinstance(tree_or_token, Tree) else tree_or_token
    text = str(token)
    if text.startswith('"'):
        text = _body(token)
    return text, _pos(token)


def _keyword(tree: Tree) -> str:
    return " ".join(str(t) for t in tree.children)


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """lark tree -> ast nodes (bottom-up, without recursion, so long operator chains do not exhaust the stack)."""

    def __init__(self, source: str, filename: str) -> None:
        super().__init__()
        self._source, self._filename = source, filename

    def _only_parenthesized(self, target: ast.Node, what: str) -> None:
        """CQL 1.5 has retrieves and queries as expressions, not terms: `([Observation]).value`, never `[Observation].value`."""
        if isinstance(target, (ast.Retrieve, ast.Query)) and id(target) not in self._parenthesized:
            raise CqlSyntaxError(f"{what} a {'retrieve' if isinstance(target, ast.Retrieve) else 'query'} "
                                 "needs parentheses around it", filename=self._filename, line=target.line,
                                 column=target.column, source_line=source_line(self._source, target.line))

    def _between_operands(self, low: ast.Node, high: ast.Node) -> None:
        """The bounds of every `between` are terms in cql.g4 (expressionTerm)."""
        self._only_parenthesized(low, "'between' on")
        self._only_parenthesized(high, "'between' on")

    @property
    def _parenthesized(self) -> set[int]:
        if not hasattr(self, "_paren_nodes"):
            self._paren_nodes: set[int] = set()
        return self._paren_nodes

    def parenthesized(self, meta: Meta, children: list[Any]) -> ast.Node:
        """`( expr )`: remembered so retrieves and queries may be used as terms inside parentheses."""
        self._parenthesized.add(id(children[0]))
        return children[0]

    # ---- library ----------------------------------------------------------
    def start(self, meta: Meta, children: list[Any]) -> ast.LibraryNode:
        """The whole library: declarations sorted into their lists, statements kept in order."""
        lib = ast.LibraryNode(line=1, column=1)
        buckets = {ast.UsingDef: lib.usings, ast.CodeSystemDef: lib.codesystems, ast.ValueSetDef: lib.valuesets,
                   ast.CodeDef: lib.codes, ast.ParameterDef: lib.parameters, ast.ContextDef: lib.contexts}
        for child in children:
            if isinstance(child, tuple) and child[0] == "library":
                lib.name, lib.version = child[1], child[2]
            elif type(child) in buckets:
                buckets[type(child)].append(child)
            else:
                lib.statements.append(child)
        return lib

    def library_def(self, meta: Meta, children: list[Any]) -> tuple[str, str, str | None]:
        """`library Name version 'v'`, tagged for `start`."""
        name, _ = _name(children[0])
        version = _body(children[1]) if len(children) > 1 and children[1] is not None else None
        return ("library", name, version)

    def using_def(self, meta: Meta, children: list[Any]) -> ast.UsingDef:
        """`using Model version 'v'`."""
        name, _ = _name(children[0])
        version = _body(children[1]) if len(children) > 1 and children[1] is not None else None
        return ast.UsingDef(name, version, **_pos(meta))

    def codesystem_def(self, meta: Meta, children: list[Any]) -> ast.CodeSystemDef:
        """`codesystem Name: 'url' [version 'v']`."""
        name, _ = _name(children[0])
        version = _body(children[2]) if len(children) > 2 and children[2] is not None else None
        return ast.CodeSystemDef(name, _body(children[1]), version, **_pos(meta))

    def valueset_def(self, meta: Meta, children: list[Any]) -> ast.ValueSetDef:
        """`valueset Name: 'url' [version 'v']`."""
        name, _ = _name(children[0])
        version = _body(children[2]) if len(children) > 2 and children[2] is not None else None
        return ast.ValueSetDef(name, _body(children[1]), version, **_pos(meta))

    def code_def(self, meta: Meta, children: list[Any]) -> ast.CodeDef:
        """`code Name: 'code' from System [display 'text']`."""
        name, _ = _name(children[0])
        system, _ = _name(children[2])
        display = children[3] if len(children) > 3 else None
        return ast.CodeDef(name, _body(children[1]), system, display, **_pos(meta))

    def display_clause(self, meta: Meta, children: list[Any]) -> str:
        """`display 'text'` of a code definition."""
        return _body(children[0])

    def parameter_def(self, meta: Meta, children: list[Any]) -> ast.ParameterDef:
        """`parameter Name [Type] [default expr]`; the default arrives tagged to tell it from the type."""
        name, _ = _name(children[0])
        type_spec = default = None
        for child in children[1:]:
            if isinstance(child, tuple) and child[0] == "default":
                default = child[1]
            elif child is not None:
                type_spec = child
        return ast.ParameterDef(name, type_spec, default, **_pos(meta))

    def default_clause(self, meta: Meta, children: list[Any]) -> tuple[str, ast.Node]:
        """`default expr`, tagged for parameter_def."""
        return ("default", children[0])

    def context_def(self, meta: Meta, children: list[Any]) -> ast.ContextDef:
        """`context Name`."""
        return ast.ContextDef(_name(children[0])[0], **_pos(meta))

    def expression_def(self, meta: Meta, children: list[Any]) -> ast.ExpressionDef:
        """`define Name: expression`."""
        return ast.ExpressionDef(_name(children[0])[0], children[1], **_pos(meta))

    def function_def(self, meta: Meta, children: list[Any]) -> ast.FunctionDef:
        """`define function Name(operands) [returns Type]: body`; the return type arrives tagged."""
        name, _ = _name(children[0])
        rest = children[1:]
        body = rest[-1]
        returns = None
        middle = rest[:-1]
        if middle and isinstance(middle[-1], tuple) and middle[-1][0] == "returns":
            returns = middle[-1][1]
            middle = middle[:-1]
        operands = [m for m in middle if m is not None]
        return ast.FunctionDef(name, operands, returns, body, **_pos(meta))

    def operand_def(self, meta: Meta, children: list[Any]) -> tuple[str, ast.Node]:
        """One `name Type` operand of a function definition."""
        return (_name(children[0])[0], children[1])

    def returns_clause(self, meta: Meta, children: list[Any]) -> tuple[str, ast.Node]:
        """`returns Type`, tagged for function_def."""
        return ("returns", children[0])

    # ---- types ------------------------------------------------------------
    def named_type(self, meta: Meta, children: list[Any]) -> ast.NamedTypeSpec:
        """`Type` or `Model.Type`."""
        parts = [c for c in children if c is not None]
        if len(parts) == 2:
            return ast.NamedTypeSpec(_name(parts[1])[0], _name(parts[0])[0], **_pos(meta))
        return ast.NamedTypeSpec(_name(parts[0])[0], **_pos(meta))

    def list_type(self, meta: Meta, children: list[Any]) -> ast.ListTypeSpec:
        """`List<Type>`."""
        return ast.ListTypeSpec(children[0], **_pos(meta))

    def interval_type(self, meta: Meta, children: list[Any]) -> ast.IntervalTypeSpec:
        """`Interval<Type>`."""
        return ast.IntervalTypeSpec(children[0], **_pos(meta))

    def tuple_type(self, meta: Meta, children: list[Any]) -> ast.TupleTypeSpec:
        """`Tuple { name Type, ... }`."""
        return ast.TupleTypeSpec(list(children), **_pos(meta))

    def tuple_type_element(self, meta: Meta, children: list[Any]) -> tuple[str, ast.Node]:
        """One `name Type` element of a tuple type."""
        return (_name(children[0])[0], children[1])

    # ---- expressions ------------------------------------------------------
    def implies(self, meta: Meta, children: list[Any]) -> ast.Binary:
        """`a implies b`."""
        return ast.Binary("implies", children[0], children[1], **_pos(meta))

    def binary(self, meta: Meta, children: list[Any]) -> ast.Binary:
        """Any infix operator; multi-word operators (`included in`) are joined with single spaces."""
        left, op, right = children
        name = _keyword(op)
        if name in _TERM_OPERATORS:
            self._only_parenthesized(left, f"'{name}' on")
            self._only_parenthesized(right, f"'{name}' on")
        return ast.Binary(name, left, right, **_pos(meta))

    def between(self, meta: Meta, children: list[Any]) -> ast.Between:
        """`x between low and high`."""
        self._between_operands(children[1], children[2])
        return ast.Between(children[0], children[1], children[2], **_pos(meta))

    def duration_between(self, meta: Meta, children: list[Any]) -> ast.DurationBetween:
        """`[duration in] years between a and b` (whole periods)."""
        self._between_operands(children[1], children[2])
        return ast.DurationBetween(_keyword(children[0]), children[1], children[2], **_pos(meta))

    def difference_between(self, meta: Meta, children: list[Any]) -> ast.DurationBetween:
        """`difference in years between a and b` (boundaries crossed)."""
        self._between_operands(children[1], children[2])
        return ast.DurationBetween(_keyword(children[0]), children[1], children[2], True, **_pos(meta))

    def not_expr(self, meta: Meta, children: list[Any]) -> ast.Unary:
        """`not x`."""
        return ast.Unary("not", children[0], **_pos(meta))

    def exists_expr(self, meta: Meta, children: list[Any]) -> ast.Unary:
        """`exists x`."""
        return ast.Unary("exists", children[0], **_pos(meta))

    def is_null(self, meta: Meta, children: list[Any]) -> ast.Unary:
        """`x is null`."""
        return ast.Unary("is null", children[0], **_pos(meta))

    def is_not_null(self, meta: Meta, children: list[Any]) -> ast.Unary:
        """`x is not null`."""
        return ast.Unary("is not null", children[0], **_pos(meta))

    def is_boolean(self, meta: Meta, children: list[Any]) -> ast.Unary:
        """`x is true` / `x is false`."""
        return ast.Unary(f"is {_keyword(children[1])}", children[0], **_pos(meta))

    def is_not_boolean(self, meta: Meta, children: list[Any]) -> ast.Unary:
        """`x is not true` / `x is not false`."""
        return ast.Unary(f"is not {_keyword(children[1])}", children[0], **_pos(meta))

    def if_expr(self, meta: Meta, children: list[Any]) -> ast.If:
        """`if c then a else b`."""
        return ast.If(*children, **_pos(meta))

    def case_expr(self, meta: Meta, children: list[Any]) -> ast.Case:
        """`case [x] when ... then ... else ... end`; the comparand is None in the boolean form."""
        comparand, *items, otherwise = children
        return ast.Case(comparand, list(items), otherwise, **_pos(meta))

    def case_item(self, meta: Meta, children: list[Any]) -> tuple[ast.Node, ast.Node]:
        """One `when ... then ...` pair."""
        return (children[0], children[1])

    def list_aggregate_expr(self, meta: Meta, children: list[Any]) -> ast.Unary:
        """`distinct x` / `flatten x`."""
        return ast.Unary(_keyword(children[0]), children[1], **_pos(meta))

    def power(self, meta: Meta, children: list[Any]) -> ast.Binary:
        """`a ^ b`."""
        self._only_parenthesized(children[0], "'^' on")
        self._only_parenthesized(children[1], "'^' on")
        return ast.Binary("^", children[0], children[1], **_pos(meta))

    def boundary_expr(self, meta: Meta, children: list[Any]) -> ast.Unary:
        """`start of x` / `end of x`."""
        self._only_parenthesized(children[1], f"'{_keyword(children[0])} of' on")
        return ast.Unary(_keyword(children[0]), children[1], **_pos(meta))

    def component_from(self, meta: Meta, children: list[Any]) -> ast.Unary:
        """`year from x` (and the other date/time components)."""
        self._only_parenthesized(children[1], f"'{_keyword(children[0])} from' on")
        return ast.Unary(f"{_keyword(children[0])} from", children[1], **_pos(meta))

    def convert(self, meta: Meta, children: list[Any]) -> ast.Convert:
        """`convert x to 'unit'`."""
        return ast.Convert(children[0], _body(children[1]), **_pos(meta))

    def polarity(self, meta: Meta, children: list[Any]) -> ast.Unary:
        """Unary `-x` or `+x`."""
        op = "negate" if _keyword(children[0]) == "-" else "plus"
        self._only_parenthesized(children[1], f"'{_keyword(children[0])}' on")
        return ast.Unary(op, children[1], **_pos(meta))

    def member(self, meta: Meta, children: list[Any]) -> ast.Member:
        """`x.name`, positioned at the name; a bare retrieve or query on the left is an error."""
        self._only_parenthesized(children[0], "member access on")
        name, pos = _name(children[1])
        return ast.Member(children[0], name, **pos)

    def indexer(self, meta: Meta, children: list[Any]) -> ast.Indexer:
        """`x[i]`; a bare retrieve or query on the left is an error."""
        self._only_parenthesized(children[0], "indexing")
        return ast.Indexer(children[0], children[1], **_pos(meta))

    def name_ref(self, meta: Meta, children: list[Any]) -> ast.NameRef:
        """An identifier, positioned at its token."""
        name, pos = _name(children[0])
        return ast.NameRef(name, **pos)

    def call(self, meta: Meta, children: list[Any]) -> ast.Call:
        """`Name(args)`, positioned at the name."""
        name, pos = _name(children[0])
        args = [c for c in children[1:] if c is not None]
        return ast.Call(name, args, **pos)

    def retrieve(self, meta: Meta, children: list[Any]) -> ast.Retrieve:
        """`[Type]` or `[Type: Terminology]`, keeping the terminology's own position."""
        type_spec = children[0]
        if len(children) > 1 and children[1] is not None:
            term, pos = _name(children[1])
            return ast.Retrieve(type_spec.name, term, pos["line"], pos["column"], **_pos(meta))
        return ast.Retrieve(type_spec.name, **_pos(meta))

    def query(self, meta: Meta, children: list[Any]) -> ast.Query:
        """`source alias [with...] [where] [return] [sort]`, clauses arriving tagged by kind."""
        source, alias_tree, *clauses = children
        q = ast.Query(source, _name(alias_tree)[0], **_pos(meta))
        for clause in clauses:
            if clause is None:
                continue
            kind = clause[0]
            if kind == "with":
                q.withs.append(clause[1])
            elif kind == "where":
                q.where = clause[1]
            elif kind == "return":
                q.return_all, q.return_ = clause[1], clause[2]
            elif kind == "sort":
                q.sort = clause[1]
        return q

    def with_clause(self, meta: Meta, children: list[Any]) -> tuple[str, ast.WithClause]:
        """`with|without source alias such that condition`, tagged for query."""
        kind, source, alias, condition = children
        return ("with", ast.WithClause(_keyword(kind), source, _name(alias)[0], condition, **_pos(meta)))

    def where_clause(self, meta: Meta, children: list[Any]) -> tuple[str, ast.Node]:
        """`where condition`, tagged for query."""
        return ("where", children[0])

    def return_clause(self, meta: Meta, children: list[Any]) -> tuple[str, bool, ast.Node]:
        """`return [all] expr`, tagged for query with whether `all` was given."""
        if len(children) == 2:
            return ("return", children[0] is not None, children[1])
        return ("return", False, children[0])

    def sort_clause(self, meta: Meta, children: list[Any]) -> tuple[str, list[ast.SortItem]]:
        """`sort by item, ...`, tagged for query."""
        return ("sort", list(children))

    def sort_direction_only(self, meta: Meta, children: list[Any]) -> tuple[str, list[ast.SortItem]]:
        """`sort [asc|desc]`: sort the result values themselves."""
        descending = bool(children) and children[0] is not None and _keyword(children[0]).startswith("desc")
        return ("sort", [ast.SortItem(None, descending, **_pos(meta))])

    def sort_item(self, meta: Meta, children: list[Any]) -> ast.SortItem:
        """One `expr [asc|desc]` of a sort clause."""
        descending = len(children) > 1 and children[1] is not None and _keyword(children[1]).startswith("desc")
        return ast.SortItem(children[0], descending, **_pos(meta))

    def interval_selector(self, meta: Meta, children: list[Any]) -> ast.IntervalSelector:
        """`Interval[low, high)` with each end open or closed by its bracket."""
        low_bound, low, high, high_bound = children
        return ast.IntervalSelector(low, high, _keyword(low_bound) == "[", _keyword(high_bound) == "]", **_pos(meta))

    def tuple_selector(self, meta: Meta, children: list[Any]) -> ast.TupleSelector:
        """`Tuple { name: value, ... }` or `{ name: value, ... }`."""
        return ast.TupleSelector([c for c in children if c is not None], **_pos(meta))

    def tuple_element(self, meta: Meta, children: list[Any]) -> tuple[str, ast.Node]:
        """One `name: value` element of a tuple selector."""
        return (_name(children[0])[0], children[1])

    def list_selector(self, meta: Meta, children: list[Any]) -> ast.ListSelector:
        """`{ ... }` or `List<Type> { ... }`."""
        element_type = None
        items = list(children)
        if items and isinstance(items[0], ast.Node) and _is_type_spec(items[0]):
            element_type, items = items[0], items[1:]
        return ast.ListSelector(element_type, [c for c in items if c is not None], **_pos(meta))

    # ---- literals ---------------------------------------------------------
    def boolean_literal(self, meta: Meta, children: list[Any]) -> ast.Literal:
        """`true` / `false`."""
        return ast.Literal("Boolean", _keyword(children[0]) == "true", **_pos(meta))

    def null_literal(self, meta: Meta, children: list[Any]) -> ast.Literal:
        """`null`."""
        return ast.Literal("Null", None, **_pos(meta))

    def string_literal(self, meta: Meta, children: list[Any]) -> ast.Literal:
        """A string literal with its escapes resolved."""
        return ast.Literal("String", _body(children[0]), **_pos(meta))

    def number_literal(self, meta: Meta, children: list[Any]) -> ast.Literal:
        """A number, Decimal when written with a point, kept as source text."""
        text = str(children[0])
        return ast.Literal("Decimal" if "." in text else "Integer", text, **_pos(meta))

    def quantity_literal(self, meta: Meta, children: list[Any]) -> ast.Literal:
        """`5 'mg/dL'` or `3 months`: value text and unit."""
        number, unit = children
        unit_text = _keyword(unit) if isinstance(unit, Tree) else _body(unit)
        return ast.Literal("Quantity", (str(number), unit_text), **_pos(meta))

    def date_literal(self, meta: Meta, children: list[Any]) -> ast.Literal:
        """`@2026-01-01`, kept as text without the `@`."""
        return ast.Literal("Date", str(children[0])[1:], **_pos(meta))

    def datetime_literal(self, meta: Meta, children: list[Any]) -> ast.Literal:
        """`@2026-01-01T10:30:00[offset]`; without seconds it is rejected (partial precision)."""
        text = str(children[0])
        if not _FULL_DATETIME.match(text):
            raise CqlSyntaxError(f"{text} has partial precision; DateTime literals need hours, minutes and seconds "
                                 "(e.g. @2026-01-01T10:30:00)", **_pos(meta))
        return ast.Literal("DateTime", text[1:], **_pos(meta))


# cql.g4's expressionTerm operators (#additionExpressionTerm, #multiplicationExpressionTerm,
# #powerExpressionTerm): their operands are terms, so a retrieve or query needs parentheses there.
_TERM_OPERATORS = frozenset({"+", "-", "&", "*", "/", "div", "mod", "^"})


def _is_type_spec(node: ast.Node) -> bool:
    return isinstance(node, (ast.NamedTypeSpec, ast.ListTypeSpec, ast.IntervalTypeSpec, ast.TupleTypeSpec))


def parse(source: str, filename: str = "<string>") -> ast.LibraryNode:
    """Parse a whole library; raises CqlSyntaxError with the position of the problem.

    Expressions nested deeper than ast.MAX_NESTING levels are a syntax error ("expression nested too
    deeply"): the checker and the evaluator walk trees recursively, and this bound keeps them finite.
    """
    try:
        tree = _parser().parse(source)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, source, filename) from None
    try:
        library = _ToAst(source, filename).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, CqlError) and not isinstance(exc.orig_exc, UnplacedError):
            raise _located(exc.orig_exc, source, filename) from None
        raise
    depth, deepest = ast.nesting_depth(library)
    if depth > ast.MAX_NESTING:
        raise CqlSyntaxError(f"expression nested too deeply (more than {ast.MAX_NESTING} levels)", filename=filename,
                             line=deepest.line, column=deepest.column, source_line=source_line(source, deepest.line))
    library.nesting = depth
    return library


def _located(error: CqlError, source: str, filename: str) -> CqlError:
    """The same error with the file name and source line filled in (raised before they were known);
    its other fields (suggestion, expected and found types) are kept."""
    if error.filename is not None and error.source_line is not None:
        return error
    error.filename = filename
    error.source_line = source_line(source, error.line)
    error.args = (error.render(),)
    return error


def source_line(source: str, line: int | None) -> str | None:
    """Line `line` (1-based) of the text, counted on '\\n' only, as the lexer counts them."""
    if not line:
        return None
    lines = source.split("\n")
    return lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else None


def _syntax_error(exc: UnexpectedInput, source: str, filename: str) -> CqlSyntaxError:
    line, column = getattr(exc, "line", None), getattr(exc, "column", None)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        lines = source.split("\n")
        line, column = len(lines), len(lines[-1]) + 1
        message = "unexpected end of text" + _expected(exc)
    elif isinstance(exc, UnexpectedToken):
        line, column, word = _whole_word(source, line, column, str(exc.token))
        message = f"unexpected {word!r}" + _expected(exc) + _expression_not_term_hint(source, line, column)
    elif isinstance(exc, UnexpectedCharacters):
        message = f"unexpected character {source[exc.pos_in_stream]!r}" if exc.pos_in_stream < len(source) else "unexpected character"
    else:
        message = "invalid syntax"
    return CqlSyntaxError(message, filename=filename, line=line, column=column,
                          source_line=source_line(source, line))


_WORD_CHAR = re.compile(r"[A-Za-z0-9_]")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLURAL_PRECISIONS = "years|months|weeks|days|hours|minutes|seconds|milliseconds"
# cql.g4's expression-level duration phrases (#durationBetweenExpression, #differenceBetweenExpression)
_DURATION_PHRASE = re.compile(rf"(?:(difference|duration)\s+in\s+)?({_PLURAL_PRECISIONS})\s+between\b")


def _offset(source: str, line: int, column: int) -> int:
    lines = source.split("\n")
    return sum(len(text) + 1 for text in lines[:line - 1]) + column - 1


def _whole_word(source: str, line: int | None, column: int | None, token: str) -> tuple[int | None, int | None, str]:
    """The whole word the failing token belongs to, and where it starts.

    The lexer matches keywords by prefix, so `days` where no plural precision is allowed fails at
    its `s` after `day` was taken; the author wrote `days`, and the error should name and point at it.
    """
    if not line or not column:
        return line, column, token
    start = _offset(source, line, column)
    if not 0 <= start < len(source) or not _WORD_CHAR.match(source[start]):
        return line, column, token
    while start > 0 and _WORD_CHAR.match(source[start - 1]) and source[start - 1] != "\n":
        start -= 1
        column -= 1
    word = _WORD.match(source, start)
    return line, column, word.group(0) if word else token


def _expression_not_term_hint(source: str, line: int | None, column: int | None) -> str:
    """Why `1 + difference in days between a and b` fails, and the fix.

    In cql.g4 the duration phrases are expressions, not terms: `+`, `*`, `.` and `from` take them
    only in parentheses.
    """
    if not line or not column:
        return ""
    phrase = _DURATION_PHRASE.match(source, _offset(source, line, column))
    if phrase is None:
        return ""
    words = f"{phrase.group(1)} in {phrase.group(2)}" if phrase.group(1) else phrase.group(2)
    return (f"; `{words} between ...` is an expression in CQL, not a term: "
            "put it in parentheses to use it as an operand")


def _expected(exc: UnexpectedInput) -> str:
    expected = getattr(exc, "expected", None) or getattr(exc, "allowed", None)
    if not expected:
        return ""
    terminals = {t.name: t for t in _parser().terminals}
    shown = []
    for name in sorted(expected):
        term = terminals.get(name)
        if term is not None and term.pattern.type == "str":
            shown.append(repr(term.pattern.value))
        else:
            shown.append(name.lower().replace("_", " "))
    if len(shown) > 8:
        shown = shown[:8] + ["..."]
    return "; expected " + ", ".join(shown)
