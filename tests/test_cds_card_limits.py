"""The sweep: every CDS Hooks example and every $assess fixture, as a clinician would see its cards.

A card is read in a few seconds. For every example request of fhir_fixtures/cds-hooks and every
patient of every fhir_fixtures/assess bundle (wrapped as a patient-view prefetch), answered by the
real core: the summary is under 140 characters, the detail at most 120 words as rendered (a table's
cells count), no bundle or prefetch location and no LOINC long name in any text a person reads, at
most three data notes, the located notes in the card's extension, and the cards conform to the spec.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.card_text import (DATA_NOTES_EXTENSION, data_note_lines, limit_violations, rendered_words)
from tests.support.cds_fixtures import (HOOKS, assess_fixture_paths, core_at_fixture_time, fixture_app,
                                        patient_view_requests_from_assess_fixtures, request_for)
from tests.support.cds_spec import card_violations

EXAMPLES = [(f"example:{hook}", hook, request_for(hook)) for hook in HOOKS]
FIXTURE_CALLS = [(name, "patient-view", body) for name, body in patient_view_requests_from_assess_fixtures()]
CALLS = EXAMPLES + FIXTURE_CALLS


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with core_at_fixture_time():
        yield fixture_app(tmp_path_factory.mktemp("cds-limits")).test_client()


def _cards(client, hook: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(f"/cds-services/calcinosis-{hook}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert card_violations(answer) == []
    return answer["cards"]


def test_the_sweep_covers_every_example_and_every_patient_of_every_fixture():
    assert len(EXAMPLES) == 3
    fixtures = {name.split(":")[0] for name, _, _ in FIXTURE_CALLS}
    assert fixtures == {path.stem for path in assess_fixture_paths()}
    assert len(FIXTURE_CALLS) == len(fixtures) + 2  # the multi-patient transaction holds three patients


@pytest.mark.parametrize("name, hook, body", CALLS, ids=[name for name, _, _ in CALLS])
def test_every_card_keeps_the_limits_of_a_card_read_in_five_seconds(client, name, hook, body):
    cards = _cards(client, hook, body)
    problems = [f"{card['summary']}: {problem}" for card in cards for problem in limit_violations(card)]
    assert problems == []


def test_the_examples_say_something_on_every_hook(client):
    for _, hook, body in EXAMPLES:
        assert _cards(client, hook, body), hook


# ---- the checks catch what they look for ------------------------------------------------------------

def test_the_word_count_is_of_the_rendered_text_and_counts_table_cells():
    detail = ("**Metastatic calcinosis** (high)\n\n| Test | Value | Date |\n|---|---|---|\n"
              "| Ca | 11.2 mg/dL (H) | 2026-11-01 |\n\n- PTH, CBC\n\n_Source: StatPearls_")
    assert rendered_words(detail) == ["Metastatic", "calcinosis", "(high)", "Test", "Value", "Date", "Ca", "11.2",
                                      "mg/dL", "(H)", "2026-11-01", "PTH,", "CBC", "Source:", "StatPearls"]


def test_the_limits_catch_a_location_a_loinc_long_name_a_long_detail_and_too_many_notes():
    card = {"summary": "x" * 140, "detail": "word " * 121 + "\n\n**Data notes**\n- a\n- b\n- c\n- d (prefetch.labs.entry[1])",
            "suggestions": [{"label": "Order 1 missing test", "actions": [
                {"type": "create", "description": "Propose Parathyrin.intact [Mass/volume] in Serum or Plasma"}]}]}
    problems = "\n".join(limit_violations(card))
    assert "summary has 140 characters" in problems
    assert "detail has 128 words" in problems
    assert "'prefetch.' in card text" in problems
    assert "'[Mass/volume]'" in problems and "'in Serum or Plasma'" in problems
    assert "4 data-note lines" in problems
    assert "without the located list" in problems
    assert data_note_lines(card["detail"])[:2] == ["a", "b"]


def test_a_card_with_its_data_notes_located_in_the_extension_passes():
    card = {"summary": "Calcinosis check: incomplete data", "detail": "Partly read.\n\n**Data notes**\n- Lab results "
            "were read only in part", "extension": {DATA_NOTES_EXTENSION: [
                {"severity": "warning", "text": "prefetch 'labs' is only the first page", "location": "prefetch.labs"}]}}
    assert limit_violations(card) == []
