"""Three-valued logic has one implementation (operators.py); the code generator (codegen.py) adds only
the evaluation order: the right side of `and` after a false, and of `or` after a true, is not
evaluated, so it can neither fail nor leave evidence."""

from __future__ import annotations

import ast
import itertools

import pytest

from service.cql_like import CqlEvaluationError, compile_library
from service.cql_like import operators as ops

from cqlcases import FAILS, HEADER, MODEL, NOW, ROOT, FactsProvider

LITERAL = {True: "true", False: "false", None: "null"}


def evaluate(body: str, provider=None):
    library = compile_library(HEADER + body, filename="t.cql", model=MODEL)
    return library.evaluate(provider or FactsProvider({}), now=NOW)


@pytest.mark.parametrize("op, impl", [("and", ops.logical_and), ("or", ops.logical_or),
                                      ("xor", ops.logical_xor), ("implies", ops.logical_implies)])
def test_compiled_logic_follows_the_operators_truth_tables(op, impl):
    pairs = list(itertools.product((True, False, None), repeat=2))
    body = "".join(f'define "D{i}": {LITERAL[a]} {op} {LITERAL[b]}\n' for i, (a, b) in enumerate(pairs))
    result = evaluate(body)
    assert [result[f"D{i}"].value for i in range(len(pairs))] == [impl(a, b) for a, b in pairs]


def test_the_right_side_of_and_after_false_and_of_or_after_true_is_not_evaluated():
    result = evaluate(f'define "A": false and {FAILS}\ndefine "O": true or {FAILS}\n')
    assert (result["A"].value, result["O"].value) == (False, True)


@pytest.mark.parametrize("expression", [f"true and {FAILS}", f"null and {FAILS}",
                                        f"false or {FAILS}", f"null or {FAILS}",
                                        f"{FAILS} and false", f"false xor {FAILS}", f"false implies {FAILS}"])
def test_a_side_that_does_not_decide_lets_the_other_be_evaluated(expression):
    with pytest.raises(CqlEvaluationError, match="cannot compare"):
        evaluate(f'define "X": {expression}\n')


def test_a_right_side_not_evaluated_leaves_no_evidence():
    provider = FactsProvider({"patient": {"source": "Patient/p1"},
                              "Condition": [{"source": "Condition/1", "code": {"concept": [["http://snomed.info/sct", "1"]]}}]})
    result = evaluate('define "Skipped": false and exists [Condition]\n'
                      'define "Read": true and exists [Condition]\n'
                      'define "Null": null and exists [Condition]\n', provider)
    assert result["Skipped"].value is False and result["Skipped"].evidence == ()
    assert result["Read"].value is True and result["Read"].evidence == ("Condition/1",)
    assert result["Null"].value is None and result["Null"].evidence == ("Condition/1",)


def test_the_code_generator_combines_and_and_or_with_the_operators_functions():
    tree = ast.parse((ROOT / "service" / "cql_like" / "codegen.py").read_text(encoding="utf-8"))
    binary = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_Binary")
    used = {n.attr for n in ast.walk(binary) if isinstance(n, ast.Attribute)}
    assert {"logical_and", "logical_or"} <= used
    # No truth table of its own: no `None if a is None or b is None else ...` left in the code generator.
    conditionals = [n for n in ast.walk(binary) if isinstance(n, ast.IfExp)
                    and isinstance(n.body, ast.Constant) and n.body.value is None]
    assert conditionals == []
