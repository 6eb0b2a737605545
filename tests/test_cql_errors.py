"""Error reporting: positions, carets, suggestions, and `rules check` on a broken library."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from service.cql_like import (CqlCompilationError, CqlEvaluationError, CqlNameError, CqlSyntaxError, CqlTypeError,
                              check_library, compile_library, load_model_info)
from service.cql_like.tooling import check_paths, render_errors

ROOT = Path(__file__).resolve().parents[1]
MODEL = load_model_info(ROOT / "service" / "knowledge" / "model.json")
SHIPPED_LIBRARY = ROOT / "service" / "knowledge" / "CalcinosisCutis.cql"
SHIPPED_VALUESETS = ROOT / "service" / "knowledge" / "valuesets"
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)

HEADER = "library T version '1'\nusing FHIR version '4.0.1'\ncontext Patient\n"


def compile_errors(body: str) -> list:
    with pytest.raises(CqlCompilationError) as info:
        compile_library(HEADER + body, filename="rules/t.cql", model=MODEL)
    return info.value.errors


class EmptyProvider:
    def patient(self):
        return None

    def retrieve(self, type_name, codes):
        return []


def test_syntax_error_renders_location_source_line_and_caret():
    (error,) = compile_errors('define "A": (1 + 2\ndefine "B": 3')
    assert isinstance(error, CqlSyntaxError)
    assert (error.filename, error.line) == ("rules/t.cql", 5)
    rendered = str(error)
    first, line, caret = rendered.splitlines()
    assert first.startswith("rules/t.cql:5:1: syntax error: unexpected 'define'")
    assert line == '    define "B": 3'
    assert caret == "    ^"


def test_unknown_define_suggests_the_nearest_name():
    (error,) = compile_errors('define "Serum calcium": 1\ndefine "B": "Serum calcum" + 1')
    assert isinstance(error, CqlNameError)
    assert (error.line, error.column) == (5, 13)
    assert "did you mean 'Serum calcium'?" in error.message


def test_unknown_function_fails_at_load_with_suggestion():
    (error,) = compile_errors('define "A": Frist({1})')
    assert isinstance(error, CqlNameError)
    assert "unknown function Frist" in error.message and "did you mean 'First'?" in error.message


def test_type_mismatch_points_at_the_operator_expression():
    (error,) = compile_errors("define \"A\": 1 + ('a' + 1)")
    assert isinstance(error, CqlTypeError)
    assert (error.line, error.column) == (4, 18)
    assert "'+'" in error.message and "String" in error.message and "Integer" in error.message
    assert str(error).splitlines()[-1] == "    " + " " * 17 + "^"


def test_unknown_field_of_a_model_type_is_a_type_error_with_suggestion():
    (error,) = compile_errors('define "A": [Observation] O where O.efective > Now()')
    assert isinstance(error, CqlTypeError)
    assert "Observation has no element 'efective'" in error.message
    assert "did you mean 'effective'?" in error.message


def test_all_errors_are_reported_in_source_order():
    errors = compile_errors('define "A": Count(5)\ndefine "B": "Nope"\ndefine "C": \'x\' - 1')
    assert [(type(e), e.line) for e in errors] == [(CqlTypeError, 4), (CqlNameError, 5), (CqlTypeError, 6)]


def test_compilation_error_renders_every_error():
    with pytest.raises(CqlCompilationError) as info:
        compile_library(HEADER + 'define "A": Count(5)\ndefine "B": "Nope"', filename="t.cql", model=MODEL)
    text = str(info.value)
    assert "t.cql:4:13: type error" in text and "t.cql:5:13: name error" in text


def test_unknown_unit_in_a_literal_is_a_compile_time_type_error():
    (error,) = compile_errors("define \"A\": 5 'mg/dLL'")
    assert isinstance(error, CqlTypeError) and "'mg/dLL'" in error.message


def test_evaluation_error_names_the_define_and_position():
    library = compile_library(HEADER + "define \"Mixed\": 2.5 'mmol/L' > 10 'mg/dL'", filename="t.cql", model=MODEL)
    with pytest.raises(CqlEvaluationError) as info:
        library.evaluate(EmptyProvider(), now=NOW)
    error = info.value
    assert error.define == "Mixed"
    assert (error.line, error.column) == (4, 17)
    assert str(error).startswith('t.cql:4:17: evaluation error: in define "Mixed": cannot compare')


def test_unknown_value_set_url_is_a_name_error_at_its_declaration():
    with pytest.raises(CqlCompilationError) as info:
        compile_library("library T version '1'\nvalueset \"X\": 'https://example.org/none'\ncontext Patient\n"
                        "define \"A\": [Observation: \"X\"]", model=MODEL, valuesets={})
    (error,) = info.value.errors
    assert isinstance(error, CqlNameError) and (error.line, error.column) == (2, 1)


def test_check_library_on_a_clean_file_returns_no_errors(tmp_path):
    path = tmp_path / "ok.cql"
    path.write_text(HEADER + 'define "A": 1\n', encoding="utf-8")
    assert check_library(path, model=MODEL) == []


def test_check_paths_reports_file_line_col_for_each_broken_library(tmp_path):
    (tmp_path / "a.cql").write_text(HEADER + 'define "A": 1\n', encoding="utf-8")
    (tmp_path / "b.cql").write_text(HEADER + 'define "A": 1\ndefine "B": "A" + Tody()\n', encoding="utf-8")
    errors = check_paths([tmp_path], MODEL)
    assert [e.location for e in errors] == [f"{tmp_path / 'b.cql'}:5:19"]
    assert "did you mean 'Today'?" in render_errors(errors)


def test_check_paths_with_no_library_files_is_an_error(tmp_path):
    (errors,) = [check_paths([tmp_path], MODEL)]
    assert len(errors) == 1 and "no .cql library files" in errors[0].message


@pytest.mark.skipif(not SHIPPED_LIBRARY.exists(), reason="the shipped rule library is not present")
def test_rules_check_on_a_deliberately_broken_copy_of_the_shipped_library(tmp_path):
    broken = tmp_path / "Broken.cql"
    shutil.copy(SHIPPED_LIBRARY, broken)
    lines = broken.read_text(encoding="utf-8").splitlines()
    assert check_library(broken, model=MODEL, valueset_dir=SHIPPED_VALUESETS) == [], "the shipped library must be clean"
    target = next(i for i, line in enumerate(lines) if line.startswith("define ") and ":" in line)
    column = lines[target].index(":") + 3
    lines[target] = lines[target][: column - 1] + "Frist({1}) + " + lines[target][column - 1:]
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors = check_library(broken, model=MODEL, valueset_dir=SHIPPED_VALUESETS)
    assert errors, "the broken copy must not check clean"
    assert errors[0].location == f"{broken}:{target + 1}:{column}"
    assert "Frist" in errors[0].message and "did you mean 'First'?" in errors[0].message


def test_a_define_may_not_reuse_a_parameter_name():
    with pytest.raises(CqlCompilationError) as info:
        compile_library("library T version '1'\nparameter \"Since\" default 1\ncontext Patient\n"
                        "define \"Since\": 2", filename="t.cql", model=MODEL)
    assert [(e.kind, e.line) for e in info.value.errors][0] == ("name", 4)


def test_a_missing_operand_is_reported_at_the_next_define():
    (error,) = compile_errors('define "A": 1 +\ndefine "B": 2')
    assert isinstance(error, CqlSyntaxError)
    assert (error.line, error.column) == (5, 1)
    assert error.message.startswith("unexpected 'define'; expected")


def test_one_mistake_is_reported_once_not_as_a_cascade():
    errors = compile_errors("define \"A\": Frist({1}) + 1 > 2 and Upper(Frist({'a'})) = 'A'")
    assert [(e.kind, e.column) for e in errors] == [("name", 13), ("name", 42)]
