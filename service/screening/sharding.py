"""Partition a source by patient into shard files on disk, so each shard can be assessed on its own.

A Bulk Data export is one file per resource type: a patient's Observations and Conditions are
millions of lines apart. One pass over the source writes each resource to the shard its patient
hashes to (crc32 of the patient id, so the same export always gives the same shards), as one line
`<patient id> TAB <origin> TAB <fullUrl> TAB <resource JSON>`. A shard is then small enough to group
by patient in memory, and all of a patient's resources are in one shard. Only the shard files' write
buffers are held, never the export.

What has no patient is counted by type and reported once per type, with its first place: shared
resources (Organization, Practitioner) are expected; an Observation without a patient is a problem.
"""

from __future__ import annotations

import resource
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..pipeline.ingest import CLINICAL_TYPES
from .patient_keys import patient_key_of
from .sources import Source, SourceItem, SourceProblem

SHARD_TARGET_BYTES = 8 * 1024 * 1024  # about this much JSON per shard: a few hundred patients
MIN_SHARDS = 16
MAX_SHARDS = 1000  # one open file each while partitioning
_BUFFERS_TOTAL = 64 * 1024 * 1024  # the write buffers of all shard files together, at most


def shard_count_for(source: Source) -> int:
    """How many shards a source is split into: enough for shards of about SHARD_TARGET_BYTES (never
    depending on the worker count, so the outputs do not either)."""
    return max(MIN_SHARDS, min(MAX_SHARDS, -(-source.estimated_bytes // SHARD_TARGET_BYTES)))


def shard_of(patient_id: str, shards: int) -> int:
    return zlib.crc32(patient_id.encode()) % shards


def shard_path(folder: Path, index: int) -> Path:
    return Path(folder) / f"shard-{index:05d}.tsv"


@dataclass
class PartitionResult:
    """What the pass found: resources and patients per shard count, and the problems met."""

    shards: int
    resources: int = 0
    patients: int = 0  # Patient resources read (the number of patients, as a server exports them)
    problems: list[dict[str, Any]] = field(default_factory=list)
    without_patient: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"shards": self.shards, "resources": self.resources, "patients": self.patients,
                "problems": self.problems}


def partition(source: Source, folder: Path, shards: int) -> PartitionResult:
    """Write every resource of `source` to its patient's shard file in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _allow_open_files(shards + 64)
    buffer = max(16 * 1024, min(256 * 1024, _BUFFERS_TOTAL // shards))
    handles = [open(shard_path(folder, index), "wb", buffering=buffer) for index in range(shards)]
    result = PartitionResult(shards)
    first_without: dict[str, str] = {}
    try:
        for record in source.records():
            if isinstance(record, SourceProblem):
                result.problems.append(record.issue())
                continue
            key = _key(record)
            kind = record.resource["resourceType"]
            if key is None:
                result.without_patient[kind] += 1
                first_without.setdefault(kind, record.origin)
                continue
            result.resources += 1
            result.patients += kind == "Patient"
            handles[shard_of(key, shards)].write(_shard_line(key, record))
    finally:
        for handle in handles:
            handle.close()
    for kind, count in sorted(result.without_patient.items()):
        result.problems.append(_without_patient_issue(kind, count, first_without[kind]))
    return result


def _allow_open_files(wanted: int) -> None:
    """Raise this process's open-file limit to `wanted` when the hard limit allows it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted,
                                                    hard))


def _key(record: SourceItem) -> str | None:
    return record.patient_key or patient_key_of(record.resource)


def _shard_line(key: str, record: SourceItem) -> bytes:
    full_url = record.full_url or ""
    if any(ch in full_url for ch in "\t\r\n"):
        full_url = ""
    origin = record.origin.replace("\t", " ").replace("\n", " ")
    return b"\t".join((key.encode(), origin.encode(), full_url.encode(), record.raw)) + b"\n"


def _without_patient_issue(kind: str, count: int, first: str) -> dict[str, Any]:
    clinical = kind in CLINICAL_TYPES
    what = "refer to no patient (no subject or patient reference to a Patient)"
    return {"severity": "warning" if clinical else "information", "code": "not-found" if clinical else "informational",
            "diagnostics": f"{count} {kind} resource(s) {what}; not assessed"
                           + ("" if clinical else " (shared resources, expected in an export)"),
            "source": first}


def read_shard(path: Path) -> Iterator[tuple[str, list[tuple[str, str | None, bytes]]]]:
    """The patients of one shard file, each with its (origin, fullUrl, JSON) lines, in the order first seen."""
    groups: dict[str, list[tuple[str, str | None, bytes]]] = {}
    with open(path, "rb") as handle:
        for line in handle:
            key, origin, full_url, raw = line.rstrip(b"\n").split(b"\t", 3)
            groups.setdefault(key.decode(), []).append((origin.decode(), full_url.decode() or None, raw))
    yield from groups.items()
