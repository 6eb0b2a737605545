"""Reading a screening source and partitioning it by patient: order, places of problems, shards."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from service.screening.sharding import MIN_SHARDS, partition, read_shard, shard_count_for, shard_of
from service.screening.sources import Source, SourceItem, SourceProblem, natural_key


def _obs(rid: str, patient: str) -> bytes:
    return orjson.dumps({"resourceType": "Observation", "id": rid, "subject": {"reference": f"Patient/{patient}"}})


def test_files_are_read_in_name_order_with_numbers_as_numbers():
    names = ["Observation.10.ndjson", "Observation.2.ndjson", "Condition.ndjson", "Observation.ndjson"]
    assert sorted(names, key=natural_key) == ["Condition.ndjson", "Observation.2.ndjson", "Observation.10.ndjson",
                                              "Observation.ndjson"]


def test_an_export_folder_ignores_the_manifest_and_the_error_files(tmp_path):
    (tmp_path / "errors").mkdir()
    (tmp_path / "errors" / "OperationOutcome.ndjson").write_bytes(b'{"resourceType": "OperationOutcome"}\n')
    (tmp_path / "export-manifest.json").write_bytes(b"{}")
    (tmp_path / "Patient.ndjson").write_bytes(b'{"resourceType": "Patient", "id": "p1"}\n')
    source = Source(tmp_path)
    assert source.kind == "ndjson" and [p.name for p in source.files] == ["Patient.ndjson"]


def test_lines_problems_and_places(tmp_path):
    body = b"\r\n".join([_obs("o1", "p1"), b"", b"{not json", b"42", b'{"id": "x"}', _obs("o2", "p2")]) + b"\r\n"
    with gzip.open(tmp_path / "Observation.ndjson.gz", "wb") as handle:
        handle.write(body)
    records = list(Source(tmp_path).records())
    assert [type(r).__name__ for r in records] == ["SourceItem", "SourceProblem", "SourceProblem", "SourceProblem",
                                                    "SourceItem"]
    assert [r.origin for r in records] == [f"Observation.ndjson.gz:{n}" for n in (1, 3, 4, 5, 6)]
    assert records[0].raw == _obs("o1", "p1")  # the line as written, without its line end
    assert "not valid JSON" in records[1].diagnostics
    assert records[2].diagnostics == "a JSON int, not a resource"
    assert records[3].issue() == {"severity": "error", "code": "structure",
                                  "diagnostics": "a JSON object without resourceType",
                                  "source": "Observation.ndjson.gz:5"}


def test_a_bundle_folder_names_entries(tmp_path):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1"}},
        {"request": {"method": "GET"}},
        {"resource": {"resourceType": "Observation", "id": "o1", "subject": {"reference": "urn:uuid:p1"}}},
    ]}
    (tmp_path / "a.json").write_bytes(orjson.dumps(bundle))
    (tmp_path / "b.json.gz").write_bytes(gzip.compress(orjson.dumps({"resourceType": "Patient", "id": "p2"})))
    records = list(Source(tmp_path).records())
    assert [r.origin for r in records] == ["a.json#Bundle.entry[0]", "a.json#Bundle.entry[1]",
                                           "a.json#Bundle.entry[2]", "b.json.gz"]
    assert isinstance(records[1], SourceProblem) and records[1].diagnostics == "the entry holds no resource"
    assert isinstance(records[0], SourceItem) and records[0].full_url == "urn:uuid:p1"


def test_not_a_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        Source(tmp_path / "missing")


def test_a_patients_resources_land_in_one_shard_in_the_order_read(tmp_path):
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    (source_dir / "Patient.ndjson").write_bytes(b"\n".join(
        orjson.dumps({"resourceType": "Patient", "id": f"p{n}"}) for n in range(40)) + b"\n")
    (source_dir / "Observation.ndjson").write_bytes(b"\n".join(
        [_obs(f"o{n}", f"p{n % 40}") for n in range(120)]
        + [orjson.dumps({"resourceType": "Observation", "id": "lost"}),
           orjson.dumps({"resourceType": "Practitioner", "id": "dr"})]) + b"\n")
    source = Source(source_dir)
    shards = shard_count_for(source)
    assert shards == MIN_SHARDS
    result = partition(source, tmp_path / "shards", shards)
    assert (result.resources, result.patients) == (160, 40)
    seen: dict[str, list[str]] = {}
    for index in range(shards):
        for patient_id, lines in read_shard(tmp_path / "shards", result.pieces(index)):
            assert shard_of(patient_id, shards) == index and patient_id not in seen
            seen[patient_id] = [origin for origin, _url, _raw in lines]
    assert len(seen) == 40
    assert seen["p7"] == ["Observation.ndjson:8", "Observation.ndjson:48", "Observation.ndjson:88", "Patient.ndjson:8"]
    lost = {issue["diagnostics"].split(" resource(s)")[0]: issue for issue in result.problems}
    assert lost["1 Observation"]["severity"] == "warning" and lost["1 Observation"]["source"] == "Observation.ndjson:121"
    assert lost["1 Practitioner"]["severity"] == "information"


def test_the_shard_count_follows_the_size_not_the_machine(tmp_path):
    (tmp_path / "Observation.ndjson").write_bytes(b" " * (40 * 1024 * 1024))
    assert shard_count_for(Source(tmp_path)) == MIN_SHARDS
    (tmp_path / "Observation.2.ndjson").write_bytes(b" " * (100 * 1024 * 1024))
    assert shard_count_for(Source(tmp_path)) == 18  # 140 MiB in shards of 8 MiB


def test_in_a_bundle_a_reference_to_a_patients_entry_names_that_patient(tmp_path):
    """A Bundle whose Patient's fullUrl is not urn:uuid:<its id>: its resources still go to it."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:aaaa", "resource": {"resourceType": "Patient", "id": "p-local"}},
        {"fullUrl": "urn:uuid:bbbb", "resource": {"resourceType": "Condition", "id": "c1",
                                                  "subject": {"reference": "urn:uuid:aaaa"}}},
        {"resource": {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p-local"}}},
    ]}
    (tmp_path / "b.json").write_bytes(orjson.dumps(bundle))
    result = partition(Source(tmp_path), tmp_path / "shards", MIN_SHARDS)
    assert result.problems == []
    groups = dict(read_shard(tmp_path / "shards", result.pieces(shard_of("p-local", MIN_SHARDS))))
    assert [origin for origin, _url, _raw in groups["p-local"]] == [f"b.json#Bundle.entry[{n}]" for n in range(3)]
    assert [url for _origin, url, _raw in groups["p-local"]] == ["urn:uuid:aaaa", "urn:uuid:bbbb", None]


