"""Which Observations ingest reads, decided from their codes before anything is validated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.cql_like.valuesets import load_valueset_dir
from service.pipeline.ingest import read_bundle
from service.pipeline.selection import default_selection

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = (ROOT / "service" / "knowledge" / "CalcinosisCutis.cql").read_text(encoding="utf-8")
LOINC = "http://loinc.org"


def _observation(*codings, components=()):
    resource = {"resourceType": "Observation", "status": "final", "code": {"coding": list(codings)},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-01"}
    if components:
        resource["component"] = [{"code": {"coding": [coding]}} for coding in components]
    return resource


def test_every_code_an_observation_retrieve_of_the_library_names_is_read():
    selection = default_selection()
    value_sets = {vs.url: vs for vs in load_valueset_dir(ROOT / "service" / "knowledge" / "valuesets").values()}
    declared_sets = dict(re.findall(r'^valueset "([^"]+)":\s*\'([^\']+)\'', LIBRARY, re.M))
    systems = dict(re.findall(r'^codesystem "([^"]+)":\s*\'([^\']+)\'', LIBRARY, re.M))
    declared_codes = {name: (systems[system], code) for name, code, system in
                      re.findall(r'^code "([^"]+)":\s*\'([^\']+)\' from "([^"]+)"', LIBRARY, re.M)}
    retrieved = set(re.findall(r'\[(?:Observation|DataGap): "([^"]+)"\]', LIBRARY))
    assert retrieved
    for name in retrieved:
        if name in declared_codes:
            pairs = [declared_codes[name]]
        else:
            value_set = value_sets[declared_sets[name]]
            pairs = [(code.system, code.code) for code in value_set.codes]
        assert pairs, name
        for system, code in pairs:
            assert selection.reads_observation(_observation({"system": system, "code": code})), (name, code)


@pytest.mark.parametrize("observation", [
    _observation({"system": LOINC, "code": "17861-6"}),  # calcium
    _observation({"system": "urn:oid:2.16.840.1.113883.6.1", "code": "17861-6"}),  # LOINC by its OID
    _observation({"system": LOINC, "code": "8302-2"}),  # body height: unverified code, matched by name too
    _observation({"system": LOINC, "code": "85354-9"}, components=[{"system": LOINC, "code": "2731-8"}]),
    _observation({"system": "http://lab.example.org/codes", "code": "CA"}),  # no known system: told so
], ids=["analyte", "oid-alias", "name-matched", "component", "unknown-system"])
def test_observations_the_rules_read_or_must_report_are_read(observation):
    assert default_selection().reads_observation(observation)


def test_an_observation_of_a_known_system_with_a_code_nobody_reads_is_counted_not_modelled():
    weight = _observation({"system": LOINC, "code": "29463-7"})
    bad_weight = dict(_observation({"system": LOINC, "code": "29463-7"}), valueQuantity={"value": "heavy"})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}}, {"resource": weight}, {"resource": bad_weight}]}
    ingested = read_bundle(bundle)
    assert [issue.diagnostics for issue in ingested.issues] == ["not assessed (not read by the rules): Observation 2"]
    (patient,) = ingested.patients
    assert patient.resources == () and patient.skipped == () and patient.issues == ()  # never validated


# --- the one-loop reading of an Observation's codings is the plain one ----------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from service.fhir_reading.elements import codings  # noqa: E402
from service.pipeline.selection import default_selection  # noqa: E402

_ANY = st.one_of(st.none(), st.integers(0, 2), st.just(["x"]), st.just({"a": 1}))
_CODING = st.one_of(st.fixed_dictionaries({}, optional={
    "system": st.one_of(st.sampled_from(["http://loinc.org", "urn:oid:2.16.840.1.113883.6.1", "http://snomed.info/sct",
                                         "http://example.org/local", ""]), _ANY),
    "code": st.one_of(st.sampled_from(["17861-6", "2777-1", "8867-4", "29463-7", " 2160-0", "240977001", ""]), _ANY)}),
    _ANY, st.just("text"))
_CODEABLE = st.one_of(st.fixed_dictionaries({}, optional={"coding": st.one_of(st.lists(_CODING, max_size=3), _ANY),
                                                         "text": st.text(max_size=3)}), _ANY)
_OBSERVATION = st.fixed_dictionaries({"resourceType": st.just("Observation")}, optional={
    "code": _CODEABLE,
    "component": st.one_of(st.lists(st.one_of(st.fixed_dictionaries({}, optional={"code": _CODEABLE}), _ANY),
                                    max_size=3), _ANY)})


def _reads_plainly(selection, resource) -> bool:
    """Every coding of the code and the components' codes listed, then each looked at in turn."""
    items = codings(resource.get("code"))
    components = resource.get("component")
    for component in components if isinstance(components, list) else ():
        if isinstance(component, dict):
            items = items + codings(component.get("code"))
    recognised = False
    for item in items:
        system, code = item.get("system"), item.get("code")
        if not isinstance(system, str):
            continue
        if selection.terminology.is_recognised_system(system):
            recognised = True
        if isinstance(code, str) and selection.reads_code(system, code):
            return True
    return not recognised


@settings(max_examples=400, deadline=None)
@given(resource=_OBSERVATION)
def test_which_observations_are_read_is_decided_as_by_listing_every_coding(resource):
    selection = default_selection()
    assert selection.reads_observation(resource) is _reads_plainly(selection, resource)
