"""A compiled library and its evaluation entry points."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from .ast import SHALLOW_NESTING
from .codegen import CompiledDefine, GeneratedLibrary, promote_value
from .compiler import compile_tree
from .deep import run_deep
from .errors import (CqlCompilationError, CqlError, CqlEvaluationError, CqlNameError, CqlSyntaxError, EvaluationFailure,
                     UnplacedError, closest_name, did_you_mean)
from .model import ModelInfo
from .parser import parse, source_line
from .runtime import Context, DataProvider, collect_record_sources
from .valuesets import ValueSet, from_mapping, load_valueset_dir

if TYPE_CHECKING:
    from .values import Code, Record


@dataclass(frozen=True)
class DefineResult:
    """A define's value and the sorted, unique sources of the records it came from."""

    value: Any
    evidence: tuple[str, ...] = ()


class EvaluationResult(Mapping[str, DefineResult]):
    """Every (non-function) define of a library for one patient, in declaration order."""

    def __init__(self, results: dict[str, DefineResult]) -> None:
        self._results = results

    def __getitem__(self, name: str) -> DefineResult:
        return self._results[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def values_only(self) -> dict[str, Any]:
        """Plain define values without evidence (for tests and tools that only need the answers)."""
        return {name: result.value for name, result in self._results.items()}


class Library:
    """A library that compiled cleanly: evaluate it against any data provider, any number of times."""

    def __init__(self, generated: GeneratedLibrary, *, deep: bool = False) -> None:
        node = generated.tree
        self.name: str | None = node.name
        self.version: str | None = node.version
        self.filename = generated.filename
        self._source = generated.source
        self._defines: dict[str, CompiledDefine] = generated.defines
        self._parameters = generated.parameters
        self.define_names: tuple[str, ...] = tuple(generated.defines)
        # what evaluation reads per define, without going through CompiledDefine each time
        self._closures = {name: define.closure for name, define in generated.defines.items()}
        # `defines` arguments already checked and put in declaration order (callers repeat the same few)
        self._wanted: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.define_types = {name: generated.defines[name].type for name in self.define_names}
        self._deep = deep or getattr(node, "nesting", 0) > SHALLOW_NESTING
        # defaults as evaluated at load (for display); evaluation re-evaluates them with its own `now`
        self.parameters: dict[str, Any] = {}
        for name, param in self._parameters.items():
            if param.default is None:
                self.parameters[name] = None
                continue
            ctx = Context(self, _NoData(), datetime.now(timezone.utc), {})
            try:
                self.parameters[name] = param.default(ctx)
            except EvaluationFailure as exc:
                raise CqlCompilationError([self._failure(exc, f"default of parameter \"{name}\"")]) from None

    @property
    def source(self) -> str:
        """The text this library was compiled from (published as is, so what is read is what runs)."""
        return self._source

    @property
    def parameter_types(self) -> dict[str, str]:
        """Each parameter's declared type, by name, in declaration order (for publishing the library)."""
        return {name: str(param.type) for name, param in self._parameters.items()}

    # ---- evaluation -----------------------------------------------------------
    def evaluate(self, provider: DataProvider, *, parameters: Mapping[str, Any] | None = None,
                 now: datetime, defines: Iterable[str] | None = None) -> EvaluationResult:
        """Evaluate the defines for one patient at the given `now`; parameters override defaults by name.

        `defines` names the ones wanted (None: every define). Only those are evaluated, and what
        they need as evaluation reaches it (each define at most once per call): a define that
        `and`, `or`, `if` or `case` does not reach for this patient costs nothing. The result
        holds the defines named, in declaration order; an unknown name is a CqlNameError.
        """
        names = self.define_names if defines is None else self._known_defines(defines)
        if self._deep:
            return run_deep(self._evaluate, provider, parameters, now, names)
        return self._evaluate(provider, parameters, now, names)

    def _known_defines(self, defines: Iterable[str]) -> tuple[str, ...]:
        """The defines named (one name alone is one define, not its letters), in declaration order."""
        wanted = [defines] if isinstance(defines, str) else list(defines)
        key = tuple(wanted)
        known = self._wanted.get(key)
        if known is not None:
            return known
        for name in wanted:
            if name not in self._defines:
                suggestion = closest_name(name, self.define_names)
                raise CqlNameError(f"no define \"{name}\" in library {self.name or self.filename}"
                                   + did_you_mean(suggestion), filename=self.filename, suggestion=suggestion)
        wanted_set = set(wanted)
        known = tuple(name for name in self.define_names if name in wanted_set)
        if len(self._wanted) < 64:
            self._wanted[key] = known
        return known

    def _evaluate(self, provider, parameters, now: datetime, names: tuple[str, ...]) -> EvaluationResult:
        ctx = self._context(provider, parameters, now)
        return EvaluationResult({name: self._result(ctx, name) for name in names})

    def evaluate_define(self, name: str, provider: DataProvider, *, parameters: Mapping[str, Any] | None = None,
                        now: datetime) -> DefineResult:
        """Evaluate one define (and what it needs) only; unknown define or parameter names raise CqlNameError."""
        self._known_defines([name])
        if self._deep:
            return run_deep(lambda: self._result(self._context(provider, parameters, now), name))
        return self._result(self._context(provider, parameters, now), name)

    def _context(self, provider, parameters, now: datetime) -> Context:
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        values = {}
        for name, value in (parameters or {}).items():
            if name not in self._parameters:
                suggestion = closest_name(name, self._parameters)
                raise CqlNameError(f"no parameter \"{name}\" in library {self.name or self.filename}"
                                   + did_you_mean(suggestion), filename=self.filename, suggestion=suggestion)
            values[name] = promote_value(value, self._parameters[name].type)
        return Context(self, provider, now, values)

    def _result(self, ctx: Context, name: str) -> DefineResult:
        value = self.define_value(ctx, name, merge=False)
        side_evidence = ctx.define_cache[name][1]
        evidence = set(side_evidence)
        collect_record_sources(value, evidence)
        return DefineResult(value, tuple(sorted(evidence)))

    def define_value(self, ctx: Context, name: str, merge: bool = True) -> Any:
        """Value of a define for this context (cached); its evidence is merged into the caller's."""
        cached = ctx.define_cache.get(name)
        if cached is None:
            outer_ev, outer_scope = ctx.ev, ctx.scope
            own_ev = ctx.ev = set()
            ctx.scope = {}
            try:
                value = self._closures[name](ctx)
            except EvaluationFailure as exc:
                raise self._failure(exc, name) from None
            except RecursionError:
                raise CqlEvaluationError("defines and functions call each other too deeply to evaluate", define=name,
                                         filename=self.filename) from None
            finally:
                ctx.ev, ctx.scope = outer_ev, outer_scope
            cached = ctx.define_cache[name] = (value, own_ev)
        if merge and cached[1]:
            ctx.ev.update(cached[1])
        return cached[0]

    def parameter_value(self, ctx: Context, name: str) -> Any:
        """An override, else the default evaluated in this context (so `Now()` in a default is `now`)."""
        values = ctx.parameter_values
        if name in values:
            return values[name]
        default = self._parameters[name].default
        value = None
        if default is not None:
            outer_ev, outer_scope = ctx.ev, ctx.scope
            ctx.ev, ctx.scope = set(), {}
            try:
                value = default(ctx)
            except EvaluationFailure as exc:
                raise self._failure(exc, f"default of parameter \"{name}\"") from None
            finally:
                ctx.ev, ctx.scope = outer_ev, outer_scope
        values[name] = value
        return value

    def _failure(self, exc: EvaluationFailure, define: str) -> CqlEvaluationError:
        return CqlEvaluationError(exc.message, define=define, filename=self.filename, line=exc.line,
                                  column=exc.column, source_line=source_line(self._source, exc.line))

    def __repr__(self) -> str:
        return f"Library({self.name!r}, version={self.version!r}, defines={len(self.define_names)})"


class _NoData:
    """Provider for parameter defaults, which cannot read patient data."""

    def patient(self) -> Record | None:
        """No patient: defaults cannot refer to patient data."""
        return None

    def retrieve(self, type_name: str, codes: frozenset[Code] | None) -> list[Record]:
        """No records: defaults cannot retrieve."""
        return []


def _resolve_valuesets(valueset_dir, valuesets) -> dict[str, ValueSet]:
    found: dict[str, ValueSet] = {}
    if valueset_dir is not None:
        found.update(load_valueset_dir(valueset_dir))
    if valuesets is not None:
        found.update(from_mapping(valuesets))
    return found


def _compile(source: str, filename: str, model: ModelInfo, valueset_dir, valuesets) -> Library:
    tree = parse(source, filename)
    available = _resolve_valuesets(valueset_dir, valuesets)

    def build(deep: bool) -> Library:
        """Compile the tree into a Library; `deep` marks it to evaluate on a large-stack thread."""
        generated = compile_tree(tree, source=source, filename=filename, model=model, valuesets=available)
        return Library(generated, deep=deep)
    if tree.nesting > SHALLOW_NESTING:
        return run_deep(build, True)
    try:
        return build(False)
    except RecursionError:   # long chains of defines referring to later defines: retry on a large stack
        return run_deep(build, True)


def compile_library(source: str, *, filename: str = "<string>", model: ModelInfo,
                    valueset_dir: str | Path | None = None,
                    valuesets: Mapping[str, Iterable] | None = None) -> Library:
    """Parse, resolve and type-check a library; raises CqlCompilationError listing every error."""
    try:
        return _compile(source, filename, model, valueset_dir, valuesets)
    except (CqlCompilationError, UnplacedError):   # an unplaced error escaping is a bug: not a rule author's error
        raise
    except CqlError as exc:
        raise CqlCompilationError([exc]) from None
    except RecursionError:
        raise CqlCompilationError([CqlSyntaxError("defines and functions refer to each other too deeply",
                                                  filename=filename)]) from None


def read_source(path: str | Path) -> str:
    """A library file's text; bytes that are not UTF-8 are a syntax error at their line and byte offset."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise CqlSyntaxError(f"the file is not UTF-8 (byte offset {exc.start}, byte 0x{data[exc.start]:02x})",
                             filename=str(path), line=line, column=column) from None
    return text[1:] if text.startswith("\ufeff") else text


def load_library(path: str | Path, *, model: ModelInfo, valueset_dir: str | Path | None = None) -> Library:
    """Read, parse, resolve and type-check a library file once; raises CqlCompilationError."""
    path = Path(path)
    try:
        source = read_source(path)
    except CqlSyntaxError as exc:
        raise CqlCompilationError([exc]) from None
    except OSError as exc:
        raise CqlCompilationError([CqlError(f"cannot read library: {exc.strerror or exc}",
                                            filename=str(path))]) from None
    return compile_library(source, filename=str(path), model=model, valueset_dir=valueset_dir)


def check_library(path: str | Path, *, model: ModelInfo, valueset_dir: str | Path | None = None) -> list[CqlError]:
    """Every error in a library file ([] when it is clean), for `rules check`."""
    try:
        load_library(path, model=model, valueset_dir=valueset_dir)
    except CqlCompilationError as exc:
        return list(exc.errors)
    except UnplacedError:
        raise
    except CqlError as exc:
        return [exc]
    return []
