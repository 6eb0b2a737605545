"""Reading JSON request bodies and writing FHIR JSON responses, shared by every surface.

orjson does the parsing: it is fast on multi-megabyte hospital exports and refuses input
nested deeper than 1024 levels instead of exhausting the stack, which turns the
"100,000 nested arrays" attack into an ordinary 400.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Request, Response

from ..errors import InputError

JSON_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
FHIR_JSON = "application/fhir+json"


def _media_type(request: Request) -> str | None:
    return request.mimetype or None


def require_json_media_type(request: Request) -> None:
    """415 unless the body is declared as JSON; a missing Content-Type is read as JSON."""
    media_type = _media_type(request)
    if media_type is None or media_type in JSON_MEDIA_TYPES or media_type.endswith("+json"):
        return
    hint = " (this service speaks FHIR JSON only)" if "xml" in media_type else ""
    raise InputError.single(
        f"unsupported media type {media_type!r}{hint}: send application/fhir+json or application/json",
        code="not-supported", status=415,
    )


def read_json_body(request: Request, *, max_bytes: int, when_empty: InputError | None = None) -> Any:
    """The decoded JSON body, or an InputError (400 bad JSON, 413 too large, 415 not JSON).

    `when_empty` is the error for an empty body in the caller's own terms (a surface that does
    not expect a FHIR Bundle says what it does expect).
    """
    require_json_media_type(request)
    length = request.content_length
    if length is not None and length > max_bytes:
        raise InputError.single(f"request body of {length} bytes exceeds the limit of {max_bytes} bytes",
                                code="too-costly", status=413)
    body = request.get_data(cache=False)
    if len(body) > max_bytes:
        raise InputError.single(f"request body exceeds the limit of {max_bytes} bytes",
                                code="too-costly", status=413)
    if not body.strip():
        raise when_empty or InputError.single("request body is empty: expected a FHIR Bundle in JSON",
                                              code="required", status=400)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        message = str(error)  # ends with "line L column C (char N)": it says where
        if "depth limit" in message:
            message = f"JSON nested deeper than the 1024 levels this service accepts: {message}"
        else:
            message = f"body is not valid JSON: {message}"
        raise InputError.single(message, code="structure", status=400) from None


def fhir_response(resource: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialize a FHIR JSON resource (a dict) with the FHIR media type."""
    return Response(orjson.dumps(resource), status=status, mimetype=FHIR_JSON, headers=headers)


def json_response(data: Any, status: int = 200) -> Response:
    """Serialize plain JSON (CDS Hooks responses are application/json)."""
    return Response(orjson.dumps(data), status=status, mimetype="application/json")
