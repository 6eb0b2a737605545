"""The output folder of a screening run, written from parts so that any engine can fill it.

An engine writes the results of each piece of work (a shard of the local engine, a partition of
Spark) with a `PartWriter` into a part folder of its own; `finish` writes the part's marker last,
atomically, so a part with a marker is complete and is never redone by a resumed run.
`assemble` then joins the parts, in the order given, into the files a reader expects:

    RiskAssessment.ndjson, CarePlan.ndjson, ServiceRequest.ndjson   one resource a line (Bulk Data style)
    summary.csv, summary.parquet                                    one row per patient (`summary_row`)
    issues.ndjson                                                   every problem, with file and line
    report.html                                                     the page for the team that asked

`ScreenWriter` is the one-part case: PatientScreen results in, the folder out. The same parts in
the same order always give the same bytes, which is what makes a resumed run match an
uninterrupted one.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import orjson

from .patient_screen import OUTPUT_TYPES, PatientScreen
from .report_tally import ReportTally, new_tally
from .summary_row import SUMMARY_COLUMNS

RESOURCE_FILES = tuple(f"{kind}.ndjson" for kind in OUTPUT_TYPES)
SUMMARY_PART = "summary.ndjson"
ISSUES_FILE = "issues.ndjson"
PART_MARKER = "done.json"
REPORT_FILE = "report.html"
_LIST_SEPARATOR = "; "  # how a list (the missing tests) is written in one CSV cell
_PARQUET_BATCH = 1_000
_LINE = orjson.OPT_APPEND_NEWLINE  # one JSON a line, the newline written by the encoder
# A chart with an axis and text, drawn once to start the renderer before the report is (see `prepare_report`).
_WARM_UP_CHART = {"data": {"values": [{"x": "a", "y": 1}]}, "mark": "bar",
                  "encoding": {"x": {"field": "x", "type": "nominal"}, "y": {"field": "y", "type": "quantitative"}}}


class PartWriter:
    """Writes one part's results into `part_dir`; complete only once `finish` has written the marker."""

    def __init__(self, part_dir: Path) -> None:
        self.part_dir = Path(part_dir)
        if self.part_dir.exists():
            shutil.rmtree(self.part_dir)  # an unfinished earlier attempt: start it again
        self.part_dir.mkdir(parents=True)
        names = (*RESOURCE_FILES, SUMMARY_PART, ISSUES_FILE)
        self._files = {name: open(self.part_dir / name, "wb") for name in names}
        self.counts: Counter[str] = Counter()

    def add(self, screen: PatientScreen) -> None:
        """The outputs, summary row and problems of one patient."""
        for kind in OUTPUT_TYPES:
            resources = screen.outputs.get(kind, ())
            if resources:
                self._files[f"{kind}.ndjson"].write(b"".join(orjson.dumps(r, option=_LINE) for r in resources))
                self.counts[kind] += len(resources)
        self._files[SUMMARY_PART].write(orjson.dumps(screen.summary, option=_LINE))
        self.counts["patients"] += 1
        for issue in screen.issues:
            self.add_issue(issue)

    def add_issue(self, issue: dict[str, Any]) -> None:
        """A problem not tied to one patient's assessment (a bad line, a resource with no patient)."""
        self._files[ISSUES_FILE].write(orjson.dumps(issue, option=_LINE))
        self.counts["issues"] += 1
        self.counts["problems"] += is_problem(issue)

    def finish(self) -> dict[str, int]:
        """Flush the part to disk, then mark it complete (atomically). Returns its counts."""
        handles = list(self._files.values())
        for handle in handles:
            handle.flush()
        # durable before the marker says so; the disk's waits overlap (one after the other, the worker's
        # core idled through each in turn)
        with ThreadPoolExecutor(len(handles)) as flushing:
            list(flushing.map(os.fsync, [handle.fileno() for handle in handles]))
        for handle in handles:
            handle.close()
        counts = dict(sorted(self.counts.items()))
        write_atomically(self.part_dir / PART_MARKER, orjson.dumps(counts))
        return counts

    def abandon(self) -> None:
        """Close without marking: the part will be written again."""
        for handle in self._files.values():
            handle.close()

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is not None:
            self.abandon()


def is_problem(issue: dict[str, Any]) -> bool:
    """An issue that is a problem with the data; an information note (shared resources not assessed) is not."""
    return issue.get("severity") != "information"


def part_counts(part_dir: Path) -> dict[str, int] | None:
    """The counts of a complete part, or None when the part was not finished."""
    try:
        return orjson.loads((Path(part_dir) / PART_MARKER).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the whole new one, never a part."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def assemble(part_dirs: Sequence[Path], out_dir: Path, *, run_facts: dict[str, Any] | None = None,
             leading_issues: Iterable[dict[str, Any]] = ()) -> dict[str, int]:
    """Join complete parts, in the order given, into the output files of `out_dir`. Returns the totals
    (patients, issues, problems: the issues that are not information notes, resources by type).

    `leading_issues` (problems found before any part, e.g. reading the source) open issues.ndjson.
    `run_facts` are shown by the report (see `report.RUN_FACTS`); give only facts that the same
    run always has (not the time it took) when a resumed run must write the same bytes.
    """
    for part in part_dirs:
        if part_counts(part) is None:
            raise ValueError(f"part {part} is not complete")
    assembler = Assembler(out_dir, run_facts=run_facts, leading_issues=leading_issues)
    try:
        for part in part_dirs:
            assembler.add(part)
    except BaseException:
        assembler.abandon()
        raise
    return assembler.finish()


