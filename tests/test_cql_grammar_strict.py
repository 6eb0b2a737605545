"""The grammar accepts no more than CQL 1.5's cql.g4.

cql.g4 puts `difference in <precision> between`, `[duration in] <precision> between` (and
`between`, the comparisons, `not`, `exists`) at the *expression* level: none is a term that
`+`, `*`, `.` or `from` can take without parentheses. Its reserved words (`difference`, `days`,
`between`, `in`, ...) are never identifiers, so an expression-level phrase cannot sneak in as a
name either. Every library in the repository must parse under these rules.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from service.cql_like.ast import DurationBetween, dump
from service.cql_like.errors import CqlSyntaxError
from service.cql_like.parser import parse

from cqlcases import ROOT, iter_cases


def _define(expression: str) -> str:
    return f'define "X": {expression}\n'


def _tracked_cql_files() -> list[Path]:
    """Every .cql file git knows of (falls back to a walk outside a git checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "*.cql"], cwd=ROOT, capture_output=True, text=True, check=True)
        files = [ROOT / line for line in out.stdout.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in ROOT.rglob("*.cql") if ".venv" not in p.parts]
    return sorted(files)


def test_difference_between_as_an_operand_of_plus_is_a_syntax_error_that_says_to_parenthesize():
    old_line = 'define "Components": year from Today() + difference in days between x and y + (date from Now()).day\n'
    with pytest.raises(CqlSyntaxError) as info:
        parse(old_line, "selectors.cql")
    err = info.value
    assert (err.line, err.column) == (1, 42)
    assert "unexpected 'difference'" in str(err)
    assert "`difference in days between ...` is an expression in CQL, not a term" in str(err)
    assert "put it in parentheses" in str(err)


def test_parenthesized_difference_between_is_a_term():
    tree = parse(_define("year from Today() + (difference in days between x and y)"))
    right = tree.statements[0].expression.right
    assert isinstance(right, DurationBetween) and right.difference


@pytest.mark.parametrize("phrase", ["days between x and y", "duration in days between x and y"])
def test_duration_between_is_an_expression_not_a_term(phrase: str):
    with pytest.raises(CqlSyntaxError) as info:
        parse(_define(f"1 + {phrase}"))
    assert "is an expression in CQL, not a term" in str(info.value)
    tree = parse(_define(f"1 + ({phrase})"))
    right = tree.statements[0].expression.right
    assert isinstance(right, DurationBetween) and not right.difference and right.precision == "days"


def test_duration_in_is_the_same_as_the_bare_precision():
    def shape(text: str) -> str:
        return re.sub(r" @\d+:\d+", "", dump(parse(_define(text))))

    assert shape("duration in months between x and y") == shape("months between x and y")


@pytest.mark.parametrize("word", ["difference", "duration", "days", "between", "distinct", "within", "exists", "when"])
def test_reserved_words_are_not_identifiers(word: str):
    with pytest.raises(CqlSyntaxError) as info:
        parse(_define(f"1 + {word}"))
    assert f"unexpected {word!r}" in str(info.value)
    parse(_define(f'1 + "{word}"'))  # quoted, any word is a name


def test_keyword_identifiers_stay_names():
    """cql.g4's keywordIdentifier (start, end, code, display, date, ...) may name members."""
    parse(_define("X.code = X.display and X.start < X.end and X.version = X.date"))


TRACKED = _tracked_cql_files()


def test_the_repository_has_libraries_to_check():
    names = {p.relative_to(ROOT).as_posix() for p in TRACKED}
    assert "service/knowledge/CalcinosisCutis.cql" in names
    assert {"tests/cql_golden/selectors.cql", "tests/cql_golden/precedence.cql"} <= names


@pytest.mark.parametrize("path", TRACKED, ids=[p.relative_to(ROOT).as_posix() for p in TRACKED])
def test_every_cql_file_in_the_repository_parses(path: Path):
    parse(path.read_text(encoding="utf-8"), path.name)


LIBRARY_CASES = [c for c in iter_cases() if "library" in c.raw and c.error != "syntax"]


def test_compliance_suite_has_library_cases():
    assert len(LIBRARY_CASES) >= 20


@pytest.mark.parametrize("case", LIBRARY_CASES, ids=[c.id for c in LIBRARY_CASES])
def test_every_compliance_library_parses(case):
    parse(case.source, case.id)


@pytest.mark.parametrize("expression, what", [
    ("1 + [Observation]", "'+' on"),
    ("[Observation] & 'x'", "'&' on"),
    ("2 * X O where true", "'*' on"),
    ("year from [Observation]", "'year from' on"),
    ("start of X O where true", "'start of' on"),
    ("-[Observation]", "'-' on"),
    ("x between [A] and 1", "'between' on"),
    ("days between [A] and x", "'between' on"),
])
def test_a_retrieve_or_query_is_not_a_term_operand(expression: str, what: str):
    """cql.g4 has #retrieveExpression and #queryExpression: term operators take them only in parentheses."""
    with pytest.raises(CqlSyntaxError) as info:
        parse(_define(expression))
    assert what in str(info.value) and "needs parentheses around it" in str(info.value)


@pytest.mark.parametrize("expression", [
    "1 + ([Observation])", "year from (X O where true)", "exists [Observation]", "not X O where true",
    "x in [Observation]", "distinct [Observation]", "Count([Observation]) + 1", "[A] union [B]",
])
def test_a_retrieve_or_query_stays_an_expression_operand(expression: str):
    if "union" in expression:
        with pytest.raises(CqlSyntaxError):  # not in this subset at all
            parse(_define(expression))
        return
    parse(_define(expression))
