"""Data-driven compliance suite: every case of every tests/cql_compliance/*.json file."""

from __future__ import annotations

import pytest

from service.cql_like import CqlCompilationError, CqlError, compile_library, format_value

from cqlcases import MODEL, FactsProvider, decode, iter_cases, same_value

CASES = list(iter_cases())
ERROR_KINDS = {"syntax", "name", "type", "evaluation"}


def test_the_suite_has_enough_cases_of_its_own():
    own = [c for c in CASES if c.file_stem.startswith("engine_")]
    assert len(own) >= 170


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_compliance_case(case):
    assert case.error is None or case.error in ERROR_KINDS, f"bad error kind {case.error!r}"
    provider = FactsProvider(case.facts)
    try:
        library = compile_library(case.source, filename=f"{case.file_stem}.cql", model=MODEL,
                                  valuesets={url: [tuple(c) for c in codes] for url, codes in case.valuesets.items()})
        result = library.evaluate_define("Result", provider, now=case.now)
    except CqlCompilationError as exc:
        kinds = {e.kind for e in exc.errors}
        if case.error is None:
            pytest.fail(f"unexpected compile error:\n{exc}")
        assert case.error in kinds, f"expected a {case.error} error, got:\n{exc}"
        return
    except CqlError as exc:
        if case.error is None:
            pytest.fail(f"unexpected error:\n{exc}")
        assert exc.kind == case.error, f"expected a {case.error} error, got:\n{exc}"
        return
    if case.error is not None:
        pytest.fail(f"expected a {case.error} error, got the value {format_value(result.value)}")
    expected = decode(case.expected, provider.by_source)
    assert same_value(result.value, expected), (
        f"got {format_value(result.value)}, expected {format_value(expected)}")
    if case.evidence is not None:
        assert list(result.evidence) == case.evidence
