"""A large Bundle read from its bytes one entry at a time, so the whole of it is never held decoded.

Decoded by orjson, a Bundle takes 14 to 17 times its bytes in Python objects, nearly all of it in
the entries the rules never read (encounters, claims, vital signs). Above `STREAM_FROM_BYTES` the
body is therefore read in three passes over its bytes, none of which builds more than one entry:

1. a depth check on the bytes (`bytes_exceed_depth`), C-speed byte operations only; it comes first
   because the streaming parser's cost grows with the square of the nesting;
2. a syntax check that also picks the few members the Bundle checks read (resourceType, type,
   total, link relations and urls, whether `entry` is an array) and counts the entries' resource
   types, for the request's cost estimate and the count limits; a syntax error names the entry;
3. `entries()`: each entry decoded alone (ijson's C parser, yajl2_c), handed to ingest, which keeps
   what the rules read and counts the rest.

Below the threshold orjson is faster (about half the time of pass 2 and 3 on a 2 MB patient) and
its objects are few enough, so small bodies are decoded whole as before.
"""

from __future__ import annotations

import itertools
from operator import itemgetter
from typing import Any, Iterator

import ijson

from ..errors import InputError

# Bodies from this size on are streamed (see the module docstring for why small ones are not).
STREAM_FROM_BYTES = 4 * 1024 * 1024

# The events pass 2 reads: the Bundle's own members, each entry's start and its resource's type.
_RESOURCE_TYPE = "entry.item.resource.resourceType"
_READ_PREFIXES = frozenset({"", "resourceType", "type", "total", "entry", "link", "link.item",
                            "link.item.relation", "link.item.url", "entry.item", _RESOURCE_TYPE})
_STARTS = {"start_map": dict, "start_array": list}
_SCALARS = frozenset({"null", "boolean", "integer", "double", "number", "string"})
_KEEP = bytes(range(256)).translate(None, b'"[]{}')  # every byte but quotes and brackets
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_SLICE = 1 << 16


def bytes_exceed_depth(body: bytes, limit: int) -> bool:
    """True when the JSON text `body` nests objects and arrays more than `limit` deep.

    Escaped backslashes and quotes are removed, then everything but quotes and brackets; the text
    between quote pairs (string contents) is dropped, braces become brackets, and each round removes
    the innermost pairs: brackets left after `limit` rounds lie deeper than the limit. `body` must be valid JSON
    (an unbalanced text is reported as deep when its brackets outnumber `limit` levels).
    """
    marks = _brackets(body)
    for _ in range(limit):
        if not marks:
            return False
        marks = marks.replace(b"[]", b"")
    return bool(marks)


def _brackets(body: bytes) -> bytes:
    """The brackets of the JSON text `body` outside its strings, braces turned into brackets (valid
    JSON closes what it opens, so the kind does not matter for depth)."""
    marks = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _KEEP)
    kept: list[bytes] = []
    inside = False  # whether the slice starts inside a string
    for start in range(0, len(marks), _SLICE):  # in slices: a split of the whole would make a piece per string
        pieces = marks[start:start + _SLICE].split(b'"')
        kept.append(b"".join(pieces[1 if inside else 0::2]))
        inside ^= len(pieces) % 2 == 0  # an odd number of quotes in the slice
    return b"".join(kept).translate(_ONE_KIND)


