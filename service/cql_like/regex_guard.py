"""Guard for `Matches` and `ReplaceMatches`: Python's backtracking regex engine can take exponential time.

Two limits keep one patient's request from hanging the service:
* patterns with a nested variable quantifier inside an unbounded one (`(a+)+`, `(a*)*`, `(a{1,3})+`)
  are rejected: at load for a literal pattern (type error), at evaluation otherwise;
* the text matched may be at most MAX_TEXT_LENGTH characters (longer is an evaluation error).
"""

from __future__ import annotations

import re
from functools import lru_cache
import re._constants as sre_constants  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]

from .errors import RegexRejected

MAX_TEXT_LENGTH = 10_000

_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, getattr(sre_constants, "POSSESSIVE_REPEAT", None)}


@lru_cache(maxsize=1024)
def pattern_problem(pattern: str) -> str | None:
    """Why the pattern cannot be used (invalid, or nested quantifiers), or None if it is fine.

    Cached: a library applies the same few patterns to every record of every patient.
    """
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        return f"invalid regular expression: {exc}"
    try:
        nested = _has_nested_quantifier(parsed, inside_unbounded=False)
    except RecursionError:
        return "the pattern is nested too deeply"
    if nested:
        return "nested quantifiers (like (a+)+) can take exponential time; rewrite without them"
    return None


def _children(av):
    """Sub-patterns inside an opcode's argument (groups, branches, lookarounds, repeats)."""
    stack = [av]
    while stack:
        item = stack.pop()
        if isinstance(item, sre_parse.SubPattern):
            yield item
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _has_nested_quantifier(pattern, inside_unbounded: bool) -> bool:
    for op, av in pattern:
        if op in _REPEATS:
            low, high, body = av
            variable = low != high
            if inside_unbounded and variable:
                return True
            unbounded = high == sre_constants.MAXREPEAT
            if _has_nested_quantifier(body, inside_unbounded or unbounded):
                return True
            continue
        for sub in _children(av):
            if _has_nested_quantifier(sub, inside_unbounded):
                return True
    return False


def matches(text: str, pattern: str) -> bool:
    """CQL Matches: the whole text matches the pattern; raises RegexRejected for what the guard refuses."""
    problem = pattern_problem(pattern)
    if problem is not None:
        raise RegexRejected(f"Matches pattern {pattern!r}: {problem}")
    if len(text) > MAX_TEXT_LENGTH:
        raise RegexRejected(f"Matches text is {len(text)} characters; at most {MAX_TEXT_LENGTH} are matched")
    return re.fullmatch(pattern, text, flags=re.DOTALL) is not None


_GROUP_REFERENCE = re.compile(r"\$(\d+)")


def replace_matches(text: str, pattern: str, substitution: str) -> str:
    """CQL ReplaceMatches: every match of the pattern replaced by the substitution, in which `$1` names the
    first group (as in CQL); raises RegexRejected for what the guard refuses, like `matches`."""
    problem = pattern_problem(pattern)
    if problem is not None:
        raise RegexRejected(f"ReplaceMatches pattern {pattern!r}: {problem}")
    if len(text) > MAX_TEXT_LENGTH:
        raise RegexRejected(f"ReplaceMatches text is {len(text)} characters; at most {MAX_TEXT_LENGTH} are searched")
    template = _GROUP_REFERENCE.sub(lambda m: "\\g<" + m.group(1) + ">", substitution.replace("\\", "\\\\"))
    try:
        return re.sub(pattern, template, text, flags=re.DOTALL)
    except (re.error, IndexError) as exc:
        raise RegexRejected(f"ReplaceMatches substitution {substitution!r}: {exc}") from None
