"""Partition a source by patient into shards on disk, so each shard can be assessed on its own.

A Bulk Data export is one file per resource type: a patient's Observations and Conditions are
millions of lines apart. The source is cut into chunks of consecutive lines (`plan_chunks`: byte
ranges of a plain NDJSON file cut at line ends, whole gzipped files, whole Bundle files) that can
be partitioned at the same time, each by a worker of its own: `partition_chunk` reads its lines,
finds each resource's patient (crc32 of the patient id picks the shard, so the same export always
gives the same shards) and writes one file of its lines grouped by shard, each line
`<patient id> TAB <origin> TAB <fullUrl> TAB <resource JSON>` (of a type the rules never read,
only what the pipeline reads of it: `ingest.not_read_stand_in`), with the offset where each shard
begins (a chunk whose lines outgrow CHUNK_TARGET_BYTES, a large gzipped file, is written as
several such runs, one file each). A shard is then its piece of every run, read in order: the
lines of the source in the order read, however many processes cut it. At most about a chunk is
held in memory per process while partitioning, never the export.

What has no patient is counted by type and reported once per type, with its first place: shared
resources (Organization, Practitioner) are expected; an Observation without a patient is a problem.
The Medications of no patient are also written to a file of the chunk's (`chunk-<index>-medications.tsv`,
`shared_medications`): a patient's medication resources reference them, and the workers add them.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson

from ..pipeline.ingest import CLINICAL_TYPES, KEPT_TYPES, not_read_stand_in
from .patient_keys import patient_key_of
from .shared_medications import Line, write_lines
from .sources import Source, SourceItem, SourceProblem, _bundle_records, _decoded, line_ranges, ndjson_lines

SHARD_TARGET_BYTES = 8 * 1024 * 1024  # about this much JSON per shard: a few hundred patients
CHUNK_TARGET_BYTES = 8 * 1024 * 1024  # about this much of the source per chunk partitioned at once
MIN_SHARDS = 16
MAX_SHARDS = 1000  # each run file keeps an offset per shard

# One chunk's lines in, its results out, in chunk order: the built-in `map`, or a process pool's.
ChunkMapper = Callable[[Callable[["Chunk"], "ChunkResult"], Iterable["Chunk"]], Iterable["ChunkResult"]]
# (run file name, offset, length): where a shard's lines of one run are.
Piece = tuple[str, int, int]


def shard_count_for(source: Source) -> int:
    """How many shards a source is split into: enough for shards of about SHARD_TARGET_BYTES (never
    depending on the worker count, so the outputs do not either)."""
    return max(MIN_SHARDS, min(MAX_SHARDS, -(-source.estimated_bytes // SHARD_TARGET_BYTES)))


def shard_of(patient_id: str, shards: int) -> int:
    return zlib.crc32(patient_id.encode()) % shards


@dataclass(frozen=True)
class Segment:
    """Consecutive lines of one file: the byte range [start, end) beginning at line `first_line`, or
    (end None) the whole file."""

    file: str
    start: int = 0
    end: int | None = None
    first_line: int = 1


@dataclass(frozen=True)
class Chunk:
    """Consecutive segments of the source, partitioned by one task into `chunk-<index>-<run>.tsv`."""

    index: int
    kind: str  # the source's kind: "ndjson" or "bundles"
    segments: tuple[Segment, ...]

    def run_file_name(self, run: int) -> str:
        return f"chunk-{self.index:05d}-{run:03d}.tsv"

    def medications_file_name(self) -> str:
        return f"chunk-{self.index:05d}-medications.tsv"


@dataclass
class ChunkResult:
    """What partitioning one chunk found: its runs (file name, where each shard's lines begin in it:
    one offset more than shards, the last is the file's length), counts, problems in the order met,
    and per type the resources without a patient (how many, the first place)."""

    index: int
    runs: list[tuple[str, list[int]]] = field(default_factory=list)
    resources: int = 0
    patients: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    without_patient: dict[str, list[Any]] = field(default_factory=dict)
    medications: str | None = None  # the file of the chunk's Medications of no patient, if it has any


@dataclass
class PartitionResult:
    """What the pass found: resources and patients counted, the problems met, and the runs written."""

    shards: int
    resources: int = 0
    patients: int = 0  # Patient resources read (the number of patients, as a server exports them)
    problems: list[dict[str, Any]] = field(default_factory=list)
    without_patient: Counter = field(default_factory=Counter)
    runs: list[tuple[str, list[int]]] = field(default_factory=list)
    medications: list[str] = field(default_factory=list)  # the files of shared Medications, in the order read

    def to_json(self) -> dict[str, Any]:
        return {"shards": self.shards, "resources": self.resources, "patients": self.patients,
                "problems": self.problems, "runs": self.runs, "medications": self.medications}

    def pieces(self, index: int) -> list[Piece]:
        return shard_pieces(self.runs, index)


def plan_chunks(source: Source, target_bytes: int = CHUNK_TARGET_BYTES) -> list[Chunk]:
    """The source cut into chunks of about `target_bytes`, in the order the source is read: a plain
    NDJSON file larger than that in ranges cut at line ends, smaller files packed together (a
    compressed file counts as its estimated JSON and is never cut)."""
    chunks: list[Chunk] = []
    segments: list[Segment] = []
    filled = 0

    def close() -> None:
        nonlocal segments, filled
        if segments:
            chunks.append(Chunk(len(chunks), source.kind, tuple(segments)))
        segments, filled = [], 0

    for path in source.files:
        size = path.stat().st_size
        plain_ndjson = source.kind == "ndjson" and not path.name.endswith(".gz")
        if plain_ndjson and size > target_bytes:
            close()
            for start, end, first_line in line_ranges(path, target_bytes):
                segments.append(Segment(str(path), start, end, first_line))
                close()
            continue
        weight = size * (8 if path.name.endswith(".gz") else 1)
        if filled and filled + weight > target_bytes:
            close()
        segments.append(Segment(str(path)))
        filled += weight
    close()
    return chunks


def partition(source: Source, folder: Path, shards: int, *, mapper: ChunkMapper = map,
              chunks: list[Chunk] | None = None) -> PartitionResult:
    """Write every resource of `source` to its patient's shard in `folder`, a chunk per task of `mapper`
    (the built-in `map`: one after the other, here); the same files and result whatever runs the tasks."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = plan_chunks(source) if chunks is None else chunks
    result = PartitionResult(shards)
    first_without: dict[str, str] = {}
    for done in mapper(partial(partition_chunk, folder=str(folder), shards=shards), chunks):
        result.resources += done.resources
        result.patients += done.patients
        result.problems.extend(done.problems)
        result.runs.extend(done.runs)
        if done.medications:
            result.medications.append(done.medications)
        for kind, (count, first) in done.without_patient.items():
            result.without_patient[kind] += count
            first_without.setdefault(kind, first)
    for kind, count in sorted(result.without_patient.items()):
        result.problems.append(_without_patient_issue(kind, count, first_without[kind]))
    return result


def partition_chunk(chunk: Chunk, *, folder: str, shards: int) -> ChunkResult:
    """Partition one chunk: its lines grouped by shard into `folder/chunk-<index>-<run>.tsv`, in the order read."""
    held = _Held(Path(folder), chunk, shards)
    result = ChunkResult(chunk.index)
    for segment in chunk.segments:
        path = Path(segment.file)
        if chunk.kind == "ndjson":
            _partition_lines(path, segment, held, result)
        else:
            _partition_records(_bundle_records(path), held, result)
    held.write(result)
    if held.medications:
        result.medications = chunk.medications_file_name()
        write_lines(Path(folder) / result.medications, held.medications)
    return result


class _Held:
    """A chunk's lines by shard, in memory until written as a run (when they outgrow the target, or at the end)."""

    def __init__(self, folder: Path, chunk: Chunk, shards: int) -> None:
        self.folder, self.chunk, self.shards = folder, chunk, shards
        self.lines: list[list[bytes]] = [[] for _ in range(shards)]
        self.bytes = 0
        self.medications: list[Line] = []  # the Medications of no patient: shared by the patients' orders

    def add(self, shard: int, line: bytes, result: ChunkResult) -> None:
        self.lines[shard].append(line)
        self.bytes += len(line)
        if self.bytes > CHUNK_TARGET_BYTES * 2:
            self.write(result)

    def write(self, result: ChunkResult) -> None:
        if not self.bytes:
            return
        name = self.chunk.run_file_name(len(result.runs))
        offsets, offset = [], 0
        with open(self.folder / name, "wb") as handle:
            for shard in range(self.shards):
                offsets.append(offset)
                block = b"".join(self.lines[shard])
                self.lines[shard] = []
                handle.write(block)
                offset += len(block)
        offsets.append(offset)
        result.runs.append((name, offsets))
        self.bytes = 0


def _partition_lines(path: Path, segment: Segment, held: _Held, result: ChunkResult) -> None:
    """The NDJSON lines of a segment: each decoded once to find its patient (a line that is not a
    resource becomes the same problem `Source.records` gives)."""
    shards = held.shards
    name = path.name
    place = _clean_origin(name).encode() + b":"
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    for line in ndjson_lines(path, segment.start, segment.end, segment.first_line):
        if isinstance(line, SourceProblem):
            result.problems.append(line.issue())
            continue
        number, raw = line
        try:
            resource = loads(raw)
        except decode_error:
            resource = None
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(kind, str):
            result.problems.append(_decoded(name, number, raw).issue())  # type: ignore[union-attr]
            continue
        key = patient_key_of(resource)
        if key is None:
            _count_without(result, kind, f"{name}:{number}")
            if kind == "Medication":
                held.medications.append((f"{_clean_origin(name)}:{number}", None, raw))
            continue
        result.resources += 1
        result.patients += kind == "Patient"
        encoded = key.encode()
        if kind not in KEPT_TYPES:
            raw = _as_read(resource, raw)
        held.add(zlib.crc32(encoded) % shards, b"%s\t%s%d\t\t%s\n" % (encoded, place, number, raw), result)


def _partition_records(records: Iterable[SourceItem | SourceProblem], held: _Held, result: ChunkResult) -> None:
    shards = held.shards
    for record in records:
        if isinstance(record, SourceProblem):
            result.problems.append(record.issue())
            continue
        key = _key(record)
        kind = record.resource["resourceType"]
        if key is None:
            _count_without(result, kind, record.origin)
            if kind == "Medication":
                held.medications.append((_clean_origin(record.origin), _clean_url(record.full_url), record.raw))
            continue
        result.resources += 1
        result.patients += kind == "Patient"
        held.add(shard_of(key, shards), _shard_line(key, record, _as_read(record.resource, record.raw)), result)


def _count_without(result: ChunkResult, kind: str, origin: str) -> None:
    counted = result.without_patient.setdefault(kind, [0, origin])
    counted[0] += 1


def shard_pieces(runs: Iterable[tuple[str, list[int]]], index: int) -> list[Piece]:
    """Where shard `index` is: its non-empty piece of each run file, in the order of the runs."""
    pieces = []
    for name, offsets in runs:
        start, end = offsets[index], offsets[index + 1]
        if end > start:
            pieces.append((name, start, end - start))
    return pieces


def _key(record: SourceItem) -> str | None:
    return record.patient_key or patient_key_of(record.resource)


def _clean_url(full_url: str | None) -> str:
    """A fullUrl as a shard line can hold it (none when it holds a tab or line break)."""
    full_url = full_url or ""
    return "" if any(ch in full_url for ch in "\t\r\n") else full_url


def _as_read(resource: dict[str, Any], raw: bytes) -> bytes:
    """The JSON a shard keeps of a resource: what the pipeline reads of it (`not_read_stand_in`: type and
    id of a type the rules never read, so a worker neither reads nor decodes the rest again), else `raw`."""
    stand_in = not_read_stand_in(resource)
    return raw if stand_in is None else orjson.dumps(stand_in)


def _shard_line(key: str, record: SourceItem, raw: bytes) -> bytes:
    full_url = _clean_url(record.full_url)
    return b"\t".join((key.encode(), _clean_origin(record.origin).encode(), full_url.encode(), raw)) + b"\n"


def _clean_origin(origin: str) -> str:
    return origin.replace("\t", " ").replace("\n", " ")


def _without_patient_issue(kind: str, count: int, first: str) -> dict[str, Any]:
    clinical = kind in CLINICAL_TYPES
    what = "refer to no patient (no subject or patient reference to a Patient)"
    # a Medication is read by every patient whose medication resource references it (shared_medications)
    fate = "read where a patient's medication resource references them" if kind == "Medication" else "not assessed"
    return {"severity": "warning" if clinical else "information", "code": "not-found" if clinical else "informational",
            "diagnostics": f"{count} {kind} resource(s) {what}; {fate}"
                           + ("" if clinical else " (shared resources, expected in an export)"),
            "source": first}


def read_shard(folder: Path, pieces: Iterable[Piece]) -> Iterator[tuple[str, list[tuple[str, str | None, bytes]]]]:
    """The patients of one shard (its pieces in `folder`), each with its (origin, fullUrl, JSON) lines,
    in the order first seen."""
    groups: dict[str, list[tuple[str, str | None, bytes]]] = {}
    for name, offset, length in pieces:
        with open(Path(folder) / name, "rb") as handle:
            handle.seek(offset)
            block = handle.read(length)
        for line in block.split(b"\n"):
            if not line:
                continue
            key, origin, full_url, raw = line.split(b"\t", 3)
            groups.setdefault(key.decode(), []).append((origin.decode(), full_url.decode() or None, raw))
        del block
    yield from groups.items()
