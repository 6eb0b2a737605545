"""A CPU budget per `$assess` request, enforced up front from the request's counted size.

What a request costs grows with the resources the rules read, the patients (each gets a
RiskAssessment, a CarePlan and its ServiceRequests), the other entries and the bytes; the cost per
unit is data (`request_cost.json`). A request whose estimate exceeds ASSESS_CPU_BUDGET_SECONDS is
refused with 413 before any work, naming its counts, rather than cut off half-way: one caller can no
longer hold a worker for many seconds with a request each of whose parts is within its own limit.
The hard count limits (MAX_PATIENTS_PER_REQUEST, MAX_ASSESSED_RESOURCES) keep their own refusal,
from the core.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError
from ..pipeline.bundle_stream import entry_types
from ..pipeline.ingest import KEPT_TYPES

_COSTS: dict[str, float] = {key: float(value) for key, value in json.loads(
    Path(__file__).with_name("request_cost.json").read_text(encoding="utf-8")).items() if not key.startswith("_")}


@dataclass(frozen=True, slots=True)
class RequestSize:
    """The counts a request's cost is estimated from."""

    resources_read: int
    patients: int
    other_entries: int
    body_bytes: int

    def cpu_seconds(self) -> float:
        """The estimated CPU cost of assessing a request of this size."""
        return (self.resources_read * _COSTS["seconds_per_resource_read"]
                + self.patients * _COSTS["seconds_per_patient"]
                + self.other_entries * _COSTS["seconds_per_other_entry"]
                + self.body_bytes / (1024 * 1024) * _COSTS["seconds_per_mebibyte"])


def count_size(bundle: Any, body_bytes: int) -> RequestSize:
    """The counts of a request body, decoded or streamed (anything that is not a Bundle with entries counts as empty)."""
    entries, types = entry_types(bundle)
    read = sum(count for kind, count in types.items() if kind in KEPT_TYPES)
    return RequestSize(read, types.get("Patient", 0), entries - read, body_bytes)


def check_budget(bundle: Any, body_bytes: int, settings: Mapping[str, Any]) -> None:
    """Nothing when the request fits the budget (or breaks a hard count limit the core refuses); else 413."""
    size = count_size(bundle, body_bytes)
    if (size.patients > int(settings["MAX_PATIENTS_PER_REQUEST"])
            or size.resources_read > int(settings["MAX_ASSESSED_RESOURCES"])):
        return  # the core refuses it at once, in the terms of the limit it breaks
    budget = float(settings["ASSESS_CPU_BUDGET_SECONDS"])
    estimate = size.cpu_seconds()
    if estimate > budget:
        raise InputError.single(
            f"the Bundle holds {size.resources_read} resources the rules read, {size.patients} Patient resources "
            f"and {size.other_entries} other entries ({size.body_bytes} bytes): assessing it would cost about "
            f"{estimate:.1f} s of CPU, above the {budget:g} s allowed per request (ASSESS_CPU_BUDGET_SECONDS); "
            "split the Bundle", location="Bundle.entry", code="too-costly", status=413)