class Assembler:
    """Joins complete parts into the output files one at a time, in the order they are added, so that an
    engine can join each part as soon as it and those before it are done; `finish` writes the report
    and puts every file in place (`assemble` is the same at once, for parts all done)."""

    def __init__(self, out_dir: Path, *, run_facts: dict[str, Any] | None = None,
                 leading_issues: Iterable[dict[str, Any]] = ()) -> None:
        import pyarrow.parquet as pq

        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run_facts = dict(run_facts or {})
        self.totals: Counter[str] = Counter()
        self.report_counts: ReportTally = new_tally()  # the report's, row by row as the parts are joined
        self.rows = 0
        self._batch: list[dict[str, Any]] = []
        self._temporaries = {name: self.out_dir / f"{name}.tmp"
                             for name in (*RESOURCE_FILES, ISSUES_FILE, "summary.csv", "summary.parquet")}
        self._files = {name: open(self._temporaries[name], "wb") for name in (*RESOURCE_FILES, ISSUES_FILE)}
        leading_issues = list(leading_issues)
        self._files[ISSUES_FILE].write(b"".join(orjson.dumps(issue) + b"\n" for issue in leading_issues))
        self.totals["issues"] += len(leading_issues)
        self.totals["problems"] += sum(is_problem(issue) for issue in leading_issues)
        self._csv_file = open(self._temporaries["summary.csv"], "w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._csv_file, lineterminator="\n")
        self._csv.writerow(SUMMARY_COLUMNS)
        self._schema = summary_schema()
        self._parquet = pq.ParquetWriter(self._temporaries["summary.parquet"], self._schema)

    def add(self, part: Path) -> None:
        """Append one complete part to every output file."""
        part = Path(part)
        counts = part_counts(part)
        if counts is None:
            raise ValueError(f"part {part} is not complete")
        self.totals.update(counts)
        for name, out in self._files.items():
            with open(part / name, "rb") as source:
                shutil.copyfileobj(source, out, 1 << 20)
        for row in read_rows([part / SUMMARY_PART]):
            self.report_counts.add(row)
            self._csv.writerow(csv_cells(row))
            self.rows += 1
            self._batch.append(row)
            if len(self._batch) >= _PARQUET_BATCH:
                self._write_batch()

    def prepare_report(self) -> None:
        """Start the charts' renderer now (vl-convert starts its JavaScript engine on the first chart: about
        half a second), so that when the last part is joined only the report's own charts are left."""
        from ..trend.render import to_svg

        to_svg(_WARM_UP_CHART)

    def _write_batch(self) -> None:
        import pyarrow as pa

        self._parquet.write_table(pa.Table.from_pylist(self._batch, schema=self._schema))
        self._batch = []

    def finish(self) -> dict[str, int]:
        """Close the files, write the report from the parts' rows and put every file in place; returns the totals."""
        if self._batch or not self.rows:
            self._write_batch()
        self._close()
        for name, temporary in self._temporaries.items():
            os.replace(temporary, self.out_dir / name)
        facts = dict(self.run_facts)
        facts.setdefault("patients", self.rows)
        facts.setdefault("issues", self.totals["problems"])  # the report's "problems found in the data"
        # the rows were tallied as each part was joined (never held): only the page is left to write
        from .report import write_tallied

        write_tallied(self.report_counts, self.out_dir / REPORT_FILE, facts)
        return dict(sorted(self.totals.items()))

    def abandon(self) -> None:
        """Close without writing any output file."""
        self._close()
        for temporary in self._temporaries.values():
            temporary.unlink(missing_ok=True)

    def _close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._csv_file.close()
        self._parquet.close()


def read_rows(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """The summary rows of the parts, in order."""
    for path in paths:
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    yield orjson.loads(line)


def summary_schema() -> Any:
    """The Arrow schema of summary.parquet, from `SUMMARY_COLUMNS`."""
    import pyarrow as pa

    types = {"str": pa.string(), "float": pa.float64(), "int": pa.int64(), "list[str]": pa.list_(pa.string())}
    return pa.schema([pa.field(name, types[kind.rstrip("?")], nullable=kind.endswith("?"))
                      for name, kind in SUMMARY_COLUMNS.items()])


def csv_cells(row: dict[str, Any]) -> list[str]:
    """A row as CSV cells: None empty, a list joined with '; ', a float as Python writes it."""
    cells = []
    for column in SUMMARY_COLUMNS:
        value = row.get(column)
        if value is None:
            cells.append("")
        elif isinstance(value, list):
            cells.append(_LIST_SEPARATOR.join(value))
        else:
            cells.append(str(value))
    return cells


def write_report(rows: Iterable[dict[str, Any]], out_path: Path, run_facts: dict[str, Any]) -> None:
    """report.html, from the summary rows (read once, in order)."""
    from .report import write_report as write_page

    write_page(rows, out_path, run_facts)


class ScreenWriter:
    """PatientScreen results in, the whole output folder out (one part, assembled on `close`)."""

    def __init__(self, out_dir: Path, *, run_facts: dict[str, Any] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.run_facts = run_facts
        self._part = PartWriter(self.out_dir / ".parts" / "all")

    def add(self, screen: PatientScreen) -> None:
        self._part.add(screen)

    def add_issue(self, issue: dict[str, Any]) -> None:
        self._part.add_issue(issue)

    def close(self) -> dict[str, int]:
        """Write the output files; returns the totals (patients, issues, resources by type)."""
        self._part.finish()
        totals = assemble([self._part.part_dir], self.out_dir, run_facts=self.run_facts)
        shutil.rmtree(self.out_dir / ".parts")
        return totals

    def __enter__(self) -> "ScreenWriter":
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self._part.abandon()
