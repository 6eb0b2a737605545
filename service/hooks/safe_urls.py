"""URLs the client's access token may be sent to, compared the way a server will resolve them.

A prefix test on the raw text is not enough: "https://ehr/fhir/../uploads" starts with the allowed
"https://ehr/fhir" but reaches "/uploads". So a URL is parsed, its dot segments resolved, and any
percent-encoded dot, slash or backslash in the path refused (a server may decode them after our
check); scheme, host and port must then match exactly and the path must lie under the allowed path
segment by segment. A URL that cannot be parsed is never trusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENCODED_SEPARATOR = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SafeUrl:
    """An http(s) URL in canonical form: what the request is sent to is what was checked."""

    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]
    query: str = ""

    @property
    def origin(self) -> str:
        """scheme://host[:port]: the port only when not the scheme's default, an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS[self.scheme] == self.port
        return f"{self.scheme}://{host}" + ("" if default else f":{self.port}")

    @property
    def base(self) -> str:
        """Origin and path, without a trailing slash or query."""
        return self.origin + "".join(f"/{segment}" for segment in self.segments)

    @property
    def text(self) -> str:
        """The whole URL as it will be requested: `base` plus the query."""
        return self.base + (f"?{self.query}" if self.query else "")

    def is_under(self, other: "SafeUrl") -> bool:
        """Same scheme, host and port, and a path equal to or below `other`'s by whole segments."""
        return ((self.scheme, self.host, self.port) == (other.scheme, other.host, other.port)
                and self.segments[: len(other.segments)] == other.segments)


def _remove_dot_segments(segments: list[str]) -> list[str]:
    """RFC 3986 section 5.2.4 on a split path; empty segments are dropped."""
    output: list[str] = []
    for segment in segments:
        if segment in ("", "."):
            continue
        if segment == "..":
            if output:
                output.pop()
            continue
        output.append(segment)
    return output


def parse_safe_url(url: object) -> SafeUrl | None:
    """The canonical form of an absolute http(s) URL, or None when it cannot be trusted as one."""
    if not isinstance(url, str) or not url.strip() or any(c in url for c in "\\\r\n\t "):
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None or parts.fragment:
        return None
    if _ENCODED_SEPARATOR.search(parts.path):
        return None
    segments = _remove_dot_segments(parts.path.split("/"))
    return SafeUrl(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], tuple(segments), parts.query)


def is_under_any(url: SafeUrl, bases: Iterable[str]) -> bool:
    """True when `url` lies under one of `bases` (bases that cannot be parsed match nothing)."""
    for base in bases:
        allowed = parse_safe_url(base)
        if allowed is not None and url.is_under(allowed):
            return True
    return False
