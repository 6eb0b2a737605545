"""`GET /openapi.json`: the OpenAPI 3.1 document of the whole HTTP surface.

The document is data (`openapi.json` beside this module), read once when the app is built; only
what depends on the running service is filled in here: its version and, when `PUBLIC_BASE_URL`
is set, the server URL clients use. A test checks that it names every route and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import orjson
from flask import Flask, Response

from ..version import __version__

DOCUMENT_FILE = Path(__file__).with_name("openapi.json")


def openapi_document(settings: Mapping[str, Any], path: Path = DOCUMENT_FILE) -> dict[str, Any]:
    """The document for a service with these settings."""
    document = orjson.loads(path.read_bytes())
    document["info"]["version"] = __version__
    public = settings.get("PUBLIC_BASE_URL")
    if public:
        document["servers"] = [{"url": str(public).rstrip("/")}]
    return document


def register_openapi(app: Flask, settings: Mapping[str, Any]) -> None:
    """Serve the document at /openapi.json, serialized once now (a broken file stops the app at start)."""
    body = orjson.dumps(openapi_document(settings))

    @app.get("/openapi.json")
    def openapi() -> Response:
        """The OpenAPI 3.1 document."""
        return Response(body, mimetype="application/json")
