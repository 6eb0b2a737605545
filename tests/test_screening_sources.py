"""Reading a screening source and partitioning it by patient: order, places of problems, shards."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from service.screening.sharding import MIN_SHARDS, partition, read_shard, shard_count_for, shard_of, shard_path
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
        for patient_id, lines in read_shard(shard_path(tmp_path / "shards", index)):
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
    groups = dict(read_shard(shard_path(tmp_path / "shards", shard_of("p-local", MIN_SHARDS))))
    assert [origin for origin, _url, _raw in groups["p-local"]] == [f"b.json#Bundle.entry[{n}]" for n in range(3)]
    assert [url for _origin, url, _raw in groups["p-local"]] == ["urn:uuid:aaaa", "urn:uuid:bbbb", None]
