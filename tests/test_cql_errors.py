"""Error reporting: positions, carets, suggestions, and `rules check` on a broken library."""

from __future__ import annotations

import shutil

import pytest

from service.cql_like import (CqlCompilationError, CqlEvaluationError, CqlNameError, CqlSyntaxError, CqlTypeError,
                              check_library, compile_library)
from service.cql_like.tooling import check_paths, render_errors

from cqlcases import HEADER, MODEL, NOW, SHIPPED_LIBRARY, SHIPPED_VALUESETS, EmptyProvider


def compile_errors(body: str) -> list:
    with pytest.raises(CqlCompilationError) as info:
        compile_library(HEADER + body, filename="rules/t.cql", model=MODEL)
    return info.value.errors


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


# ---- load-time checks and messages found in review ------------------------------------------

def test_a_bad_escape_is_a_syntax_error_at_the_backslash():
    (error,) = compile_errors("define \"A\": 'ok \\q'")
    assert isinstance(error, CqlSyntaxError)
    assert (error.line, error.column) == (4, 17)
    assert "unknown escape \\q" in error.message
    assert "define \"A\": 'ok \\q'" in str(error)


def test_a_short_unicode_escape_is_a_syntax_error():
    (error,) = compile_errors("define \"A\": '\\u12'")
    assert isinstance(error, CqlSyntaxError)
    assert "exactly four hex digits" in error.message
    assert error.column == 14


def test_a_latin1_file_is_reported_as_not_utf8_with_its_line(tmp_path):
    path = tmp_path / "latin1.cql"
    path.write_bytes((HEADER + "define \"A\": 'caf\xe9'\n").encode("latin-1"))
    (error,) = check_library(path, model=MODEL)
    assert isinstance(error, CqlSyntaxError)
    assert "not UTF-8" in error.message and "byte offset" in error.message
    assert error.filename == str(path) and error.line == 4 and error.column == 17


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.cql"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "define \"A\": 1\n").encode("utf-8"))
    assert check_library(path, model=MODEL) == []


def test_the_source_line_shown_counts_only_newlines():
    source = HEADER + "// note\u2028more\ndefine \"A\": 1\ndefine \"B\": \"Aa\" + 1\n"
    with pytest.raises(CqlCompilationError) as info:
        compile_library(source, filename="rules/t.cql", model=MODEL)
    (error,) = info.value.errors
    assert error.line == 6
    assert error.source_line == 'define "B": "Aa" + 1'


def test_a_recursive_function_is_a_name_error_naming_the_cycle():
    errors = compile_errors('define function F(x Integer) returns Integer: G(x)\n'
                            'define function G(x Integer) returns Integer: F(x)\n'
                            'define "A": F(1)')
    assert any(isinstance(e, CqlNameError) and "F -> G -> F" in e.message for e in errors)


def test_an_ambiguous_call_names_both_overloads():
    (error,) = compile_errors("define function F(x Decimal, y Integer) returns Integer: 1\n"
                              "define function F(x Integer, y Decimal) returns Integer: 2\n"
                              "define \"A\": F(1, 1)")
    assert isinstance(error, CqlTypeError)
    assert "ambiguous" in error.message and "F(Decimal, Integer)" in error.message


def test_an_integer_default_for_a_quantity_parameter_is_a_type_error():
    with pytest.raises(CqlCompilationError) as info:
        compile_library("library T version '1'\nparameter \"Lookback\" Quantity default 365\ncontext Patient\n"
                        "define \"A\": Today() - \"Lookback\"", filename="rules/t.cql", model=MODEL)
    (error,) = info.value.errors
    assert isinstance(error, CqlTypeError) and (error.line, error.column) == (2, 39)


def test_an_expression_nested_beyond_the_limit_is_a_syntax_error_with_position():
    from service.cql_like.ast import MAX_NESTING
    depth = MAX_NESTING + 10
    (error,) = compile_errors('define "A": ' + "- " * depth + "1")
    assert isinstance(error, CqlSyntaxError)
    assert "nested too deeply" in error.message
    assert error.line == 4 and error.column is not None


@pytest.mark.parametrize("expression, words", [
    ("DateTime(2026, 1, 1, 0, 0, 0, 2000)", "millisecond 2000 is not between 0 and 999"),
    ("Round(1.2345, 100000)", "Round precision 100000 is not between 0 and 8"),
    ("Matches('" + "a" * 10_001 + "', 'a*')", "at most 10000 are matched"),
])
def test_evaluation_messages_speak_cql_not_python(expression, words):
    library = compile_library(HEADER + f'define "A": {expression}', filename="rules/t.cql", model=MODEL)
    with pytest.raises(CqlEvaluationError) as info:
        library.evaluate(EmptyProvider(), now=NOW)
    message = info.value.message
    assert words in message
    assert not any(name in message for name in ("microsecond", "Error", "InvalidOperation", "decimal."))


# --------------------------------------------------------------------------- structured fields

