"""The rule documentation (Markdown) as a self-contained web page, for a clinician following a card's link.

A browser shows `text/markdown` as raw text, so the same Markdown is rendered with markdown-it-py
(CommonMark with tables; raw HTML in the Markdown escaped, never passed through) into one HTML
document with an inline stylesheet and nothing loaded from elsewhere. Every heading gets an `id`
made from its text (GitHub's slug rules, by mdit-py-plugins' anchors plugin), so a card can link
to a section such as `/docs/rules#metastatic` and the link stays valid while the heading does.
"""

from __future__ import annotations

from functools import lru_cache
from html import escape

from markdown_it import MarkdownIt
from mdit_py_plugins.anchors import anchors_plugin

DEFAULT_TITLE = "Calcinosis rule documentation"

# Sent with the page: no script, no external resource, only the inline stylesheet.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"

_STYLE = """
body { margin: 0; padding: 1.5rem 1rem 3rem; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: #1f2328; background: #fff; }
main { max-width: 72rem; margin: 0 auto; }
h1, h2, h3, h4 { line-height: 1.25; margin: 1.6em 0 0.5em; }
h1 { font-size: 1.8rem; margin-top: 0; }
h2 { font-size: 1.4rem; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; }
p, ul, ol { max-width: 48rem; }
a { color: #0b57d0; }
a.header-anchor { margin-left: 0.3em; color: #8c959f; text-decoration: none; font-weight: normal; }
code { font: 0.9em/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; background: #f2f4f6;
       padding: 0.1em 0.3em; border-radius: 3px; }
pre { background: #f2f4f6; padding: 0.8em 1em; overflow-x: auto; max-width: 60rem; }
pre code { padding: 0; background: none; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92rem; }
th, td { border: 1px solid #b8c0c8; padding: 0.35em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
tbody tr:nth-child(even) { background: #f8f9fa; }
"""


def _renderer() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    anchors_plugin(md, min_level=1, max_level=6, permalink=True, permalinkSymbol="¶")
    return md


def _title(md: MarkdownIt, markdown_text: str) -> str:
    """The first top-level heading's text, or a fixed title for a document without one."""
    tokens = md.parse(markdown_text)
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h1":
            children = tokens[index + 1].children or []
            text = "".join(child.content for child in children if child.type in ("text", "code_inline"))
            if text.strip():
                return " ".join(text.split())
    return DEFAULT_TITLE


@lru_cache(maxsize=4)
def render_page(markdown_text: str) -> str:
    """A complete UTF-8 HTML document showing `markdown_text`, with an anchor on every heading.

    Cached by text: the documentation changes with a release, not between requests.
    """
    md = _renderer()
    body = md.render(markdown_text)
    return (
        "<!doctype html>\n"
        '<html lang="en">\n'
        "<head>\n"
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(_title(md, markdown_text))}</title>\n"
        f"<style>{_STYLE}</style>\n"
        "</head>\n"
        "<body>\n"
        "<main>\n"
        f"{body}"
        "</main>\n"
        "</body>\n"
        "</html>\n"
    )
