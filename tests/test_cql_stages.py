"""The compiler's stages stay apart: the checker finds every error without building a closure, and
code generation takes only what the checker produced from a library without errors."""

from __future__ import annotations

import pytest

from service.cql_like import CqlNameError, CqlTypeError, check_library, compile_library
from service.cql_like import ast, checker, codegen
from service.cql_like.parser import parse

from cqlcases import HEADER, MODEL, NOW, FactsProvider
from test_cql_imports import import_graph

BROKEN = HEADER + ('define "Sum": 1 + \'a\'\n'
                   'define "Fine": 2 * 3\n'
                   'define "Typo": Fien + 1\n')


@pytest.fixture
def no_codegen(monkeypatch):
    """Code generation that fails the test if anything reaches it."""
    calls = []

    def refuse(checked):
        calls.append(checked)
        raise AssertionError("code generation ran")
    monkeypatch.setattr(codegen, "generate", refuse)
    return calls


def test_check_library_reports_errors_with_positions_and_never_generates_code(tmp_path, no_codegen):
    path = tmp_path / "broken.cql"
    path.write_text(BROKEN, encoding="utf-8")
    errors = check_library(path, model=MODEL)
    assert [(type(e), e.filename, e.line, e.column) for e in errors] == [
        (CqlTypeError, str(path), 4, 15),
        (CqlNameError, str(path), 6, 16),
    ]
    assert errors[0].expected is None and "'+' cannot be applied to Integer and String" in str(errors[0])
    assert errors[1].suggestion == "Fine"
    assert no_codegen == []


def test_the_checker_types_every_expression_without_building_closures(no_codegen):
    source = HEADER + 'define "N": 1 + 2.5\ndefine "L": {1, 2}\ndefine "B": "N" > 3\n'
    tree = parse(source, "t.cql")
    result = checker.check(tree, source=source, filename="t.cql", model=MODEL, valuesets={})
    assert result.errors == [] and result.library is not None
    checked = result.library
    assert {name: str(d.type) for name, d in checked.defines.items()} == {
        "N": "Decimal", "L": "List<Integer>", "B": "Boolean"}
    expression = checked.defines["N"].node.expression
    assert isinstance(expression, ast.Binary)
    assert [str(checked.type_of(n)) for n in (expression.left, expression.right)] == ["Integer", "Decimal"]
    reference = checked.defines["B"].node.expression.left
    assert checked.target_of(reference) == checker.NameTarget("define", "N")
    # Nothing the checker produced is callable: it holds types and resolutions, not code.
    assert not any(callable(value) for value in checked.types.values())
    assert no_codegen == []


def test_a_library_with_errors_yields_no_checked_library():
    tree = parse(BROKEN, "t.cql")
    result = checker.check(tree, source=BROKEN, filename="t.cql", model=MODEL, valuesets={})
    assert result.library is None
    assert [(e.line, e.column) for e in result.errors] == [(4, 15), (6, 16)]


def test_code_generation_takes_only_a_checked_library():
    tree = parse(HEADER + 'define "A": 1\n', "t.cql")
    with pytest.raises(TypeError, match="CheckedLibrary"):
        codegen.generate(tree)


def test_code_generation_receives_what_the_checker_produced(monkeypatch):
    received = []
    real_generate = codegen.generate

    def spy(checked):
        received.append(checked)
        return real_generate(checked)
    monkeypatch.setattr(codegen, "generate", spy)
    library = compile_library(HEADER + 'define "A": Coalesce(null, 2) + 0.5\n', filename="t.cql", model=MODEL)
    assert [type(c) for c in received] == [checker.CheckedLibrary]
    assert library.evaluate(FactsProvider({}), now=NOW)["A"].value == pytest.approx(2.5)


def test_the_checker_does_not_depend_on_code_generation_or_evaluation():
    graph = import_graph()
    assert not {"codegen", "runtime", "library", "compiler"} & graph["checker"]
    assert "checker" in graph["codegen"] and "runtime" in graph["codegen"]
    assert {"checker", "codegen"} <= graph["compiler"]
