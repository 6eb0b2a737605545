"""Report links: a card's link to the trend page of the assessment behind it (`UI_REPORT_LINKS`).

Kept apart from the page's routes so the CDS Hooks routes can add links without importing the page.
The link names a stored trend by an unguessable, expiring token (see `trend.report_store`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, current_app

from ..assessment_model import AssessmentRun
from ..trend.assessed import trends_of
from ..trend.report_store import ReportStore
from .app_state import app_state

_REPORTS = "calcinosis_ui_reports"


def open_report_store(app: Flask) -> None:
    """Open the store of reports when report links are on (off: no store, no links)."""
    settings = app.config["CALCINOSIS"]
    if settings.get("UI_REPORT_LINKS"):
        path = settings.get("UI_REPORT_DB") or str(Path(settings["CDS_FEEDBACK_DB"]).with_name("ui-reports.sqlite3"))
        app.extensions[_REPORTS] = ReportStore(path, settings["UI_REPORT_TTL_SECONDS"])


def report_store(app: Flask | None = None) -> ReportStore | None:
    """The store of reports cards link to; None when report links are off."""
    return (app or current_app).extensions.get(_REPORTS)


def link_cards_to_report(body: dict[str, Any], bundle: object, run: AssessmentRun, patient_id: str,
                         base_url: str) -> None:
    """Add to every card a link to the trend page of this assessment (report links on, cards issued).

    Called only for hook calls that passed the hook's own checks (the JWT, the request's validity).
    """
    store = report_store()
    cards = body.get("cards") or []
    if store is None or not cards:
        return
    state = app_state()
    trends = [item for item in trends_of(state.assessor, bundle, run, state.settings)
              if item.patient_reference.rsplit("/", 1)[-1].rsplit(":", 1)[-1] == patient_id]
    if not trends:
        return
    token = store.put(trends[0].as_json())
    minutes = max(1, store.ttl_seconds // 60)
    link = {"label": f"Calcium-phosphate trend (link valid {minutes} min)",
            "url": f"{base_url}/ui/reports/{token}", "type": "absolute"}
    for card in cards:
        card.setdefault("links", []).append(dict(link))
