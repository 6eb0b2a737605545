"""Automatic garbage collection paused for an assessment: off inside, back on after, whatever happens."""

from __future__ import annotations

import gc
import threading

import pytest

from service.errors import InputError
from service.pipeline import assess as assess_module
from service.pipeline import collection_pause
from service.pipeline.assess import get_assessor
from service.pipeline.collection_pause import collection_paused, is_paused


@pytest.fixture(autouse=True)
def collection_on():
    gc.enable()
    yield
    assert not is_paused() and collection_pause._spans == 0  # every test leaves every span it entered
    gc.enable()


def test_collection_is_off_inside_and_on_after():
    with collection_paused():
        assert not gc.isenabled() and is_paused()
    assert gc.isenabled() and not is_paused()


def test_collection_comes_back_after_an_exception():
    with pytest.raises(ValueError):
        with collection_paused():
            raise ValueError("boom")
    assert gc.isenabled()


def test_nested_spans_resume_only_when_the_outermost_leaves():
    with collection_paused():
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_collection_disabled_before_stays_disabled():
    gc.disable()
    try:
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled() and not is_paused()
    finally:
        gc.enable()


def test_spans_of_two_threads_resume_only_when_both_have_left():
    first_in, second_in, first_out, second_may_leave = (threading.Event() for _ in range(4))
    seen: dict[str, bool] = {}

    def first() -> None:
        with collection_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with collection_paused():
            second_in.set()
            first_out.wait(5)
            seen["after the first left"] = gc.isenabled()
            second_may_leave.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_out.wait(5)
    second_may_leave.set()
    for thread in threads:
        thread.join(5)
    assert seen == {"after the first left": False}
    assert gc.isenabled()


def test_many_threads_entering_and_leaving_leave_collection_on():
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(200):
                with collection_paused():
                    with collection_paused():
                        pass
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and gc.isenabled()


def test_an_overlong_pause_is_ended_by_the_next_span_and_not_restarted_while_spans_overlap(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(collection_pause.time, "monotonic", lambda: clock[0])
    with collection_paused():  # a long request
        assert not gc.isenabled()
        clock[0] += collection_pause.MAX_PAUSE_SECONDS + 1
        with collection_paused():  # another one starts while it runs: collection comes back
            assert gc.isenabled()
        with collection_paused():  # spans still overlap: no new pause
            assert gc.isenabled()
        assert gc.isenabled()
    assert gc.isenabled()
    with collection_paused():  # every span had left: the next one pauses again
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_overlong_pause_is_ended_when_a_span_leaves(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(collection_pause.time, "monotonic", lambda: clock[0])
    with collection_paused():
        with collection_paused():
            clock[0] += collection_pause.MAX_PAUSE_SECONDS + 1
        assert gc.isenabled()  # the outer span is still running, but the pause is over


def test_an_assessment_runs_with_collection_paused(monkeypatch):
    assessor = get_assessor()
    seen: list[bool] = []
    real_read_bundle = assess_module.read_bundle

    def watching(*args, **kwargs):
        seen.append(gc.isenabled())
        return real_read_bundle(*args, **kwargs)

    monkeypatch.setattr(assess_module, "read_bundle", watching)
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}}]}
    run = assessor.assess(bundle)
    assert seen == [False] and len(run.patients) == 1
    assert gc.isenabled()


def test_an_assessment_that_refuses_its_bundle_leaves_collection_on():
    with pytest.raises(InputError):
        get_assessor().assess({"resourceType": "Patient"})
    assert gc.isenabled()


def test_an_assessment_leaves_no_cyclic_garbage():
    """What the pause defers is only cyclic garbage: an assessment of the example Bundles makes none, so
    pausing costs no memory (reference counting frees the rest as the assessment goes)."""
    import json
    from pathlib import Path

    from service.fhir_outputs.result_bundle import build_result_bundle

    assessor = get_assessor()
    examples = sorted(path for path in (Path(__file__).resolve().parents[1] / "fhir_fixtures" / "assess").glob("*.json")
                      if not path.name.endswith(".expected.json"))
    assessed = 0
    for path in examples:
        bundle = json.loads(path.read_text())
        if bundle.get("resourceType") != "Bundle" or assessed == 12:
            continue  # the examples of refused bodies; a dozen Bundles of every kind are enough
        assessed += 1
        gc.collect()
        gc.disable()
        try:
            run = assessor.assess(bundle)
            build_result_bundle(run.patients, run.issues)
            del run, bundle
            assert gc.collect() == 0, path.name
        finally:
            gc.enable()
    assert assessed == 12
