"""Reading JSON request bodies and writing FHIR JSON responses, shared by every surface.

orjson does the parsing: it is fast on multi-megabyte hospital exports and refuses input
nested deeper than 1024 levels instead of exhausting the stack, which turns the
"100,000 nested arrays" attack into an ordinary 400. The body is held to the service's own, lower
nesting limit (`json_depth`) by orjson too (see `decode_json`), so every later step can recurse safely.
A `$assess` body of STREAM_FROM_BYTES or more is not decoded here but streamed (`read_bundle_body`).
A body the server cannot deliver whole (a malformed chunk, a connection closed early, fewer bytes
than its Content-Length) is the caller's framing error: a 400, never a 500 with a stack trace.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Request, Response

from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..errors import InputError
from ..pipeline.bundle_stream import STREAM_FROM_BYTES, StreamedBundle
from .json_depth import MAX_JSON_DEPTH, exceeds_depth, too_deep_location

# How a body is held to MAX_JSON_DEPTH (`decode_json`) depends on its size: below this many bytes,
# by writing the parsed value with orjson (about 2 microseconds a kilobyte); from it on, by
# parsing it inside padding arrays (a fixed cost of about 150 microseconds, whatever the size).
WRITER_CHECK_BELOW_BYTES = 64 * 1024

# orjson refuses to write more than ORJSON_MAX_WRITE_DEPTH nested objects and arrays, and to read
# more than ORJSON_MAX_READ_DEPTH: inside `_WRAPPING` or `_PADDING` arrays, a value nested deeper
# than MAX_JSON_DEPTH reaches those limits (tests/test_input_nesting.py holds them to agree).
ORJSON_MAX_WRITE_DEPTH = 254
ORJSON_MAX_READ_DEPTH = 1024
_WRAPPING = ORJSON_MAX_WRITE_DEPTH - MAX_JSON_DEPTH
_PADDING = ORJSON_MAX_READ_DEPTH - MAX_JSON_DEPTH
_OPEN, _CLOSE = b"[" * _PADDING, b"]" * _PADDING

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
    return decode_json(_checked_body(request, max_bytes=max_bytes, when_empty=when_empty))


def read_bundle_body(request: Request, *, max_bytes: int, stream_from: int = STREAM_FROM_BYTES) -> Any:
    """Like `read_json_body` for a Bundle the core reads entry by entry: a body of `stream_from` bytes
    or more comes back as a `StreamedBundle` (checked whole, decoded one entry at a time, so a large
    export is never held decoded), a smaller one decoded whole (orjson is faster there)."""
    return decode_bundle(_checked_body(request, max_bytes=max_bytes, when_empty=None), stream_from=stream_from)


def decode_bundle(body: bytes, *, stream_from: int = STREAM_FROM_BYTES) -> Any:
    """A Bundle body as the core reads it: streamed from `stream_from` bytes on, else decoded whole."""
    if len(body) >= stream_from:
        return StreamedBundle(body, max_depth=MAX_JSON_DEPTH)
    return decode_json(body)


def _checked_body(request: Request, *, max_bytes: int, when_empty: InputError | None) -> bytes:
    """The raw body once its media type, its length and its framing are checked; never empty."""
    require_json_media_type(request)
    length = request.content_length
    if length is not None and length > max_bytes:
        raise InputError.single(f"request body of {length} bytes exceeds the limit of {max_bytes} bytes",
                                code="too-costly", status=413)
    body = _read_body_bytes(request)
    if length is not None and len(body) < length:
        raise InputError.single(f"request body ended after {len(body)} of the {length} bytes its Content-Length "
                                "announced", code="incomplete", status=400)
    if len(body) > max_bytes:
        raise InputError.single(f"request body exceeds the limit of {max_bytes} bytes",
                                code="too-costly", status=413)
    if not body.strip():
        raise when_empty or InputError.single("request body is empty: expected a FHIR Bundle in JSON",
                                              code="required", status=400)
    return body


def decode_json(body: bytes) -> Any:
    """`body` decoded by orjson and held to MAX_JSON_DEPTH; an InputError (400) naming where otherwise.

    Either way orjson itself holds the depth, so a body within the limit is never walked value by
    value in Python (which cost about as much as the parse); only a refused body is, to say where.
    """
    if len(body) < WRITER_CHECK_BELOW_BYTES:
        value = _parsed(body)
        if _may_exceed_depth(value):
            _refuse_if_too_deep(value)
        return value
    return _parsed_in_padding(body)


def _may_exceed_depth(value: Any) -> bool:
    """False when `value` surely nests at most MAX_JSON_DEPTH deep; True when the exact walk must decide.

    Written inside `_WRAPPING` arrays, the value is refused by orjson's writer exactly when it nests
    deeper than MAX_JSON_DEPTH. Any refusal (the depth, or anything else the writer might object to)
    leaves it to the exact walk.
    """
    wrapped = value
    for _ in range(_WRAPPING):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return True
    return False


def _parsed_in_padding(body: bytes) -> Any:
    """`body` parsed inside `_PADDING` arrays, where it reaches orjson's own depth limit exactly when
    it nests deeper than MAX_JSON_DEPTH. Only a refused body is parsed again, alone, to say why and where."""
    try:
        value = orjson.loads(_OPEN + body + _CLOSE)
    except orjson.JSONDecodeError:
        return _decoded_alone(body)
    for _ in range(_PADDING):
        # a body that is not one JSON value can still parse once padded ('1],[2', '],['): each padding
        # array must then hold exactly one value, or the body alone says what is wrong with it
        if len(value) != 1:
            return _decoded_alone(body)
        value = value[0]
    return value


def _decoded_alone(body: bytes) -> Any:
    """The reason a body failed when padded: not JSON, or too deep (with where); else its value."""
    value = _parsed(body)
    _refuse_if_too_deep(value)
    return value


def _parsed(body: bytes) -> Any:
    """`body` parsed alone; an InputError saying why and where when it is not JSON or nests beyond orjson's limit."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        message = str(error)  # ends with "line L column C (char N)": it says where
        if "depth limit" in message:
            message = f"JSON nested deeper than the {MAX_JSON_DEPTH} levels this service accepts: {message}"
        else:
            message = f"body is not valid JSON: {message}"
        raise InputError.single(message, code="structure", status=400) from None


