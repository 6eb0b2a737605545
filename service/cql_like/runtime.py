"""Evaluation state for one patient: provider, clock, parameter values, caches and evidence.

Compiled closures take this context as their only argument. `ev` is the
evidence set of the expression being evaluated; queries swap it per row so
that rows a `where` rejects leave no trace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping, Protocol, Sequence

from .values import Code, CqlTuple, Record


class DataProvider(Protocol):
    """Supplies patient data as model records; Context caches what it returns for one evaluation."""

    def patient(self) -> Record | None:
        """The patient record, or None when the input has none."""
        ...

    def retrieve(self, type_name: str, codes: frozenset[Code] | None) -> Sequence[Record]:
        """Records of a model type, filtered to those whose primary code is in `codes` (None: all)."""
        ...


class DefinitionSource(Protocol):
    """What compiled closures ask of the library through the context: other defines and parameters.

    A protocol, so the runtime does not import the library module that builds contexts.
    """

    def define_value(self, ctx: Context, name: str) -> Any:
        """A define's value for this context (cached per evaluation), its evidence merged into `ctx.ev`."""
        ...

    def parameter_value(self, ctx: Context, name: str) -> Any:
        """A parameter's override, else its default evaluated in this context."""
        ...


class Context:
    """Evaluation state for one patient and one `now`; compiled closures take it as their only argument."""
    __slots__ = ("provider", "now", "parameter_values", "define_cache", "retrieve_cache", "call_cache", "kept", "ev",
                 "scope", "_patient", "_patient_loaded", "library")

    def __init__(self, library: DefinitionSource, provider: DataProvider, now: datetime,
                 parameter_values: Mapping[str, Any]) -> None:
        self.library = library
        self.provider = provider
        self.now = now
        self.parameter_values = dict(parameter_values)
        self.define_cache: dict[str, tuple[Any, frozenset[str]]] = {}
        self.retrieve_cache: dict[tuple[str, frozenset | None], list] = {}
        # user function calls: (function, argument keys) -> (value, evidence, arguments kept alive)
        self.call_cache: dict[tuple, tuple[Any, set[str], list]] = {}
        # expressions of the clock and parameters only: node id -> (value, evidence), see constants.py
        self.kept: dict[int, tuple[Any, set[str]]] = {}
        self.ev: set[str] = set()
        self.scope: dict[str, Any] = {}
        self._patient: Record | None = None
        self._patient_loaded = False

    def patient(self) -> Record | None:
        """The patient record, read from the provider once per evaluation."""
        if not self._patient_loaded:
            self._patient = self.provider.patient()
            self._patient_loaded = True
        return self._patient

    def retrieve(self, type_name: str, codes: frozenset[Code] | None) -> list[Record]:
        """Records of a type (optionally filtered by code) without nulls, cached so every retrieve
        of the same type and codes in one evaluation sees the same list."""
        key = (type_name, codes)
        cached = self.retrieve_cache.get(key)
        if cached is None:
            cached = [r for r in self.provider.retrieve(type_name, codes) if r is not None]
            self.retrieve_cache[key] = cached
        return cached


def collect_record_sources(value: Any, into: set[str]) -> None:
    """Add the source of every Record inside a value (lists and tuples walked)."""
    kind = type(value)
    if kind is Record:
        if value.source:
            into.add(value.source)
    elif kind is list:
        for item in value:
            item_kind = type(item)
            if item_kind is Record:
                if item.source:
                    into.add(item.source)
            elif item_kind is list or item_kind is CqlTuple:
                collect_record_sources(item, into)
    elif kind is CqlTuple:
        for item in value._elements.values():   # the tuple's own dict: Mapping.values() is slower
            collect_record_sources(item, into)


Closure = Callable[[Context], Any]
