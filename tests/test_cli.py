"""The `calcinosis-cds` command as an operator or knowledge engineer uses it."""

from __future__ import annotations

import json
import re
import shutil
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
    assert "metastatic" in out.lower()
    assert "mg/dL" in out
    assert "2777-1" not in out or "phosphate" in out.lower()


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
    assert "recommend" in capsys.readouterr().out.lower()


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
    assert "ok" in capsys.readouterr().out


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