class StreamedBundle:
    """A request body holding a Bundle, checked whole but decoded one entry at a time.

    `members` is what the Bundle checks read: the root's members (only those named above, a
    container other than `link` standing as an empty one of its kind), or, when the root is not an
    object, an empty container or the scalar it is. Raises InputError (400) when the body is not
    JSON, nests deeper than `max_depth`, or names `entry` twice.
    """

    def __init__(self, body: bytes, *, max_depth: int) -> None:
        self.body = body
        self.entry_count = 0
        self.type_counts: dict[str, int] = {}  # resourceType -> entries, for entries whose type is a string
        if bytes_exceed_depth(body, max_depth):
            # Too deep, or unbalanced: a syntax error before the deep point is reported as such.
            location = _deep_location(body, max_depth)
            if location is None:
                self._read_members()  # raises the syntax error, naming its entry
                location = "Bundle"
            raise InputError.single(f"JSON nested deeper than the {max_depth} levels this service accepts",
                                    location=location, code="structure", status=400)
        self.members: Any = self._read_members()

    def get(self, key: str, default: Any = None) -> Any:
        """A member of the root object, as `members` holds it."""
        return self.members.get(key, default) if isinstance(self.members, dict) else default

    def entries(self) -> Iterator[Any]:
        """Each entry decoded alone, in order (the body was checked whole: this pass cannot fail)."""
        if not isinstance(self.get("entry"), list):
            return iter(())
        return ijson.items(self.body, "entry.item", use_float=True)

    def _read_members(self) -> Any:
        events, prefixes = itertools.tee(ijson.parse(self.body, use_float=True))
        wanted = itertools.compress(events, map(_READ_PREFIXES.__contains__, map(itemgetter(0), prefixes)))
        members: dict[str, Any] = {}
        root: Any = None
        key: str | None = None
        links: list[Any] | None = None
        try:
            for prefix, event, value in wanted:
                if prefix == "":
                    if event == "map_key":
                        key = value
                        if key == "entry" and "entry" in members:
                            raise InputError.single("the Bundle names entry twice: which array is meant cannot be "
                                                    "told", location="Bundle.entry", code="structure", status=400)
                    elif root is None:
                        root = members if event == "start_map" else _STARTS[event]() if event in _STARTS else value
                elif prefix == "entry.item":
                    if event == "map_key" or event.startswith("end_"):
                        continue
                    self.entry_count += 1
                elif prefix == _RESOURCE_TYPE:
                    if event == "string":
                        self.type_counts[value] = self.type_counts.get(value, 0) + 1
                elif prefix == key:  # a member of the root
                    if event in _SCALARS:
                        members[key] = value
                    elif event in _STARTS:
                        members[key] = container = _STARTS[event]()
                        links = container if key == "link" and event == "start_array" else None
                elif key != "link" or links is None:
                    continue
                elif prefix == "link.item":
                    if event == "start_map":
                        links.append({})
                    elif event in _SCALARS:
                        links.append(value)
                elif links and isinstance(links[-1], dict) and event in _SCALARS:  # link.item.relation, .url
                    links[-1][prefix.rsplit(".", 1)[1]] = value
        except ijson.JSONError as error:
            where = f"Bundle.entry[{self.entry_count - 1}]" if self.entry_count else "Bundle"
            raise InputError.single(f"body is not valid JSON: {_parse_problem(error)}", location=where,
                                    code="structure", status=400) from None
        return root


def _parse_problem(error: Exception) -> str:
    """The parser's reason, without the text it quotes from the body (which can hold patient data)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text.split(":", 1)[1].strip() if text.startswith("parse error:") else text[:120]


def _deep_location(body: bytes, max_depth: int) -> str | None:
    """A FHIRPath-like location of the first container nested beyond `max_depth` ("Bundle.entry[3].resource...").

    Only run on a body already found too deep; it stops at that container, so the parser never
    goes further down than the limit. None when the body is not JSON before that point.
    """
    keys: list[Any] = []  # per open container: the current member name or item index
    arrays: list[bool] = []
    try:
        for event, value in ijson.basic_parse(body, use_float=True):
            location = _deeper(event, value, keys, arrays, max_depth)
            if location is not None:
                return location
    except ijson.JSONError:
        return None
    return None


def _deeper(event: str, value: Any, keys: list[Any], arrays: list[bool], max_depth: int) -> str | None:
    """Follow one parse event; the location of the container it opens when that one is too deep."""
    if event == "map_key":
        keys[-1] = value
        return None
    if event in ("end_map", "end_array"):
        keys.pop()
        arrays.pop()
        return None
    if arrays and arrays[-1]:
        keys[-1] += 1
    if event not in _STARTS:
        return None
    if len(arrays) == max_depth:
        text = "Bundle" + "".join(f"[{key}]" if isinstance(key, int) else "." + _shown_key(key) for key in keys)
        return text if len(text) <= 240 else text[:240] + "..."
    arrays.append(event == "start_array")
    keys.append(-1 if event == "start_array" else None)
    return None


def _shown_key(key: Any) -> str:
    text = str(key)
    return (text if len(text) <= 40 else text[:40] + "...").encode("unicode_escape").decode("ascii")


def entry_types(bundle: Any) -> tuple[int, dict[str, int]]:
    """(entries, resources per resourceType) of a decoded or streamed Bundle, for the cost estimate
    and the count limits: an entry whose resource or resourceType is malformed counts, untyped."""
    if isinstance(bundle, StreamedBundle):
        return bundle.entry_count, bundle.type_counts
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    counts: dict[str, int] = {}
    if not isinstance(entries, list):
        return 0, counts
    for entry in entries:
        try:  # subscripts, not checks and get(): every entry of a real Bundle has both members
            kind = entry["resource"]["resourceType"]
        except (KeyError, TypeError):  # no resource or type; an entry or resource that is no object
            continue
        if isinstance(kind, str):
            counts[kind] = counts.get(kind, 0) + 1
    return len(entries), counts
