"""Narrative texts are escaped once per distinct text: the remembered escape is the plain one."""

from __future__ import annotations

import html
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from service.fhir_outputs.narrative import _REMEMBERED_LENGTH, escaped

_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _plain(text: object) -> str:
    """The definition: characters XML cannot hold replaced by U+FFFD, then markup escaped, quotes included."""
    return html.escape(_NOT_XML.sub("\ufffd", "" if text is None else str(text)), quote=True)


class _Text(str):
    def __str__(self) -> str:
        return "shown <differently>"


TEXTS = st.one_of(st.text(max_size=40), st.text(alphabet="<>&\"'\x00\x0b\ud800\ufffe a", max_size=12),
                  st.text(alphabet="a<", min_size=_REMEMBERED_LENGTH - 1, max_size=_REMEMBERED_LENGTH + 2),
                  st.none(), st.integers(), st.builds(_Text, st.sampled_from(["", "x<"])))


@settings(max_examples=400, deadline=None)
@given(text=TEXTS)
def test_the_escape_is_the_plain_one_the_first_time_and_after(text):
    assert escaped(text) == _plain(text)
    assert escaped(text) == _plain(text)
