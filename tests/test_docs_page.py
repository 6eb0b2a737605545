"""The rule documentation as a clinician opens it from a card: a web page in a browser, Markdown for scripts.

`GET /docs/rules` serves `service/knowledge/README.md`. A browser (whose Accept prefers text/html) gets
the same text rendered as a self-contained HTML page with an anchor on every heading, so a card can
link to `/docs/rules#metastatic`; a script, `curl` (`*/*`) or a client sending no Accept gets the
Markdown as before.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from service.config import PACKAGE_DIR

README = PACKAGE_DIR / "knowledge" / "README.md"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
TYPES = ("calciphylaxis", "metastatic", "iatrogenic", "dystrophic", "idiopathic")


class _Page(HTMLParser):
    """What a reader sees of the page: its text, the ids of its headings, the tags it holds."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.heading_ids: dict[str, str] = {}
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.title = ""
        self.cells: list[str] = []
        self._heading: str | None = None
        self._heading_text: list[str] = []
        self._in_title = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = dict(attrs).get("id") or ""
            self._heading_text = []
        if tag == "title":
            self._in_title = True
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.heading_ids[" ".join("".join(self._heading_text).replace("¶", "").split())] = self._heading
            self._heading = None
        if tag == "title":
            self._in_title = False
        if tag == "td" and self._cell is not None:
            self.cells.append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._heading is not None:
            self._heading_text.append(data)
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self._cell.append(data)


def _page(body: str) -> _Page:
    page = _Page()
    page.feed(body)
    page.close()
    return page


def _markdown_headings() -> list[str]:
    """Every heading of the README outside fenced code, as its text."""
    headings, fenced = [], False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            headings.append(line.lstrip("#").strip())
    return headings


def _rules_table_citations() -> list[str]:
    """The 'rests on' cells of the rules table, as plain text (Markdown emphasis and code marks dropped)."""
    text = README.read_text(encoding="utf-8")
    table = text.split("## The rules and their citations", 1)[1].split("\n\n", 2)[1]
    cells = []
    for row in table.splitlines()[2:]:
        last = row.strip().strip("|").split(" | ")[-1].strip()
        if last and last != "same":
            cells.append(" ".join(last.replace("**", "").replace("`", "").split()))
    return cells


@pytest.fixture
def html_response(client):
    return client.get("/docs/rules", headers={"Accept": BROWSER_ACCEPT})


def test_a_browser_gets_a_web_page(html_response):
    assert html_response.status_code == 200
    assert html_response.mimetype == "text/html"
    assert html_response.headers["Content-Type"] == "text/html; charset=utf-8"
    body = html_response.get_data(as_text=True)
    assert body.lower().startswith("<!doctype html>")
    assert '<meta charset="utf-8">' in body
    assert _page(body).title == "The calcinosis cutis rule library"
    assert "Accept" in html_response.headers.get("Vary", "")


def test_accept_text_html_alone_gets_the_page(client):
    response = client.get("/docs/rules", headers={"Accept": "text/html"})
    assert response.mimetype == "text/html"


@pytest.mark.parametrize("accept", [None, "*/*", "text/markdown", "text/markdown, text/html",
                                    "text/html;q=0.5, text/markdown", "application/json"])
def test_scripts_curl_and_markdown_clients_get_the_markdown_as_before(client, accept):
    headers = {"Accept": accept} if accept is not None else {}
    response = client.get("/docs/rules", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "text/markdown"
    assert response.get_data(as_text=True) == README.read_text(encoding="utf-8")
    assert "Accept" in response.headers.get("Vary", "")


def test_each_type_has_an_anchor_a_card_can_link_to(html_response):
    page = _page(html_response.get_data(as_text=True))
    ids = set(page.heading_ids.values())
    for type_code in TYPES:
        assert type_code in ids, type_code
    assert page.heading_ids["The types"] == "the-types"
    assert page.heading_ids["Metastatic"] == "metastatic"


def test_every_heading_has_a_stable_id_made_from_its_text(html_response):
    page = _page(html_response.get_data(as_text=True))
    assert page.heading_ids["The rules and their citations"] == "the-rules-and-their-citations"
    assert page.heading_ids["Data not read is not data absent"] == "data-not-read-is-not-data-absent"
    assert len(page.heading_ids) == len(_markdown_headings())
    assert all(page.heading_ids.values())
    assert len(set(page.heading_ids.values())) == len(page.heading_ids)


def test_the_type_sections_point_at_the_rules_table(html_response):
    body = html_response.get_data(as_text=True)
    types_section = body[body.index('id="the-types"'):body.index('id="the-rules-and-their-citations"')]
    assert types_section.count('href="#the-rules-and-their-citations"') >= len(TYPES)


def test_the_page_runs_no_script_and_loads_nothing_from_elsewhere(html_response):
    body = html_response.get_data(as_text=True)
    page = _page(body)
    assert "script" not in page.tags and "<script" not in body.lower()
    assert "link" not in page.tags and "img" not in page.tags and "iframe" not in page.tags
    assert not any(name.startswith("on") for name, _ in page.attributes)
    assert "http://" not in body.split("<body", 1)[0] and "https://" not in body.split("<body", 1)[0]
    assert "<style>" in body and "border" in body  # a small inline stylesheet, tables with borders
    assert html_response.headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    assert html_response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_holds_the_rule_tables_citations(html_response):
    page = _page(html_response.get_data(as_text=True))
    citations = _rules_table_citations()
    assert len(citations) >= 5
    for citation in citations:
        assert citation in page.cells, citation
    assert any("Pathophysiology, Metastatic Calcification" in cell for cell in page.cells)


def test_tables_are_rendered_as_tables_not_pipes(html_response):
    page = _page(html_response.get_data(as_text=True))
    assert "table" in page.tags and "th" in page.tags
    assert not any(line.lstrip().startswith("|---") for line in "".join(page.text).splitlines())


def test_a_head_request_answers_like_the_get_without_a_body(client):
    for accept in (BROWSER_ACCEPT, "text/markdown"):
        get = client.get("/docs/rules", headers={"Accept": accept})
        head = client.head("/docs/rules", headers={"Accept": accept})
        assert head.status_code == 200
        assert head.mimetype == get.mimetype
        assert head.get_data() == b""
        assert head.headers["Content-Length"] == get.headers["Content-Length"]


def test_markdown_html_is_shown_as_text_never_run():
    """The README is ours, but raw HTML in it is escaped all the same (rendered with html disabled)."""
    from service.web.docs_page import render_page

    page = render_page("# Title\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1))\n\n## A & B\n")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'href="javascript:' not in page
    assert '<h2 id="a--b"' in page


def test_a_document_without_a_heading_still_has_a_title():
    from service.web.docs_page import render_page

    assert "<title>Calcinosis rule documentation</title>" in render_page("Just text.\n")
