"""Facts records built through the facts model: the model file and the builders agree by construction.

The rule library is type-checked against `knowledge/model.json`; the normalizer builds the records
the library then reads. Every record goes through `RecordBuilder`, which reads the same model: a
record of a type the model does not declare, a field it does not declare or leaves out, or a value
of the wrong runtime kind for the field's type (a str where the model says DateTime) is an error
when the record is built, so the model cannot drift from what the builders produce.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from ..config import load_config
from ..cql_like import types as T
from ..cql_like.model import ModelInfo, load_model_info
from ..cql_like.quantity import Quantity
from ..cql_like.values import Code, Concept, Interval, Record


class FactsModelError(TypeError):
    """A record that does not fit the facts model: a bug in a builder (or in the model file), never bad input."""


# The Python values the engine uses for each system type (a datetime is no Date, a bool no Integer).
_RUNTIME_KINDS: dict[str, tuple[type, ...]] = {
    "String": (str,), "Boolean": (bool,), "Integer": (int,), "Decimal": (Decimal,), "Date": (date,),
    "DateTime": (datetime,), "Time": (time,), "Quantity": (Quantity,), "Code": (Code,), "Concept": (Concept,),
}
_NOT_KINDS: dict[str, tuple[type, ...]] = {"Integer": (bool,), "Date": (datetime,)}


def _runtime_check(kind: T.CqlType) -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(accepted Python types, excluded subtypes) for a field of static type `kind`."""
    if isinstance(kind, T.IntervalType):
        return (Interval,), ()
    if isinstance(kind, T.ListType):
        return (tuple, list), ()
    accepted = _RUNTIME_KINDS.get(kind.name)
    if accepted is None:
        raise FactsModelError(f"the facts model uses type {kind} for a field; records cannot hold it")
    return accepted, _NOT_KINDS.get(kind.name, ())


class RecordBuilder:
    """Builds `Record`s of the facts model, checking each against the model's declaration of its type."""

    def __init__(self, model: ModelInfo) -> None:
        self.model = model
        self._fields: dict[str, dict[str, tuple[T.CqlType, tuple[type, ...], tuple[type, ...]]]] = {
            name: {field: (kind, *_runtime_check(kind)) for field, kind in spec.fields.items()}
            for name, spec in model.types.items()}
        # type -> field -> the Python types of values found to fit: whether a value fits depends only on
        # its exact Python type, so each combination is checked once per builder, not once a record.
        self._fits: dict[str, dict[str, set[type]]] = {
            name: {field: set() for field in fields} for name, fields in self._fields.items()}

    def __call__(self, type_name: str, fields: Mapping[str, Any], source: str | None = None) -> Record:
        """The record of `type_name` with exactly the model's fields (None for a null one)."""
        declared = self._fields.get(type_name)
        if declared is None:
            raise FactsModelError(f"{type_name} is not a type of the facts model {self.model.model}")
        if fields.keys() != declared.keys():
            extra = sorted(set(fields) - set(declared))
            missing = sorted(set(declared) - set(fields))
            raise FactsModelError(f"{type_name} record: fields not in the facts model {extra}, "
                                  f"model fields not given {missing}")
        fits = self._fits[type_name]
        for name, value in fields.items():
            if value is None or value.__class__ in fits[name]:
                continue
            kind, accepted, excluded = declared[name]
            if not isinstance(value, accepted) or isinstance(value, excluded):
                raise FactsModelError(f"{type_name}.{name} is declared {kind} in the facts model, "
                                      f"but the builder gave a {type(value).__name__}")
            fits[name].add(value.__class__)
        return Record(type_name, fields, source)

    def field_names(self, type_name: str) -> tuple[str, ...]:
        """The fields the model declares for `type_name`, in its order."""
        return tuple(self._fields[type_name])


def record_builder(model_path: str | Path) -> RecordBuilder:
    """The builder for the facts model in `model_path` (an Assessor builds its own)."""
    return RecordBuilder(load_model_info(model_path))


@lru_cache(maxsize=1)
def shipped_record_builder() -> RecordBuilder:
    """The builder for the configured model, for callers that normalize without an Assessor (tests, tools)."""
    return record_builder(load_config()["MODEL_INFO"])
