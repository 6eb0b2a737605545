"""Lab terminology: LOINC -> analyte, unit conversion and default ranges, loaded from JSON.

The tables (analytes.json, unit_aliases.json, reference_ranges.json,
interpretation_codes.json) hold every code, molar mass and range together with
its verification mark (V, V2, U) and the public source it was checked against, so a
reviewer checks data rather than code; this module only loads and applies them. Unit
factors are not tabled: each is derived at load with the rule engine's UCUM, through the
analyte's molar mass or charge where the dimensions differ (unit_factors.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .ages import Age, AgeBound
from .unit_factors import Bridge, UnitDerivationError, derive_factor
from ..errors import CalcinosisError

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
DATA_DIRECTORY = Path(__file__).resolve().parent

QUANTITATIVE, QUALITATIVE, PANEL = "quantitative", "qualitative", "panel"
AGE_UNKNOWN_SOURCE_LABEL = "default (age unknown): flagged only outside every age band"
# The range source of a result whose analyte has default bands, none of which covers the patient's age:
# no band of another age is borrowed, so the result has no flag (unknown, not normal).
NO_DEFAULT_RANGE_FOR_AGE = "no default range for this age"
# Significant digits a converted value keeps at least (a 2-digit measurement still reads to 3).
MIN_CONVERTED_DIGITS = 3
MAX_CONVERTED_DIGITS = 80  # room for any accepted value (below 10^28) times any factor, written out in full


class TerminologyDataError(CalcinosisError, ValueError):
    """A terminology data file is malformed (a packaging error, never the caller's input)."""


class UnitConversionError(CalcinosisError, ValueError):
    """A value's unit is unknown or cannot be converted to the analyte's canonical unit."""


@dataclass(frozen=True, slots=True)
class UnitFactor:
    """Multiplying a value in `unit` by `factor` gives the canonical unit."""

    unit: str
    factor: Decimal
    mark: str
    source: str
    # Said (information) wherever a result is read through this row: a unit accepted only with a
    # reading the sender did not write out (bare 'mL/min' for eGFR is read per 1.73 m2).
    note: str | None = None
    # What UCUM and the analyte's molar mass or charge give, and how ('UCUM mmol/L -> mg/dL x molar
    # mass 40.08 g/mol'); `factor` is this one unless the row states a convention.
    derived_factor: Decimal | None = None
    derivation: str = ""
    # Why a clinical convention replaces the derived factor (ionized calcium x 4.0), else None.
    convention: str | None = None


@dataclass(frozen=True, slots=True)
class Analyte:
    """One analyte of analytes.json: its kind, canonical unit and the unit factors that convert to it."""

    key: str
    label: str
    kind: str  # quantitative | qualitative | panel
    canonical_unit: str | None
    units: Mapping[str, UnitFactor]
    unitless_means_canonical: bool = False
    group: str | None = None
    # The molar mass and/or charge through which units of another dimension convert.
    bridges: tuple[Bridge, ...] = ()

    def bridge(self, name: str) -> Bridge | None:
        """The analyte's 'molar mass' or 'charge' as declared in analytes.json, or None."""
        return next((bridge for bridge in self.bridges if bridge.name == name), None)

    @property
    def is_quantitative(self) -> bool:
        """True when results are numbers converted to the canonical unit."""
        return self.kind == QUANTITATIVE


@dataclass(frozen=True, slots=True)
class AnalyteCode:
    """One LOINC row of analytes.json."""

    system: str
    code: str
    analyte: str
    label: str
    loinc_name: str
    specimen: str
    mark: str
    name_mark: str
    source: str
    # Lower-case words the result's name must mention as well: a code not verified (mark U)
    # is never relied on alone. The rule library matches them (8302-2: "Body Height Names") and says so.
    match_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DefaultRange:
    """A built-in reference range for one age band, in the analyte's canonical unit."""

    analyte: str
    label: str  # "adult", "child 1-12 y" ...
    low: Decimal | None
    high: Decimal | None
    unit: str
    min_age: AgeBound
    max_age: AgeBound | None
    adult: bool
    mark: str
    source: str
    # True for the range applied when the age is unknown and the bands differ: from the lowest low to
    # the highest high of all bands, so a value inside it may be normal or not depending on the age.
    spans_every_age_band: bool = False

    @property
    def unverified(self) -> bool:
        """True for a range marked U (unverified): labelled unverified wherever it is applied."""
        return self.mark == "U"

    @property
    def source_label(self) -> str:
        """What the facts say about the range applied: 'default adult', 'default child 1-12 y (unverified)'."""
        if self.spans_every_age_band:
            return AGE_UNKNOWN_SOURCE_LABEL
        return f"default {self.label}" + (" (unverified)" if self.unverified else "")

    @property
    def bounds_text(self) -> str:
        """'2.5-4.5 mg/dL', '>= 20 ng/mL' or '<= 5 mg/dL': the bounds as a clinician reads them."""
        if self.low is not None and self.high is not None:
            return f"{self.low}-{self.high} {self.unit}"
        if self.low is not None:
            return f">= {self.low} {self.unit}"
        if self.high is not None:
            return f"<= {self.high} {self.unit}"
        return "no bounds"

    def covers(self, age: Age) -> bool:
        """True when `age` falls in this band: min_age reached and max_age (if any) not yet reached."""
        return age.reached(self.min_age) and (self.max_age is None or not age.reached(self.max_age))


class Terminology:
    """Read-only lookups over the loaded tables."""

    def __init__(self, analytes: Mapping[str, Analyte], codes: Mapping[tuple[str, str], AnalyteCode],
                 aliases: Mapping[str, str], ranges: Mapping[str, tuple[DefaultRange, ...]],
                 interpretation_system: str, interpretation_legacy_systems: frozenset[str],
                 interpretation_codes: Mapping[str, str],
                 range_sexes: Mapping[tuple[str, str], str] | None = None,
                 range_sex_texts: Mapping[str, str] | None = None,
                 age_units: Mapping[str, str] | None = None,
                 system_aliases: Mapping[str, tuple[str, str]] | None = None,
                 recognised_systems: frozenset[str] = frozenset()) -> None:
        self._analytes = MappingProxyType(dict(analytes))
        self._codes = MappingProxyType(dict(codes))
        self._aliases = MappingProxyType(dict(aliases))
        self._alias_targets = frozenset(self._aliases.values())  # UCUM codes the aliases name, looked up by hash
        self._ranges = MappingProxyType(dict(ranges))
        self._age_unknown_ranges = MappingProxyType(
            {key: band for key, bands in self._ranges.items() if (band := _age_unknown_range(bands)) is not None})
        self._interpretation_system = interpretation_system
        self._interpretation_legacy = interpretation_legacy_systems
        self._interpretation_codes = MappingProxyType(dict(interpretation_codes))
        self._range_sexes = MappingProxyType(dict(range_sexes or {}))
        self._range_sex_texts = MappingProxyType(dict(range_sex_texts or {}))
        self._age_units = MappingProxyType(dict(age_units or {}))
        self._system_aliases = MappingProxyType(dict(system_aliases or {}))
        self._recognised_systems = recognised_systems | frozenset(
            system for system, _ in self._system_aliases.values())

    # --- code systems -------------------------------------------------------------------------
    def system_alias(self, system: str | None) -> tuple[str, str] | None:
        """(canonical URI, name) when `system` is another identifier of a code system ('urn:oid:...'), else None."""
        return self._system_aliases.get(system) if isinstance(system, str) else None

    def is_recognised_system(self, system: str | None) -> bool:
        """True for a code system whose codes are known here (its canonical URI or an alias of it)."""
        return isinstance(system, str) and (system in self._recognised_systems or system in self._system_aliases)

    # --- codes and analytes -------------------------------------------------------------------
    def analyte_for(self, system: str | None, code: str | None) -> AnalyteCode | None:
        """The analytes.json row for a coding, or None when the code is not one the rules read.

        A system alias (the LOINC OID) is read as its canonical URI; callers report the alias."""
        if not isinstance(system, str) or not isinstance(code, str):
            return None
        alias = self.system_alias(system)
        return self._codes.get((alias[0] if alias is not None else system, code.strip()))

    def analyte(self, key: str) -> Analyte:
        """The analyte definition; KeyError for an unknown key."""
        return self._analytes[key]

    @property
    def analytes(self) -> Mapping[str, Analyte]:
        """Every analyte by key, read-only."""
        return self._analytes

    @property
    def codes(self) -> tuple[AnalyteCode, ...]:
        """Every analytes.json coding row."""
        return tuple(self._codes.values())

    # --- units ----------------------------------------------------------------------------------
    def ucum_unit(self, spelling: str) -> str | None:
        """The UCUM code for a unit as real data spells it ('mg/dl', 'µmol/L', 'IU/L'), or None."""
        if spelling in self._alias_targets:
            return spelling
        folded = spelling.strip().replace("µ", "u").replace("μ", "u").lower()
        return self._aliases.get(folded)

    def convert(self, analyte_key: str, value: Decimal, unit: str | None) -> Decimal:
        """`value` in `unit` expressed in the analyte's canonical unit; raises UnitConversionError."""
        return self._converted(analyte_key, value, unit)[0]

    def convert_measurement(self, analyte_key: str, value: Decimal, unit: str | None) -> Decimal:
        """Like `convert`, but a value converted by a factor other than 1 is rounded to
        max(3, significant digits of `value`) significant digits: a converted value is no more
        precise than the measurement (2.12 mmol/L calcium -> 8.50 mg/dL, not 8.49696)."""
        return self.measurement(analyte_key, value, unit)[0]

    def measurement(self, analyte_key: str, value: Decimal, unit: str | None) -> tuple[Decimal, Decimal, UnitFactor]:
        """(`convert_measurement`, `convert`, the unit row used) from one lookup of the unit: a result
        needs both values (a bound is judged unrounded) and the row's note."""
        converted, factor = self._converted(analyte_key, value, unit)
        if factor.factor == 1 or not converted.is_finite() or converted == 0:
            return converted, converted, factor
        digits = max(MIN_CONVERTED_DIGITS, _significant_digits(value))
        rounded = Context(prec=digits, rounding=ROUND_HALF_UP).plus(converted)
        if rounded.as_tuple().exponent > 0:  # type: ignore[operator]
            rounded = rounded.quantize(Decimal(1), context=Context(prec=MAX_CONVERTED_DIGITS))  # 4.01E+4 -> 40100
        return rounded, converted, factor

    def _converted(self, analyte_key: str, value: Decimal, unit: str | None) -> tuple[Decimal, UnitFactor]:
        analyte = self._analytes.get(analyte_key)
        if analyte is None or not analyte.is_quantitative or analyte.canonical_unit is None:
            raise UnitConversionError(f"'{analyte_key}' is not a quantitative analyte")
        factor = self.unit_factor(analyte, unit)
        if factor is None:
            shown = "no unit" if not unit else f"unit '{unit}'"
            raise UnitConversionError(
                f"{shown} cannot be converted to {analyte.canonical_unit} for {analyte.label}")
        return value * factor.factor, factor

    def unit_factor(self, analyte: Analyte, unit: str | None) -> UnitFactor | None:
        """The conversion row for `unit` (as given, or through the aliases), or None."""
        if unit is None or not unit.strip():
            if analyte.unitless_means_canonical and analyte.canonical_unit is not None:
                return analyte.units.get(analyte.canonical_unit)
            return None
        found = analyte.units.get(unit)
        if found is not None:
            return found
        ucum = self.ucum_unit(unit)
        return analyte.units.get(ucum) if ucum is not None else None

    # --- ranges ---------------------------------------------------------------------------------
    def default_ranges(self, analyte_key: str) -> tuple[DefaultRange, ...]:
        """All age bands of an analyte's built-in range in table order; empty when it has none."""
        return self._ranges.get(analyte_key, ())

    def default_range(self, analyte_key: str, age: Age | None) -> DefaultRange | None:
        """The band covering `age`; None if there is none.

        When the age is unknown: the band marked adult if every band has the same bounds (or there is
        only one); else a range spanning every band (`spans_every_age_band`), because applying one
        age's band to a patient of another age flags a normal value (a child's phosphate against the
        adult range) or misses an abnormal one."""
        if age is None:
            return self._age_unknown_ranges.get(analyte_key)
        return next((band for band in self._ranges.get(analyte_key, ()) if band.covers(age)), None)

    # --- interpretation -------------------------------------------------------------------------
    def interpretation_code(self, system: str | None, code: str | None) -> str | None:
        """A v3 ObservationInterpretation code as listed ('H', 'LL', 'POS' ...), or None."""
        if not isinstance(code, str):
            return None
        if system is not None and system != self._interpretation_system and system not in self._interpretation_legacy:
            return None
        return self._interpretation_codes.get(code.strip().upper())


    # --- reference range applicability ----------------------------------------------------------
    def sex_of_range_concept(self, codeable: Any) -> str | None:
        """'male' / 'female' when a referenceRange.appliesTo concept names a sex, else None."""
        if not isinstance(codeable, dict):
            return None
        codings = codeable.get("coding")
        for item in codings if isinstance(codings, list) else ():
            if isinstance(item, dict) and isinstance(item.get("system"), str) and isinstance(item.get("code"), str):
                sex = self._range_sexes.get((item["system"], item["code"].strip()))
                if sex is not None:
                    return sex
        text = codeable.get("text")
        return self._range_sex_texts.get(text.strip().lower()) if isinstance(text, str) else None

    def age_unit(self, ucum_code: str | None) -> str | None:
        """'years', 'months', 'weeks' or 'days' for a UCUM age unit ('a', 'mo', 'wk', 'd'), else None."""
        return self._age_units.get(ucum_code) if isinstance(ucum_code, str) else None


def _age_unknown_range(bands: tuple[DefaultRange, ...]) -> DefaultRange | None:
    """What an unknown age gets: the adult band when every band has the same bounds, else the span."""
    if len({(band.low, band.high) for band in bands}) > 1:
        return _spanning_every_band(bands)
    return next((band for band in bands if band.adult), None)


def _spanning_every_band(bands: tuple[DefaultRange, ...]) -> DefaultRange:
    """The range from the lowest low to the highest high of `bands`; a side stays open when any band
    leaves it open (nothing is below or above every band there)."""
    lows, highs = [band.low for band in bands], [band.high for band in bands]
    first = bands[0]
    return DefaultRange(
        analyte=first.analyte, label="age unknown (every age band)",
        low=None if None in lows else min(low for low in lows if low is not None),
        high=None if None in highs else max(high for high in highs if high is not None),
        unit=first.unit, min_age=AgeBound.parse("0d"), max_age=None, adult=False,
        mark="U" if any(band.unverified for band in bands) else first.mark,
        source="every age band of the default ranges: the lowest low and the highest high",
        spans_every_age_band=True)


def _significant_digits(value: Decimal) -> int:
    """Significant digits of a value as sent: 2.12 -> 3, 0.05 -> 1, 120 -> 3, 2.50 -> 3."""
    return len(value.as_tuple().digits)


# --- loading -------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise TerminologyDataError(f"{path}: {error}") from error
    if not isinstance(data, dict):
        raise TerminologyDataError(f"{path}: top level must be an object")
    return data


def _decimal(text: Any, where: str) -> Decimal:
    try:
        return Decimal(str(text))
    except InvalidOperation as error:
        raise TerminologyDataError(f"{where}: {text!r} is not a decimal") from error


def _load_analytes(path: Path) -> tuple[dict[str, Analyte], dict[tuple[str, str], AnalyteCode]]:
    data = _read_json(path)
    max_deviation = _decimal(data["convention_max_deviation"], f"{path.name}: convention_max_deviation")
    analytes: dict[str, Analyte] = {}
    for key, row in data["analytes"].items():
        canonical = row.get("canonical_unit")
        bridges = _bridges(row, f"{path.name}: analyte {key}")
        units = {unit: _unit_factor(unit, spec, canonical, bridges, max_deviation, f"{path.name}: analyte {key}")
                 for unit, spec in row.get("units", {}).items()}
        if row["kind"] == QUANTITATIVE and (canonical is None or canonical not in units):
            raise TerminologyDataError(f"{path.name}: analyte {key} has no factor for its canonical unit")
        analytes[key] = Analyte(key, row["label"], row["kind"], canonical, MappingProxyType(units),
                                bool(row.get("unitless_means_canonical", False)), row.get("group"), bridges)
    codes: dict[tuple[str, str], AnalyteCode] = {}
    for row in data["codes"]:
        if row["analyte"] not in analytes:
            raise TerminologyDataError(f"{path.name}: code {row['code']} names unknown analyte {row['analyte']}")
        if (row["system"], row["code"]) in codes:
            raise TerminologyDataError(f"{path.name}: code {row['code']} is listed twice")
        codes[(row["system"], row["code"])] = AnalyteCode(
            row["system"], row["code"], row["analyte"], row["label"], row["loinc_name"], row["specimen"],
            row["mark"], row.get("name_mark", row["mark"]), row["source"], _match_names(row, path))
    return analytes, codes


# The analyte quantities that link a unit to a canonical unit of another dimension, in the order tried.
BRIDGE_KEYS = {"molar_mass": "molar mass", "charge": "charge"}


def _bridges(row: dict[str, Any], where: str) -> tuple[Bridge, ...]:
    """The analyte's molar mass and charge, each with its UCUM unit, mark and source."""
    try:
        return tuple(
            Bridge(name, _decimal(spec["value"], f"{where}: {key}"), spec["unit"], spec["mark"], spec["source"])
            for key, name in BRIDGE_KEYS.items() if (spec := row.get(key)) is not None)
    except UnitDerivationError as error:
        raise TerminologyDataError(f"{where}: {error}") from error


def _unit_factor(unit: str, spec: dict[str, Any], canonical: str | None, bridges: tuple[Bridge, ...],
                 max_deviation: Decimal, where: str) -> UnitFactor:
    """One accepted unit: its factor derived with UCUM (through a bridge where the dimensions differ),
    or a convention that the derived factor confirms to within `max_deviation`."""
    where = f"{where}: unit '{unit}'"
    if "factor" in spec:
        raise TerminologyDataError(
            f"{where}: factors are derived from UCUM and the analyte's molar mass or charge, not written; "
            "a deliberate other factor is a 'convention' with its reason")
    if canonical is None:
        raise TerminologyDataError(f"{where}: the analyte has no canonical unit to convert to")
    try:
        derived = derive_factor(unit, canonical, bridges)
    except UnitDerivationError as error:
        raise TerminologyDataError(f"{where}: {error}") from error
    factor, convention = derived.factor, None
    if "convention" in spec:
        factor = _decimal(spec["convention"]["factor"], where)
        convention = spec["convention"]["why"]
        if abs(factor - derived.factor) > derived.factor * max_deviation:
            raise TerminologyDataError(
                f"{where}: the convention factor {factor} is further than {max_deviation} (relative) "
                f"from the derived {derived.factor} ({derived.how})")
    return UnitFactor(unit, factor, spec["mark"], spec["source"], spec.get("note"),
                      derived.factor, derived.how, convention)


def _match_names(row: dict[str, Any], path: Path) -> tuple[str, ...]:
    """The row's `match_names`: required when the code is marked U, since an unverified code is never
    relied on alone; each a non-empty lower-case word or phrase."""
    names = row.get("match_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() and n == n.lower() for n in names):
        raise TerminologyDataError(f"{path.name}: code {row['code']}: match_names must be a list of lower-case words")
    if row["mark"] == "U" and not names:
        raise TerminologyDataError(f"{path.name}: code {row['code']} is marked U (unverified) and has no match_names: "
                                   "an unverified code is never relied on alone")
    return tuple(names)


def _load_ranges(path: Path, analytes: Mapping[str, Analyte]) -> dict[str, tuple[DefaultRange, ...]]:
    data = _read_json(path)
    ranges: dict[str, tuple[DefaultRange, ...]] = {}
    for key, bands in data["ranges"].items():
        analyte = analytes.get(key)
        if analyte is None or analyte.canonical_unit is None:
            raise TerminologyDataError(f"{path.name}: range for unknown or non-quantitative analyte {key}")
        ranges[key] = tuple(
            DefaultRange(
                analyte=key, label=band["label"],
                low=None if band.get("low") is None else _decimal(band["low"], f"{path.name}: {key}"),
                high=None if band.get("high") is None else _decimal(band["high"], f"{path.name}: {key}"),
                unit=analyte.canonical_unit, min_age=AgeBound.parse(band["min_age"]),
                max_age=None if band.get("max_age") is None else AgeBound.parse(band["max_age"]),
                adult=bool(band.get("adult", False)), mark=band["mark"], source=band["source"])
            for band in bands)
    return ranges


def _load(directory: Path) -> Terminology:
    try:
        analytes, codes = _load_analytes(directory / "analytes.json")
        aliases = {key.lower(): value for key, value in _read_json(directory / "unit_aliases.json")["aliases"].items()}
        ranges = _load_ranges(directory / "reference_ranges.json", analytes)
        interpretations = _read_json(directory / "interpretation_codes.json")
        applicability = _read_json(directory / "range_applicability.json")
        range_sexes = {(row["system"], row["code"]): row["sex"] for row in applicability["sexes"]}
        range_sex_texts = {text.lower(): sex for text, sex in applicability["sex_texts"].items()}
        age_units = dict(applicability["age_units"])
        systems = _read_json(directory / "code_systems.json")
        system_aliases = {alias: (row["system"], row["name"]) for alias, row in systems["aliases"].items()}
        recognised_systems = frozenset(systems["recognised"])
    except (KeyError, TypeError, AttributeError) as error:
        raise TerminologyDataError(f"{directory}: malformed terminology table ({error!r})") from error
    return Terminology(
        analytes, codes, aliases, ranges,
        interpretations["system"], frozenset(interpretations.get("legacy_systems", ())),
        {code.upper(): code for code in interpretations["codes"]},
        range_sexes, range_sex_texts, age_units, system_aliases, recognised_systems)


@lru_cache(maxsize=8)
def _load_cached(directory: Path) -> Terminology:
    return _load(directory)


def read_terminology(directory: str | Path | None = None) -> Terminology:
    """The terminology tables in `directory` (default: this package), read now (an Assessor reads its own)."""
    return _load(Path(directory).resolve() if directory is not None else DATA_DIRECTORY)


def load_terminology(directory: str | Path | None = None) -> Terminology:
    """The terminology tables in `directory` (default: this package), loaded once per directory."""
    return _load_cached(Path(directory).resolve() if directory is not None else DATA_DIRECTORY)


__all__ = [
    "AGE_UNKNOWN_SOURCE_LABEL", "NO_DEFAULT_RANGE_FOR_AGE", "LOINC", "UCUM", "Analyte", "AnalyteCode", "DefaultRange", "Terminology", "TerminologyDataError",
    "UnitConversionError", "UnitFactor", "Bridge", "load_terminology", "read_terminology",
]