Groups = dict[int, list[tuple[str, list[tuple[str, bytes]]]]]


def _expected_shards(source: Source, shards: int) -> tuple[Groups, list[dict]]:
    """Each shard's patients (first seen first) with their (origin, JSON) lines, and the problems, from
    `Source.records` one by one."""
    from service.screening.patient_keys import patient_key_of

    by_shard: dict[int, dict[str, list[tuple[str, bytes]]]] = {}
    problems = []
    for record in source.records():
        if isinstance(record, SourceProblem):
            problems.append(record.issue())
            continue
        key = record.patient_key or patient_key_of(record.resource)
        if key:
            by_shard.setdefault(shard_of(key, shards), {}).setdefault(key, []).append((record.origin, record.raw))
    return {index: list(groups.items()) for index, groups in by_shard.items()}, problems


def _read_back(folder: Path, result, shards: int) -> Groups:
    found = {}
    for index in range(shards):
        groups = [(key, [(origin, raw) for origin, _url, raw in lines])
                  for key, lines in read_shard(folder, result.pieces(index))]
        if groups:
            found[index] = groups
    return found


@pytest.fixture()
def split_export(tmp_path) -> Path:
    """Lines of 30 patients over two plain files and a gzipped one, with bad lines, CRLF and blank lines."""
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "Patient.ndjson").write_bytes(b"\n".join(
        orjson.dumps({"resourceType": "Patient", "id": f"p{n}"}) for n in range(30)) + b"\n")
    observations = [_obs(f"o{n}", f"p{n % 30}") for n in range(400)]
    observations[57] = b"{not json"
    observations[233] = b""
    observations[301] = orjson.dumps({"resourceType": "Observation", "id": "lost"})
    (folder / "Observation.1.ndjson").write_bytes(b"\r\n".join(observations) + b"\r\n")
    (folder / "Observation.2.ndjson").write_bytes(b"\n".join(observations[:50]) + b"\n[1]")
    with gzip.open(folder / "Condition.ndjson.gz", "wb") as handle:
        handle.write(b"\n".join(orjson.dumps({"resourceType": "Condition", "id": f"c{n}",
                                              "subject": {"reference": f"Patient/p{n}"}}) for n in range(30)))
    return folder


