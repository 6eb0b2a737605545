"""Generated XHTML narratives (`Resource.text`): what an EHR that renders narratives shows a person.

Each output resource shows its content as a small table. Every text is escaped with `html.escape`
(a condition name or a unit sent by the caller may hold markup), and only the basic formatting
elements R4 allows in a narrative are written (txt-1: no script, no form, no event attribute;
txt-2: some text). `narrative_problems` checks a narrative against those rules, so a defect in a
builder is caught before it is handed out.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ElementTree
from functools import lru_cache
from typing import Any, Iterable, Sequence

from ..assessment_model import Citation

XHTML_NAMESPACE = "http://www.w3.org/1999/xhtml"

# The XHTML elements an R4 narrative may hold: the basic HTML 4.0 formatting elements, links and images.
NARRATIVE_ELEMENTS = frozenset(
    "a abbr acronym b big blockquote br caption cite code col colgroup dd dfn div dl dt em h1 h2 h3 h4 h5 h6 hr "
    "i img li ol p pre q samp small span strong sub sup table tbody td tfoot th thead tr tt ul var".split())


# Characters XML 1.0 does not allow (control characters, lone surrogates, U+FFFE and U+FFFF): a
# narrative holding one would not parse, so each becomes U+FFFD, the replacement character.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def escaped(text: Any) -> str:
    """Text safe inside an element or an attribute value: markup escaped, characters XML cannot
    hold replaced (a caller's text may carry either)."""
    if text.__class__ is str and len(text) <= _REMEMBERED_LENGTH:
        return _escaped_text(text)
    return _escape(text)


def _escape(text: Any) -> str:
    return html.escape(_NOT_XML.sub("\ufffd", "" if text is None else str(text)), quote=True)


# Narratives repeat their labels, headings and the library's texts for every patient: a text up to this
# long is escaped once and remembered (the escape depends on the text alone).
_REMEMBERED_LENGTH = 2000
_escaped_text = lru_cache(maxsize=4096)(_escape)


def paragraph(text: str) -> str:
    """One paragraph of plain text."""
    return f"<p>{escaped(text)}</p>"


def items(texts: Iterable[str]) -> str:
    """A bulleted list; nothing when there is no text."""
    lines = "".join(f"<li>{escaped(text)}</li>" for text in texts if text)
    return f"<ul>{lines}</ul>" if lines else ""


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table with a header row, then one row per item."""
    head = "".join(f"<th>{escaped(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{escaped(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def field_table(rows: Iterable[tuple[str, str | Sequence[str]]]) -> str:
    """A two-column table of labelled values (a label cell, then its value; several values one per
    line), rows without a value left out."""
    body = ""
    for label, value in rows:
        lines = [value] if isinstance(value, str) else list(value)
        if any(lines):
            cell = "<br/>".join(escaped(line) for line in lines if line)
            body += f"<tr><th>{escaped(label)}</th><td>{cell}</td></tr>"
    return f"<table><tbody>{body}</tbody></table>"


def sources_in_brief(citations: Iterable[Citation]) -> list[str]:
    """One line per publication with the sections cited, each once; sections are separated by
    semicolons, since a section name may hold a comma: 'StatPearls "Calcinosis Cutis" (Le C,
    Bedocs PM, 2019): Pathophysiology, Metastatic Calcification; Evaluation'."""
    sections: dict[str, list[str]] = {}
    for citation in citations:
        named = sections.setdefault(citation.label or citation.reference, [])
        if citation.section and citation.section not in named:
            named.append(citation.section)
    return [f"{label}: {'; '.join(named)}" if named else label for label, named in sections.items()]


def narrative(*blocks: str) -> dict[str, str]:
    """Resource.text from blocks built with the helpers above (each already escaped)."""
    return {"status": "generated", "div": f'<div xmlns="{XHTML_NAMESPACE}">{"".join(blocks)}</div>'}


def narrative_problems(text: Any) -> list[str]:
    """Why `text` (a Resource.text) is not a well-formed R4 narrative; [] when it is."""
    if not isinstance(text, dict) or not isinstance(text.get("div"), str):
        return ["the narrative has no div"]
    try:
        root = ElementTree.fromstring(text["div"])
    except (ElementTree.ParseError, ValueError) as error:  # UnicodeError is a ValueError
        return [f"the narrative is not well-formed XHTML: {error}"]
    problems = [] if root.tag == f"{{{XHTML_NAMESPACE}}}div" else [f"the narrative's root is {root.tag}, not an XHTML div"]
    for element in root.iter():
        namespace, _, name = element.tag.rpartition("}")
        if namespace != "{" + XHTML_NAMESPACE or name not in NARRATIVE_ELEMENTS:
            problems.append(f"element {element.tag} is not allowed in a narrative")
        problems += [f"attribute {attribute} is not allowed in a narrative" for attribute in element.attrib
                     if attribute.lower().startswith("on")]
    if not "".join(root.itertext()).strip():
        problems.append("the narrative has no text")
    return problems
