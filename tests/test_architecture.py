"""The engine and the knowledge stay free of Flask; the engine knows nothing of calcinosis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_the_engine_does_not_import_flask():
    loaded = _modules_loaded_by("import service.cql_like")
    assert "flask" not in loaded and "werkzeug" not in loaded


def test_importing_the_assessment_core_does_not_import_flask():
    loaded = _modules_loaded_by("import service.pipeline.assess, service.fhir_outputs.result_bundle")
    assert "flask" not in loaded


def test_the_engine_source_never_mentions_calcinosis_or_flask():
    for path in (ROOT / "service" / "cql_like").rglob("*"):
        if path.suffix in {".py", ".lark", ".json"}:
            text = path.read_text(encoding="utf-8").lower()
            assert "calcinosis" not in text, path
            assert "import flask" not in text and "from flask" not in text, path