def test_the_source_cut_in_ranges_and_partitioned_at_once_gives_the_lines_read_one_by_one(split_export, tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    from service.screening.sharding import plan_chunks

    source = Source(split_export)
    chunks = plan_chunks(source, target_bytes=2_000)  # ranges of a few lines each
    assert len(chunks) > 20 and any(segment.first_line > 1 for chunk in chunks for segment in chunk.segments)
    expected, problems = _expected_shards(source, MIN_SHARDS)
    whole = partition(source, tmp_path / "whole", MIN_SHARDS)
    with ProcessPoolExecutor(2) as pool:
        cut = partition(source, tmp_path / "cut", MIN_SHARDS, mapper=pool.map, chunks=chunks)
    for result, folder in ((whole, tmp_path / "whole"), (cut, tmp_path / "cut")):
        assert _read_back(folder, result, MIN_SHARDS) == expected
        assert (result.resources, result.patients) == (30 + 397 + 50 + 30, 30)
        assert result.problems[:-1] == problems  # then the resources that name no patient
        assert [issue["source"] for issue in result.problems] == [
            "Observation.1.ndjson:58", "Observation.2.ndjson:51", "Observation.1.ndjson:302"]
    assert cut.problems == whole.problems


def test_a_chunk_that_outgrows_memory_is_written_in_runs(split_export, tmp_path, monkeypatch):
    from service.screening import sharding

    source = Source(split_export)
    whole = partition(source, tmp_path / "whole", MIN_SHARDS)
    monkeypatch.setattr(sharding, "CHUNK_TARGET_BYTES", 500)
    runs = partition(source, tmp_path / "runs", MIN_SHARDS, chunks=sharding.plan_chunks(source, 10**9))
    assert len(runs.runs) > 10 and len(whole.runs) < len(runs.runs)
    assert _read_back(tmp_path / "runs", runs, MIN_SHARDS) == _read_back(tmp_path / "whole", whole, MIN_SHARDS)
    assert runs.problems == whole.problems


def test_line_ranges_cut_at_line_ends_and_count_lines(tmp_path):
    from service.screening.sources import line_ranges, ndjson_lines

    long_line = b"x" * 5_000
    body = b"\n".join([b"a1", b"b2", long_line, b"", b"c5", b"d6"] * 30)  # no line end at the very end
    path = tmp_path / "Observation.ndjson"
    path.write_bytes(body)
    ranges = list(line_ranges(path, 1_000))
    assert ranges[0][0] == 0 and ranges[-1][1] == len(body)
    assert all(end == next_start for (_s, end, _l), (next_start, _e, _n) in zip(ranges, ranges[1:]))
    assert all(body[end - 1:end] == b"\n" for _start, end, _line in ranges[:-1])
    read = [line for start, end, first in ranges for line in ndjson_lines(path, start, end, first)]
    assert read == list(ndjson_lines(path))
    assert read[2] == (3, long_line) and read[-1] == (180, b"d6")


def test_a_resource_of_a_type_the_rules_never_read_reaches_its_shard_as_its_type_and_id(tmp_path):
    """The partition has decoded every line: of a type the rules never read, only what the pipeline reads
    of it (type and id) goes to the shard, at its place; what cannot be read is still reported there."""
    from datetime import datetime, timezone

    from service.pipeline.assess import get_assessor
    from service.screening.local_engine import screen_lines
    from service.screening.patient_screen import screen_patient

    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
                 "subject": {"reference": "Patient/p1"}}
    report = {"resourceType": "DiagnosticReport", "id": "dr1", "status": "final", "code": {"text": "panel"},
              "subject": {"reference": "Patient/p1"},
              "contained": [{"resourceType": "Observation", "id": "in", "status": "final", "code": {"text": "Ca"}}]}
    lines = [orjson.dumps({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"}),
             orjson.dumps(encounter), b'{"resourceType": "Claim", "patient": ', orjson.dumps(report),
             orjson.dumps({"resourceType": "Claim", "id": "c9"}),
             orjson.dumps({"resourceType": "Claim", "id": "c1", "patient": {"reference": "Patient/p1"}, "total": 3})]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Mixed.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    result = partition(Source(tmp_path / "src"), tmp_path / "shards", MIN_SHARDS)
    assert [(issue["source"], issue["severity"]) for issue in result.problems] == [
        ("Mixed.ndjson:3", "error"), ("Mixed.ndjson:5", "information")]  # the bad line; the Claim of no patient
    shard = dict(read_shard(tmp_path / "shards", result.pieces(shard_of("p1", MIN_SHARDS))))["p1"]
    assert [origin for origin, _url, _raw in shard] == ["Mixed.ndjson:1", "Mixed.ndjson:2", "Mixed.ndjson:4",
                                                        "Mixed.ndjson:6"]
    assert [orjson.loads(raw) for _origin, _url, raw in shard] == [
        orjson.loads(lines[0]), {"resourceType": "Encounter", "id": "e1"}, report, {"resourceType": "Claim", "id": "c1"}]
    now = datetime(2026, 11, 15, tzinfo=timezone.utc)
    whole = screen_patient("p1", [orjson.loads(lines[n]) for n in (0, 1, 3, 5)], get_assessor(), now=now,
                           origins=[origin for origin, _url, _raw in shard])
    from_shard = screen_lines("p1", shard, get_assessor(), now)
    assert (from_shard.outputs, from_shard.summary, from_shard.issues) == (whole.outputs, whole.summary, whole.issues)
    assert any(issue.get("source") == "Mixed.ndjson:4" and "DiagnosticReport" in issue["diagnostics"]
               for issue in from_shard.issues)
