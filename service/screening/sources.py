"""What a screening run reads: a Bulk Data export folder or a folder of Bundles, one resource at a time.

An export folder holds NDJSON files as the Bulk Data Access IG writes them: `<Type>.ndjson`, several
per type when a server splits them (`Observation.000.ndjson`, `Observation.2.ndjson`), each possibly
gzipped (`.ndjson.gz`); an `errors/` folder and the manifest beside them are not resources. A Bundle
folder holds `.json` (or `.json.gz`) files, each a Bundle of one patient or more (what Synthea
writes). Files are read in a fixed order (by name, numbers compared as numbers), line by line or
Bundle by Bundle, so a huge export is never in memory and two reads give the same sequence.

Nothing read here stops the run: a line that is not JSON, not an object or has no resourceType, a
file that cannot be opened or decompressed, becomes a `SourceProblem` naming the file and line.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Union

import orjson

from .patient_keys import PATIENT_ELEMENTS, patient_key_of

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz")
BUNDLE_SUFFIXES = (".json", ".json.gz")
NOT_RESOURCES = frozenset({"export-manifest.json", "manifest.json"})
_NUMBER = re.compile(r"(\d+)")


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One resource read: where (`origin`: 'Observation.ndjson:17', or 'patients-3.json#Bundle.entry[4]'),
    its JSON, the decoded resource and, from a Bundle, the entry's fullUrl."""

    origin: str
    raw: bytes
    resource: dict
    full_url: str | None = None
    patient_key: str | None = None  # the patient, when the Bundle says it better than the resource alone


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """Something that could not be read, with where it is."""

    file: str
    line: int | None  # the line of an NDJSON file; None for a whole file
    diagnostics: str
    code: str = "structure"
    entry: int | None = None  # the entry of a Bundle file

    @property
    def origin(self) -> str:
        if self.entry is not None:
            return f"{self.file}#Bundle.entry[{self.entry}]"
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def issue(self) -> dict:
        """The issues.ndjson line of this problem."""
        return {"severity": "error", "code": self.code, "diagnostics": self.diagnostics, "source": self.origin}


SourceRecord = Union[SourceItem, SourceProblem]


def natural_key(name: str) -> list[object]:
    """'Observation.10.ndjson' after 'Observation.2.ndjson': numbers in a name compare as numbers."""
    return [int(part) if part.isdigit() else part for part in _NUMBER.split(name)]


