"""Shared test fixtures: the app, its client, and the background material beside the project."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(PROJECT_ROOT))

FIXTURES_DIR = PROJECT_ROOT / "fhir_fixtures"
# Every fixture's expected output was produced at this instant; tests pass it as `now`.
FIXTURE_NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)


def shared_dir() -> Path:
    """The shared background folder beside the project (seeds, codes, Synthea samples)."""
    return Path(os.environ.get("CALCINOSIS_SHARED_DIR", PROJECT_ROOT.parent / "shared"))


@pytest.fixture
def app(tmp_path):
    from tests.support.cds_app import make_app

    return make_app({
        "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
        "CDS_REQUIRE_JWT": False,
    })


@pytest.fixture
def client(app):
    return app.test_client()


def assess_fixture(prefix: str) -> Path:
    """The $assess input bundle whose file name starts with `prefix` (e.g. "04"), not its golden."""
    matches = [p for p in sorted((FIXTURES_DIR / "assess").glob(f"{prefix}-*.json"))
               if not p.name.endswith(".expected.json")]
    assert len(matches) == 1, f"expected one fixture {prefix}-*.json, found {matches}"
    return matches[0]


def pytest_collection_modifyitems(session, config, items):
    """Say, before the run starts, that the real FHIR server will be installed (a one-time ~90 s stall)."""
    if not any("test_cds_real_fhir_server.py" in item.nodeid for item in items):
        return
    from tests.support.real_fhir_server import install_notice

    notice = install_notice()
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if notice and reporter is not None:
        reporter.write_line(f"NOTE: {notice}", yellow=True, bold=True)
