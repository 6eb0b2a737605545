"""The `calcinosis-cds` command as an operator or knowledge engineer uses it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import assess_fixture
from service.cli import main
from service.config import load_config

NOW = "2026-11-15T09:00:00Z"


def _fixture(prefix: str) -> str:
    return str(assess_fixture(prefix))


def test_assess_prints_a_readable_assessment(capsys):
    assert main(["assess", _fixture("04"), "--now", NOW]) == 0
    out = capsys.readouterr().out
    types = out.split("Types, most likely first\n")[1].split("\n\n")[0].splitlines()
    assert types[2].split()[:2] == ["Metastatic", "high"]  # most likely first, one line per type
    assert len(types) == 2 + 5
    assert "\nMetastatic calcinosis cutis: high likelihood\n" in out  # the leading type told in full
    assert "Ca x P 82.1 mg2/dL2 exceeds 70 mg2/dL2" in " ".join(out.split())  # the numbers used
    assert "Calcium (total): 10.8 mg/dL, flag H, on 2026-11-09" in out
    recommended = out.split("Recommended tests")[1].split("Already available")[0]
    assert "(LOINC 58410-2)" in recommended and "(LOINC 2777-1)" not in recommended
    assert "Source: " not in out and " ".join(out.split()).count("Pathophysiology, Metastatic Calcification") == 1


def test_assess_names_resources_by_short_ids_within_100_columns(capsys):
    assert main(["assess", _fixture("04"), "--now", NOW]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Calcinosis cutis assessment: urn:uuid:170cbf6b…\n")
    assert "170cbf6b-56f0-50c0-b30f-2f94fc292362" not in out
    assert "from urn:uuid:91cac4f4…" in out  # the calcium result, by its short id
    assert "Based on: Parathyroid hormone (intact), 25-hydroxyvitamin D" in out  # named where known
    assert max(len(line) for line in out.splitlines()) <= 100


@pytest.mark.parametrize("prefix", [f"{n:02d}" for n in range(1, 21)])
def test_every_fixture_summary_stays_within_100_columns(prefix, capsys):
    assert main(["assess", _fixture(prefix), "--now", NOW]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert not re.search(r"urn:uuid:[0-9a-f]{8}-", out)  # no full uuid


def test_assess_json_prints_the_result_bundle(capsys):
    assert main(["assess", _fixture("04"), "--now", NOW, "--format", "json"]) == 0
    bundle = json.loads(capsys.readouterr().out)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"


def test_assess_reads_standard_input(capsys, monkeypatch):
    import io
    import sys

    data = Path(_fixture("13")).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["assess", "-", "--now", NOW]) == 0
    out = capsys.readouterr().out
    recommended = out.split("Recommended tests")[1]
    for code in ("58410-2", "24321-2", "17861-6", "2777-1", "2731-8", "62292-8"):  # no labs: whole baseline
        assert f"(LOINC {code})" in recommended


def test_assess_of_a_patient_instead_of_a_bundle_fails_with_a_clear_message(tmp_path, capsys):
    path = tmp_path / "patient.json"
    path.write_text('{"resourceType": "Patient", "id": "x"}')
    assert main(["assess", str(path)]) == 1
    assert "Bundle" in capsys.readouterr().err


def test_assess_of_a_missing_file_fails_cleanly(tmp_path, capsys):
    assert main(["assess", str(tmp_path / "nope.json")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_rules_check_passes_on_the_shipped_library(capsys):
    assert main(["rules", "check"]) == 0
    assert capsys.readouterr().out.strip() == f"ok: {load_config()['RULE_LIBRARY']}"


def test_rules_check_points_at_the_broken_line_and_column(tmp_path, capsys):
    shipped = Path(load_config()["RULE_LIBRARY"])
    broken = tmp_path / shipped.name
    lines = shipped.read_text(encoding="utf-8").splitlines()
    # Misspell the first use of First( after the header: an unknown function must fail at load.
    index = next(i for i, line in enumerate(lines) if "First(" in line and not line.lstrip().startswith("//"))
    column = lines[index].index("First(") + 1
    lines[index] = lines[index].replace("First(", "Frist(", 1)
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["rules", "check", str(broken)]) == 1
    err = capsys.readouterr().err
    assert f"{broken}:{index + 1}:{column}" in err
    assert "Frist" in err and "First" in err  # names the unknown function and suggests the right one


def test_rules_check_reports_a_syntax_error_position(tmp_path, capsys):
    shipped = Path(load_config()["RULE_LIBRARY"])
    broken = tmp_path / shipped.name
    lines = shipped.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("define "))
    lines.insert(index, "define \"Dangling\": (1 + ")
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["rules", "check", str(broken)]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(broken))}:{index + 2}:\d+", err) or re.search(
        rf"{re.escape(str(broken))}:{index + 1}:\d+", err), err


def test_rules_eval_prints_the_value_and_its_evidence(capsys):
    assert main(["rules", "eval", "--define", "Metastatic", _fixture("04"), "--now", NOW]) == 0
    out = capsys.readouterr().out
    assert "metastatic" in out
    assert "Observation/" in out or "urn:uuid:" in out


def test_rules_eval_of_an_unknown_define_fails(capsys):
    assert main(["rules", "eval", "--define", "No such thing", _fixture("04")]) == 1
    assert "no define" in capsys.readouterr().err


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as exit_info:
        main(["assess"])
    assert exit_info.value.code == 2


def test_a_malformed_now_is_a_usage_error_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["assess", _fixture("04"), "--now", "yesterday"])
    assert exit_info.value.code == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_assess_with_a_broken_rule_library_says_where_without_a_traceback(tmp_path, capsys):
    broken = tmp_path / "broken.cql"
    broken.write_text("library Broken version '1'\nusing CalcinosisFacts version '1.0.0'\ncontext Patient\n"
                      "define \"A\": Frist({1})\n", encoding="utf-8")
    assert main(["assess", _fixture("04"), "--rules", str(broken)]) == 1
    err = capsys.readouterr().err
    assert f"{broken}:4:13" in err and "Traceback" not in err


def test_assess_with_a_missing_rule_library_fails_cleanly(tmp_path, capsys):
    assert main(["assess", _fixture("04"), "--rules", str(tmp_path / "none.cql")]) == 1
    err = capsys.readouterr().err
    assert "cannot read" in err and "Traceback" not in err


def test_rules_eval_of_invalid_json_fails_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["rules", "eval", "--define", "Metastatic", str(bad)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_a_bad_configuration_value_is_named_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("CALCINOSIS_MAX_BODY_BYTES", "20MB")
    assert main(["assess", _fixture("04")]) == 1
    err = capsys.readouterr().err
    assert "MAX_BODY_BYTES" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_lookback_days_must_be_positive(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["assess", _fixture("04"), "--lookback-days", value])
    assert exit_info.value.code == 2
