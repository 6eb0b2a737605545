"""The shortcuts of reading lab results give what the plain computations give.

A test code's reading is remembered per terminology, a value is converted once for its rounded and its
exact form, a default band's Interval is shared, an age meets a band edge without a lookup table, and
unit aliases are looked up in a set: each is held here to the computation it replaces.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Context, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from service.pipeline.observations import CodeReading, ObservationNormalizer, PatientAgeContext, _code_key
from service.terminology import MIN_CONVERTED_DIGITS, UnitConversionError, load_terminology, read_terminology
from service.terminology.ages import Age, AgeBound

TERMINOLOGY = load_terminology()
SYSTEMS = st.sampled_from(["http://loinc.org", "urn:oid:2.16.840.1.113883.6.1", "http://snomed.info/sct",
                           "http://example.org/local", " http://loinc.org", ""])
CODES = st.sampled_from([row.code for row in TERMINOLOGY.codes][:12] + ["8867-4", " 17861-6 ", "240977001", ""])
TEXTS = st.one_of(st.none(), st.text(max_size=6), st.sampled_from(["Calcium", "  ", "\x0b"]))
# Element values as sent: mostly strings, sometimes another JSON kind (the reading then is not remembered).
VALUES = st.one_of(TEXTS, st.integers(-2, 2), st.booleans(), st.just(["x"]))
CODINGS = st.fixed_dictionaries({}, optional={"system": st.one_of(SYSTEMS, VALUES), "code": st.one_of(CODES, VALUES),
                                              "display": VALUES, "version": VALUES, "userSelected": st.booleans(),
                                              "extension": st.just([{"url": "http://example.org/x"}])})
CODEABLES = st.one_of(
    st.fixed_dictionaries({}, optional={"coding": st.one_of(st.lists(st.one_of(CODINGS, st.just("x")), max_size=3),
                                                            VALUES),
                                        "text": VALUES}),
    VALUES)


def _normalizer(terminology=TERMINOLOGY) -> ObservationNormalizer:
    return ObservationNormalizer(terminology, PatientAgeContext(None, None), [])


@settings(max_examples=400, deadline=None)
@given(codeable=CODEABLES)
def test_a_remembered_code_reading_is_the_reading_of_the_code(codeable):
    normalizer = _normalizer()
    plain = normalizer.read_code(codeable)
    assert isinstance(plain, CodeReading)
    assert normalizer._code_reading(codeable) == plain
    assert _normalizer()._code_reading(codeable) == plain  # remembered across normalizers of one terminology


@settings(max_examples=200, deadline=None)
@given(first=CODEABLES, second=CODEABLES)
def test_codes_that_share_a_key_are_read_alike(first, second):
    """The key holds every part a reading depends on: equal keys, equal readings."""
    key_one, key_two = _code_key(first), _code_key(second)
    if key_one is not None and key_one == key_two:
        assert _normalizer().read_code(first) == _normalizer().read_code(second)


def test_a_code_sent_with_the_loinc_oid_is_read_as_loinc_each_time_with_its_note():
    codeable = {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.1", "code": "17861-6"}]}
    for _ in range(2):
        reading = _normalizer()._code_reading(codeable)
        assert reading.analyte_code is not None and reading.analyte_code.analyte == "calcium"
        assert reading.concept.codes[0].system == "http://loinc.org"
        assert [path for path, _ in reading.notes] == ["code.coding[0]"]


def test_readings_are_remembered_per_terminology():
    other = read_terminology()  # the same tables, another instance: its own readings
    codeable = {"coding": [{"system": "http://loinc.org", "code": "17861-6"}], "text": "Calcium"}
    assert _normalizer(other)._code_reading(codeable) == _normalizer()._code_reading(codeable)
    assert _normalizer(other)._code_reading(codeable).analyte_code is not _normalizer()._code_reading(
        codeable).analyte_code


ANALYTES = st.sampled_from(sorted(TERMINOLOGY.analytes))
UNITS = st.one_of(st.none(), st.sampled_from(["mg/dL", "mg/dl", "mmol/L", "umol/L", "µmol/L", "pg/mL", "ng/L",
                                               "pmol/L", "ng/mL", "nmol/L", "mEq/L", "g/L", "", " ", "furlong"]))
MEASURED = st.decimals(min_value=Decimal("-1e6"), max_value=Decimal("1e9"), allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(analyte=ANALYTES, value=MEASURED, unit=UNITS)
def test_one_conversion_gives_the_rounded_and_the_exact_value_of_the_plain_steps(analyte, value, unit):
    row = TERMINOLOGY.analyte(analyte)
    factor = TERMINOLOGY.unit_factor(row, unit) if row.is_quantitative else None
    if factor is None:
        for call in (TERMINOLOGY.measurement, TERMINOLOGY.convert, TERMINOLOGY.convert_measurement):
            try:
                call(analyte, value, unit)
            except UnitConversionError:
                continue
            raise AssertionError(f"{call.__name__} converted {value} {unit} for {analyte}")
        return
    exact = value * factor.factor
    rounded = exact
    if factor.factor != 1 and exact.is_finite() and exact != 0:
        rounded = Context(prec=max(MIN_CONVERTED_DIGITS, len(value.as_tuple().digits)),
                          rounding=ROUND_HALF_UP).plus(exact)
        if rounded.as_tuple().exponent > 0:
            rounded = rounded.quantize(Decimal(1), context=Context(prec=80))
    got = TERMINOLOGY.measurement(analyte, value, unit)
    assert got == (rounded, exact, factor)
    assert str(got[0]) == str(rounded) and str(got[1]) == str(exact)  # the same digits, not only the same number
    assert TERMINOLOGY.convert(analyte, value, unit) == exact
    assert str(TERMINOLOGY.convert_measurement(analyte, value, unit)) == str(rounded)


def test_unit_aliases_are_found_as_by_scanning_the_table():
    aliases = dict(TERMINOLOGY._aliases)
    for spelling in [*aliases, *aliases.values(), "MG/DL", " mg/dl ", "µg/L", "μg/L", "furlong", ""]:
        plain = spelling if spelling in list(aliases.values()) else aliases.get(
            spelling.strip().replace("µ", "u").replace("μ", "u").lower())
        assert TERMINOLOGY.ucum_unit(spelling) == plain


@settings(max_examples=300, deadline=None)
@given(birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 1, 1)),
       on=st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 1, 1)),
       bound=st.builds(AgeBound, st.integers(0, 120), st.sampled_from("dmy")))
def test_an_age_reaches_a_band_edge_as_its_unit_says(birth, on, bound):
    age = Age(days=(on - birth).days, months=(on.year - birth.year) * 12 + on.month - birth.month,
              years=on.year - birth.year)
    completed = {"d": age.days, "m": age.months, "y": age.years}[bound.unit]
    assert age.reached(bound) is (completed >= bound.value)


def test_the_records_of_one_patient_share_a_default_bands_interval_and_it_is_the_bands_range():
    normalizer = _normalizer()
    band = TERMINOLOGY.default_range("calcium", None)
    interval = normalizer._band_interval(band)
    assert normalizer._band_interval(band) is interval
    assert (interval.low.value, interval.high.value, interval.low.unit) == (band.low, band.high, band.unit)


QUANTITIES = st.fixed_dictionaries({"value": st.sampled_from([1, 2.5, 10])}, optional={
    "system": st.sampled_from(["http://unitsofmeasure.org", "http://snomed.info/sct", "", 5]),
    "code": st.sampled_from(["mg/dL", "mmol/L", "mg/dl", "pg/mL", "258797006", " ", "", 3]),
    "unit": st.sampled_from(["mg/dL", "mmol/L", "mg/dl", "milligrams", "pg/mL", "", None, 2])})


@settings(max_examples=200, deadline=None)
@given(quantities=st.lists(QUANTITIES, min_size=1, max_size=6), analyte=st.sampled_from(["calcium", "pth", "phosphate"]))
def test_a_remembered_unit_verdict_reads_a_quantity_as_a_fresh_reading_does(quantities, analyte):
    from service.assessment_model import EntryPlace

    seen = _normalizer()
    where = EntryPlace(0, "resource.valueQuantity")
    for quantity in quantities:
        fresh = _normalizer()
        before = len(seen.issues)
        assert seen._exact_number(quantity, where, "Calcium", analyte) == fresh._exact_number(
            quantity, where, "Calcium", analyte)
        assert seen.issues[before:] == fresh.issues