BROKEN_BODY = ('define "Calcium": 1\ndefine "B": "Calcum" + 1\ndefine "C": exists 5\ndefine "D": {1, 2}[\'a\']\n'
               'define "E": [Observation] O where O.efective > Now()\ndefine "F": Count(5)\n'
               'define "G": Frobnicate(1)\n')

# `rules check` output on BROKEN_BODY, as it was before the errors carried structured fields:
# the fields add information without changing a character of what is printed.
BROKEN_RENDERED = """\
{file}:5:13: name error: unknown name "Calcum" (did you mean 'Calcium'?)
    define "B": "Calcum" + 1
                ^
{file}:6:20: type error: exists needs a List, got Integer
    define "C": exists 5
                       ^
{file}:7:20: type error: an index must be Integer, got String
    define "D": {{1, 2}}['a']
                       ^
{file}:8:37: type error: Observation has no element 'efective' (did you mean 'effective'?)
    define "E": [Observation] O where O.efective > Now()
                                        ^
{file}:9:13: type error: Count argument 1 must be a List, got Integer (signature: Count(List<T>) -> Integer)
    define "F": Count(5)
                ^
{file}:10:13: name error: unknown function Frobnicate (did you mean 'Truncate'?)
    define "G": Frobnicate(1)
                ^"""


def test_a_misspelt_define_carries_the_name_it_meant_as_a_field():
    (error,) = compile_errors('define "Calcium": 1\ndefine "B": "Calcum" + 1')
    assert isinstance(error, CqlNameError)
    assert error.suggestion == "Calcium"
    assert error.message == 'unknown name "Calcum" (did you mean \'Calcium\'?)'
    assert error.position == ("rules/t.cql", 5, 13)
    assert (error.position.file, error.position.line, error.position.column) == ("rules/t.cql", 5, 13)


def test_a_name_nothing_resembles_has_no_suggestion():
    (error,) = compile_errors('define "B": "Zzzzqx" + 1')
    assert isinstance(error, CqlNameError)
    assert error.suggestion is None and "did you mean" not in error.message


def test_a_type_error_carries_the_expected_and_the_found_type():
    (error,) = compile_errors("define \"D\": {1, 2}['a']")
    assert isinstance(error, CqlTypeError)
    assert (error.expected, error.found) == ("Integer", "String")
    (error,) = compile_errors('define "C": exists 5')
    assert (error.expected, error.found) == ("List", "Integer")


def test_a_function_argument_of_the_wrong_type_carries_expected_and_found():
    (error,) = compile_errors('define "F": Count(5)')
    assert isinstance(error, CqlTypeError)
    assert (error.expected, error.found) == ("List", "Integer")


def test_a_parameter_default_of_the_wrong_type_carries_expected_and_found():
    with pytest.raises(CqlCompilationError) as info:
        compile_library("library T version '1'\nparameter \"Lookback\" Quantity default 365\ncontext Patient\n"
                        "define \"A\": Today() - \"Lookback\"", filename="rules/t.cql", model=MODEL)
    (error,) = info.value.errors
    assert isinstance(error, CqlTypeError)
    assert (error.expected, error.found) == ("Quantity", "Integer")


def test_an_unknown_field_is_a_type_error_with_a_suggestion():
    (error,) = compile_errors('define "E": [Observation] O where O.efective > Now()')
    assert error.suggestion == "effective"


def test_a_misspelt_define_asked_for_by_name_carries_the_suggestion():
    library = compile_library(HEADER + 'define "Calcium": 1', filename="t.cql", model=MODEL)
    with pytest.raises(CqlNameError) as info:
        library.evaluate_define("Calcum", EmptyProvider(), now=NOW)
    assert info.value.suggestion == "Calcium"
    assert "(did you mean 'Calcium'?)" in info.value.message


def test_rules_check_output_is_unchanged_by_the_structured_fields(tmp_path):
    path = tmp_path / "b.cql"
    path.write_text(HEADER + BROKEN_BODY, encoding="utf-8")
    errors = check_paths([tmp_path], MODEL)
    assert render_errors(errors) == BROKEN_RENDERED.format(file=path)
    assert [type(e) for e in errors] == [CqlNameError, CqlTypeError, CqlTypeError, CqlTypeError, CqlTypeError,
                                         CqlNameError]
    assert [e.suggestion for e in errors] == ["Calcium", None, None, "effective", None, "Truncate"]


def test_the_rules_check_command_prints_the_same_text(tmp_path, capsys):
    from service.cli import main

    path = tmp_path / "b.cql"
    path.write_text(HEADER + BROKEN_BODY, encoding="utf-8")
    assert main(["rules", "check", str(path)]) == 1
    assert capsys.readouterr().err == BROKEN_RENDERED.format(file=path) + "\n6 error(s)\n"


def test_every_error_class_of_the_engine_lives_in_one_module_under_cql_error():
    import importlib
    import inspect
    import pkgutil

    import service.cql_like as package
    from service.cql_like.errors import CqlError

    outside = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith(package.__name__):
                if cls.__module__ != "service.cql_like.errors" or not issubclass(cls, CqlError):
                    outside.append(f"{cls.__module__}.{cls.__name__}")
    assert outside == []