def _refuse_if_too_deep(value: Any) -> None:
    """The exact walk: an InputError (400) naming where `value` nests deeper than MAX_JSON_DEPTH."""
    if exceeds_depth(value):
        raise InputError.single(f"JSON nested deeper than the {MAX_JSON_DEPTH} levels this service accepts",
                                location=too_deep_location(value), code="structure", status=400)


def _read_body_bytes(request: Request) -> bytes:
    """The raw body; a body the server could not deliver (bad chunking, connection lost) is a 400.

    Only the WSGI server's input stream runs here, so whatever it raises is about the request's
    framing or its connection, never the service's state: its type is named, its text (which can
    quote the request) is not.
    """
    try:
        return request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise
    except HTTPException as error:  # werkzeug's ClientDisconnected and its kin
        reason = type(error).__name__
    except Exception as error:  # noqa: BLE001 - the server's parser errors (gunicorn InvalidChunkSize...)
        reason = type(error).__name__
    raise InputError.single(f"the request body could not be read as HTTP/1.1 framed it ({reason}): send a "
                            "body whose Content-Length or chunked encoding matches what follows",
                            code="structure", status=400)


def fhir_response(resource: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialize a FHIR JSON resource (a dict) with the FHIR media type."""
    return Response(orjson.dumps(resource), status=status, mimetype=FHIR_JSON, headers=headers)


def json_response(data: Any, status: int = 200) -> Response:
    """Serialize plain JSON (CDS Hooks responses are application/json)."""
    return Response(orjson.dumps(data), status=status, mimetype="application/json")