class Source:
    """A folder to screen: which kind it is, its files, the bytes they hold, and their resources in order."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder} is not a folder")
        ndjson = self._files(NDJSON_SUFFIXES)
        self.kind = "ndjson" if ndjson else "bundles"
        self.files = ndjson or self._files(BUNDLE_SUFFIXES)

    def _files(self, suffixes: tuple[str, ...]) -> list[Path]:
        found = [path for path in self.folder.iterdir()
                 if path.is_file() and path.name.endswith(suffixes) and path.name not in NOT_RESOURCES]
        return sorted(found, key=lambda path: natural_key(path.name))

    @property
    def size(self) -> int:
        """Bytes on disk (compressed files count as what they take on disk)."""
        return sum(path.stat().st_size for path in self.files)

    @property
    def estimated_bytes(self) -> int:
        """About how many bytes of JSON the files hold (gzipped JSON is about 8 times smaller)."""
        return sum(path.stat().st_size * (8 if path.name.endswith(".gz") else 1) for path in self.files)

    def describe(self) -> str:
        kind = "a Bulk Data export" if self.kind == "ndjson" else "a folder of Bundles"
        return f"{kind} of {len(self.files)} file(s)"

    def records(self) -> Iterator[SourceRecord]:
        """Every resource of the folder, and every problem met, in a fixed order."""
        for path in self.files:
            reader = _ndjson_records if self.kind == "ndjson" else _bundle_records
            yield from reader(path)


def _open(path: Path):  # noqa: ANN202 - a binary file object, plain or gzip
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _ndjson_records(path: Path) -> Iterator[SourceRecord]:
    name = path.name
    for line in ndjson_lines(path):
        yield line if isinstance(line, SourceProblem) else _decoded(name, line[0], line[1])


def ndjson_lines(path: Path, start: int = 0, end: int | None = None,
                 first_line: int = 1) -> Iterator[tuple[int, bytes] | SourceProblem]:
    """The (number, text) of every non-blank line of an NDJSON file, without its line end, or of the
    byte range [start, end) of a plain file that begins at line `first_line` (a range cut at line ends:
    see `line_ranges`); a file that cannot be read further ends with a problem."""
    name = path.name
    number = first_line - 1
    try:
        if end is None:
            with _open(path) as handle:
                lines: Iterable[bytes] = handle
                for number, line in enumerate(lines, start=first_line):
                    line = line.rstrip(b"\r\n")
                    if line.strip():
                        yield number, line
        else:
            with open(path, "rb") as handle:
                handle.seek(start)
                block = handle.read(end - start)
            for number, line in enumerate(block.split(b"\n"), start=first_line):
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield number, line
    except (OSError, EOFError, zlib.error) as error:
        # a truncated or corrupt gzip, a file gone: what was read stands, the rest is reported
        yield SourceProblem(name, number + 1 if number else None, f"the file could not be read further: {_reason(error)}",
                            code="exception")


def line_ranges(path: Path, target_bytes: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, first line) of consecutive byte ranges of a plain file, each about `target_bytes` and
    ending at a line end (a line longer than that is one range), so that each can be read on its own."""
    size = path.stat().st_size
    start, line = 0, 1
    with open(path, "rb") as handle:
        while start < size:
            handle.seek(start)
            block = handle.read(target_bytes)
            cut = block.rfind(b"\n") + 1
            while not cut and start + len(block) < size:  # one line longer than the target: read on to its end
                more = handle.read(target_bytes)
                if not more:
                    break
                found = more.find(b"\n")
                block += more
                cut = len(block) - len(more) + found + 1 if found >= 0 else 0
            if not cut or start + len(block) >= size:
                cut = len(block)
            if not cut:
                return
            yield start, start + cut, line
            line += block.count(b"\n", 0, cut)
            start += cut


def _decoded(name: str, number: int, line: bytes, full_url: str | None = None) -> SourceRecord:
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return SourceProblem(name, number, f"not valid JSON ({error.msg} at character {error.pos})")
    if not isinstance(resource, dict):
        return SourceProblem(name, number, f"a JSON {type(resource).__name__}, not a resource")
    if not isinstance(resource.get("resourceType"), str):
        return SourceProblem(name, number, "a JSON object without resourceType")
    return SourceItem(f"{name}:{number}", line, resource, full_url)


def _bundle_records(path: Path) -> Iterator[SourceRecord]:
    name = path.name
    try:
        with _open(path) as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        yield SourceProblem(name, None, f"the file could not be read: {_reason(error)}", code="exception")
        return
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        yield SourceProblem(name, None, f"not valid JSON ({error.msg} at character {error.pos})")
        return
    del raw
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        yield SourceProblem(name, None, "not a FHIR resource or Bundle")
        return
    if document["resourceType"] != "Bundle":
        yield SourceItem(name, orjson.dumps(document), document)
        return
    entries = document.get("entry")
    if not isinstance(entries, list):
        yield SourceProblem(name, None, "a Bundle without entries", code="not-found")
        return
    patients = _patients_by_full_url(entries)
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            yield SourceProblem(name, None, "the entry holds no resource", entry=index)
            continue
        full_url = entry.get("fullUrl")
        yield SourceItem(f"{name}#Bundle.entry[{index}]", orjson.dumps(resource), resource,
                         full_url if isinstance(full_url, str) else None, _bundle_patient(resource, patients))


def _patients_by_full_url(entries: list) -> dict[str, str]:
    """fullUrl -> id of the Bundle's Patients: a reference to 'urn:uuid:...' names a Patient by its entry."""
    found = {}
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
            key = patient_key_of(resource)
            if key and isinstance(entry.get("fullUrl"), str):
                found[entry["fullUrl"]] = key
    return found


def _bundle_patient(resource: dict, patients: dict[str, str]) -> str | None:
    """The patient a resource refers to through its Bundle (None: read it from the resource alone)."""
    for element in PATIENT_ELEMENTS:
        value = resource.get(element)
        if isinstance(value, dict):
            return patients.get(value.get("reference"))  # type: ignore[arg-type]
    return None


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
