"""The data gathered for one hook call, held to the assessment's size limit in the call's own terms.

The core refuses a Bundle with more resources than MAX_ASSESSED_RESOURCES by asking the caller to
split it (413): right for `$assess`, wrong for a CDS client that sent no Bundle, whose data the
service read itself from fhirServer. Here the same limit is checked first and the refusal names
where the data came from: 412 (the data cannot be had within bounds) when the largest part was
read from the FHIR server, 413 when the client sent it all in the request.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..assessment_model import InputIssue
from ..config import setting
from ..errors import DataUnavailableError, InputError, ServiceError
from ..pipeline.ingest import KEPT_TYPES
from .prefetch import GatheredData


def _rules_read(bundle: Mapping[str, Any]) -> int:
    return sum(entry["resource"].get("resourceType") in KEPT_TYPES for entry in bundle.get("entry") or ())


def _source_text(location: str, sent: int, read: int) -> str:
    parts = [f"{sent} sent in the request"] if sent else []
    parts += [f"{read} read from the FHIR server"] if read else []
    return f"{location}: {' and '.join(parts) or 'none'}"


def check_gathered_size(gathered: GatheredData, config: Mapping[str, Any]) -> None:
    """Nothing when the gathered data is within MAX_ASSESSED_RESOURCES; else the refusal naming its sources."""
    limit = int(setting(config, "MAX_ASSESSED_RESOURCES"))
    count = _rules_read(gathered.bundle)
    if count <= limit:
        return
    sources = sorted(gathered.sources, key=lambda source: source[1] + source[2], reverse=True)
    largest = sources[0] if sources else ("prefetch", 0, 0)
    read_from_server = largest[2] > 0
    remedy = ("narrow the prefetch query or the server's search so it returns fewer resources" if read_from_server
              else "send fewer resources in prefetch")
    diagnostics = (f"the data gathered for this call is too large to assess: {count} resources the rules read, "
                   f"above the {limit} one call may assess (MAX_ASSESSED_RESOURCES); "
                   + "; ".join(_source_text(*source) for source in sources if source[1] + source[2])
                   + f"; {remedy}")
    issue = InputIssue("error", "too-costly", diagnostics, largest[0])
    error: ServiceError = (DataUnavailableError([issue], status=412) if read_from_server
                           else InputError([issue], status=413))
    raise error
