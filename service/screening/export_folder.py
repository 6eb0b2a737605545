"""What an export folder holds: the files written, the issues found, and the record that says it is whole.

A download writes `<Type>.ndjson`, `<Type>.2.ndjson`, ... beside `errors/` (the server's error files) and
finally `export-manifest.json`, the record of what was exported (no file URLs: they may carry
signatures). The record is written last, so its presence says the folder holds a whole export, which
a resumed screen reuses instead of asking the server again. Issues are shaped as the screen's own
issues.ndjson lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import orjson

from .export_answers import issue_text

ERROR_FOLDER = "errors"
MANIFEST_FILE = "export-manifest.json"
EXPORT_FOLDER = "export"  # where a screen of a server keeps the downloaded export, inside its output folder


@dataclass(frozen=True)
class DownloadedFile:
    """One file written: its resource type, its name inside the export folder, bytes and lines."""

    resource_type: str
    name: str
    size: int
    lines: int


@dataclass
class ExportResult:
    """What an export left in its folder, and the issues its error files (and checks) reported."""

    folder: Path
    files: list[DownloadedFile] = field(default_factory=list)
    error_files: list[DownloadedFile] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    transaction_time: str | None = None
    polls: int = 0
    request: str | None = None  # the kick-off URL (no token): a resumed screen checks it asked the same

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.files) + sum(item.size for item in self.error_files)


def export_issue(severity: str, code: str, file: str | None, line: int | None,
                 diagnostics: str) -> dict[str, Any]:
    """An issues.ndjson line shaped as the screen's own: `source` is 'file:line' (or the file) in the export folder."""
    issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if file is not None:
        issue["source"] = f"{file}:{line}" if line is not None else file
    return issue


def error_file_issues(path: Path, name: str) -> list[dict[str, Any]]:
    """One issue per OperationOutcome issue of an export error file (and per line that is not one)."""
    issues: list[dict[str, Any]] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                outcome = orjson.loads(line)
            except orjson.JSONDecodeError:
                issues.append(export_issue("error", "structure", name, number, "an error file line that is not JSON"))
                continue
            entries = outcome.get("issue") if isinstance(outcome, dict) else None
            if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome" or \
                    not isinstance(entries, list):
                issues.append(export_issue("error", "structure", name, number,
                                           "an error file line that is not an OperationOutcome"))
                continue
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                severity = entry.get("severity") if entry.get("severity") in (
                    "fatal", "error", "warning", "information") else "error"
                code = entry.get("code") if isinstance(entry.get("code"), str) else "exception"
                issues.append(export_issue(severity, code, name, number,
                                           "the FHIR server reported: " + (issue_text(entry) or "an unspecified problem")))
    return issues


def write_export_record(dest: Path, manifest: Mapping[str, Any], result: ExportResult) -> None:
    """What was exported, without the server's file URLs (they may carry signatures): written last, so its
    presence says the folder holds a whole export."""
    transaction_time = manifest.get("transactionTime")
    result.transaction_time = transaction_time if isinstance(transaction_time, str) else None
    record = {
        "request": result.request,
        "transactionTime": result.transaction_time,
        "requiresAccessToken": manifest.get("requiresAccessToken") is True,
        "output": [{"type": item.resource_type, "file": item.name, "bytes": item.size, "lines": item.lines}
                   for item in result.files],
        "error": [{"type": item.resource_type, "file": item.name, "bytes": item.size, "lines": item.lines}
                  for item in result.error_files],
        "issues": result.issues,
    }
    (dest / MANIFEST_FILE).write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))


def read_finished_export(dest: Path) -> ExportResult | None:
    """The export a folder holds when its download finished (the record is written last), else None.

    OSError or ValueError when the record is there but cannot be read."""
    try:
        record = orjson.loads((Path(dest) / MANIFEST_FILE).read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError as error:
        raise ValueError(f"{Path(dest) / MANIFEST_FILE} is not JSON") from error

    def files(key: str) -> list[DownloadedFile]:
        return [DownloadedFile(item["type"], item["file"], item["bytes"], item["lines"]) for item in record.get(key, [])]

    return ExportResult(folder=Path(dest), files=files("output"), error_files=files("error"),
                        issues=list(record.get("issues") or []), transaction_time=record.get("transactionTime"),
                        request=record.get("request"))


def clear_unfinished_export(dest: Path) -> None:
    """Remove what an interrupted download left (only the files an export writes), so it can start again."""
    dest = Path(dest)
    for folder in (dest, dest / ERROR_FOLDER):
        for pattern in ("*.ndjson", "*.ndjson.part"):
            for path in folder.glob(pattern):
                path.unlink()
    if (dest / ERROR_FOLDER).is_dir() and not any((dest / ERROR_FOLDER).iterdir()):
        (dest / ERROR_FOLDER).rmdir()
