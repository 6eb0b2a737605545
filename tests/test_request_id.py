"""X-Request-ID is echoed and logged only when it is a plain token; anything else is replaced by a new id.

A caller whose id held spaces could write what looked like further fields into every log line of
its request (`id=abc status=200 user=admin`); the id is now a token of letters, digits and
`._:-`, at most 64 characters, or the service's own.
"""

from __future__ import annotations

import logging
import re

import pytest

from service.web.app import request_id

NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize("supplied", ["abc-123", "6f1c2a5e-0000-4000-8000-000000000001", "a" * 64,
                                      "req_1.2:3", "0"])
def test_a_token_is_kept(client, supplied):
    response = client.get("/healthz", headers={"X-Request-ID": supplied})
    assert response.headers["X-Request-ID"] == supplied


@pytest.mark.parametrize("supplied", ["abc 200 id=forged", "a" * 65, "x\ty", "caf\u00e9", "a/b", "a=b", "'quoted'",
                                      "<script>", "\u200b"])
def test_anything_else_is_replaced_by_a_new_id(client, caplog, supplied):
    with caplog.at_level(logging.INFO, logger="calcinosis_cds"):
        response = client.get("/healthz", headers={"X-Request-ID": supplied.encode("utf-8").decode("latin-1")})
    assigned = response.headers["X-Request-ID"]
    assert NEW_ID.fullmatch(assigned)
    logged = [record.getMessage() for record in caplog.records if record.name == "calcinosis_cds"]
    assert any(f"id={assigned}" in line for line in logged)
    assert not any("forged" in line or "a" * 65 in line for line in logged)


def test_an_empty_or_missing_id_gets_a_new_one():
    assert NEW_ID.fullmatch(request_id(None))
    assert NEW_ID.fullmatch(request_id(""))
    assert NEW_ID.fullmatch(request_id("abc\n"))  # a trailing newline is no token either
