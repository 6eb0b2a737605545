"""The /ui/ page: try a Bundle (as `$assess` or as a CDS Hooks call) and see the laboratory trend.

Everything the page loads is served from here (its script, its style, the vendored Vega build);
nothing comes from another origin, and the Content-Security-Policy says so to the browser. The
page calls the service's own `/fhir/$assess`; the routes below add what a page needs beside it:
the shipped example bundles, the trend (as data and a Vega spec, or as SVG), a CDS Hooks request
built from a Bundle, and, only when `UI_SANDBOX` is on, a same-origin way to run that request
without a client JWT (the real `/cds-services` routes keep requiring one). Report links, when
`UI_REPORT_LINKS` is on, reach a stored trend by an unguessable, expiring token; the token is kept
out of the request log.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from flask import Blueprint, Flask, Response, current_app, g, request, send_from_directory

from ..assessment_model import AssessmentRun
from ..config import PACKAGE_DIR
from ..errors import InputError
from ..hooks import hook_call
from ..hooks.example_request import build_hook_request, draft_order_choices
from ..trend.assessed import trends_of
from ..trend.chart_spec import trend_spec
from ..trend.render import to_svg, to_vega
from ..trend.series import PatientTrend
from .app_state import app_state
from .http_io import json_response, read_json_body
from .report_links import open_report_store, report_store

log = logging.getLogger(__name__)

blueprint = Blueprint("ui", __name__, url_prefix="/ui")
STATIC_DIR = Path(__file__).with_name("static") / "ui"
REPOSITORY_FIXTURES = PACKAGE_DIR.parent / "fhir_fixtures" / "assess"
_FIXTURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.json$")
# Same origin only: no CDN, no inline script; Vega's SVG renderer sets style attributes, hence
# 'unsafe-inline' for styles (never for scripts).
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'none'")
SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
DEFAULT_WIDTH = 640


def init_app(app: Flask) -> None:
    """Register the page, and open the report store when report links are on."""
    settings = app.config["CALCINOSIS"]
    open_report_store(app)
    if settings.get("UI_SANDBOX"):
        log.warning("UI_SANDBOX is on: /ui/try runs CDS Hooks calls without a client JWT (development only)")
    app.register_blueprint(blueprint)


def _settings() -> Mapping[str, Any]:
    return current_app.config["CALCINOSIS"]


@blueprint.before_request
def keep_tokens_out_of_logs() -> None:
    """Log the route, not the path, where the path holds a report token."""
    if request.view_args and "token" in request.view_args and request.url_rule is not None:
        g.log_path = request.url_rule.rule


@blueprint.after_request
def page_headers(response: Response) -> Response:
    """The page's policy on every /ui response; nothing is framed or sniffed."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _page() -> Response:
    response = send_from_directory(STATIC_DIR, "index.html", mimetype="text/html", max_age=0)
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/")
def page() -> Response:
    """The page itself."""
    return _page()


@blueprint.get("/static/<path:name>")
def static_file(name: str) -> Response:
    """The page's script, style and vendored libraries (never another origin's)."""
    return send_from_directory(STATIC_DIR, name, max_age=3600)


@blueprint.get("/settings")
def page_settings() -> Response:
    """What the page may offer: the hooks, the draft orders, whether the hook try-out is on."""
    services = [{"id": key, "hook": service["hook"], "title": service.get("title", key)}
                for key, service in app_state().hook_services.items()]
    return json_response({
        "sandbox": bool(_settings().get("UI_SANDBOX")),
        "reportLinks": bool(_settings().get("UI_REPORT_LINKS")),
        "services": services,
        "draftOrders": [{"id": choice["id"], "label": choice["label"]} for choice in draft_order_choices()],
    })


# --- example bundles -------------------------------------------------------------------------------

def _fixture_dir() -> Path | None:
    configured = _settings().get("UI_FIXTURE_DIR")
    folder = Path(configured) if configured else REPOSITORY_FIXTURES
    return folder if (folder / "MANIFEST.json").is_file() else None


def _manifest() -> dict[str, Any]:
    folder = _fixture_dir()
    if folder is None:
        return {"fixtures": []}
    return json.loads((folder / "MANIFEST.json").read_text(encoding="utf-8"))


@blueprint.get("/fixtures")
def fixtures() -> Response:
    """The example bundles: file, scenario and the instant their golden outputs were made at."""
    manifest = _manifest()
    listed = [{"file": item["file"], "scenario": item.get("scenario", "")} for item in manifest.get("fixtures", [])
              if isinstance(item, dict) and _FIXTURE_NAME.match(str(item.get("file", "")))]
    return json_response({"now": manifest.get("now"), "fixtures": listed})


@blueprint.get("/fixtures/<name>")
def fixture(name: str) -> Response:
    """One example bundle, by its listed file name only (no path reaches the file system)."""
    folder = _fixture_dir()
    listed = {item.get("file") for item in _manifest().get("fixtures", []) if isinstance(item, dict)}
    if folder is None or name not in listed or not _FIXTURE_NAME.match(name):
        raise InputError.single(f"no example bundle named {name!r}; see GET /ui/fixtures", location="url",
                                code="not-found", status=404)
    return Response((folder / name).read_bytes(), mimetype="application/fhir+json")


# --- the trend -------------------------------------------------------------------------------------

def _width() -> int:
    raw = request.args.get("width", "")
    return min(2000, max(240, int(raw))) if raw.isdigit() else DEFAULT_WIDTH


def _assess_with_trends(bundle: object) -> tuple[AssessmentRun, tuple[PatientTrend, ...]]:
    state = app_state()
    run = state.assess(bundle)
    return run, trends_of(state.assessor, bundle, run, state.settings)


def _trend_json(trend: PatientTrend, width: int) -> dict[str, Any]:
    data = trend.as_json()
    data["vega"] = to_vega(trend_spec(data, width=width))
    return data


@blueprint.post("/trend")
def trend() -> Response:
    """POST a Bundle: each patient's trend points and the Vega spec of their chart."""
    bundle = read_json_body(request, max_bytes=int(_settings()["MAX_BODY_BYTES"]))
    _, trends = _assess_with_trends(bundle)
    width = _width()
    return json_response({"patients": [_trend_json(item, width) for item in trends]})


def _svg_response(svg: str) -> Response:
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = SVG_POLICY
    return response


def _chosen(trends: Iterable[PatientTrend], patient: str | None) -> PatientTrend:
    trends = tuple(trends)
    for item in trends:
        if patient is None or item.patient_reference == patient:
            return item
    what = f"patient {patient!r}" if patient else "patient"
    raise InputError.single(f"no assessed {what} in the Bundle", location="patient", code="not-found", status=404)


@blueprint.post("/chart.svg")
def chart_svg() -> Response:
    """POST a Bundle: the chart of one patient (`?patient=` its reference; default the first) as SVG."""
    bundle = read_json_body(request, max_bytes=int(_settings()["MAX_BODY_BYTES"]))
    _, trends = _assess_with_trends(bundle)
    chosen = _chosen(trends, request.args.get("patient"))
    return _svg_response(to_svg(trend_spec(chosen.as_json(), width=_width())))


# --- CDS Hooks from the page -------------------------------------------------------------------------

@blueprint.post("/hook-request/<hook>")
def hook_request(hook: str) -> Response:
    """POST {"bundle", "patient"?, "draftOrders"?}: the CDS Hooks request that carries the Bundle's data."""
    body = read_json_body(request, max_bytes=int(_settings()["MAX_BODY_BYTES"]))
    if not isinstance(body, dict) or "bundle" not in body:
        raise InputError.single('expected {"bundle": <a FHIR Bundle>, "patient": optional, "draftOrders": [...]}',
                                location="$", code="structure", status=400)
    orders = body.get("draftOrders") or []
    built = build_hook_request(body["bundle"], hook, patient=body.get("patient") if isinstance(body.get("patient"), str) else None,
                               draft_orders=[str(o) for o in orders] if isinstance(orders, list) else [])
    return json_response({"request": built.body, "notCarried": built.not_carried})


@blueprint.post("/try/<service_id>")
def try_service(service_id: str) -> Response:
    """Run a CDS service on a request without a client JWT; only when UI_SANDBOX is on.

    The request may not name a FHIR server: the try-out reads nothing but what it is sent.
    """
    if not _settings().get("UI_SANDBOX"):
        raise InputError.single("the CDS Hooks try-out is off on this service (UI_SANDBOX); "
                                "call /cds-services with a signed JWT instead", location="url",
                                code="forbidden", status=403)
    service = app_state().hook_services.get(service_id)
    if service is None:
        raise InputError.single(f"no CDS service with id {service_id!r}", location="url", code="not-found", status=404)
    body = read_json_body(request, max_bytes=int(_settings()["MAX_BODY_BYTES"]))
    if isinstance(body, dict) and ("fhirServer" in body or "fhirAuthorization" in body):
        raise InputError.single("the try-out reads no FHIR server: send the data as prefetch only",
                                location="fhirServer", code="not-supported", status=400)
    state = app_state()
    answer = hook_call.answer_hook_call(
        service, body, fetcher=current_app.extensions["calcinosis_cds_hooks"].fetcher,
        base_url=request.url_root.rstrip("/"), config=state.settings,
        assess=lambda bundle, *, config, now=None, data_gaps=(): state.assessor.assess(
            bundle, now=now, data_gaps=data_gaps),
        grouping=state.test_grouping)
    return json_response(answer.body)


# --- report pages -----------------------------------------------------------------------------------

def _report_or_404(token: str) -> dict[str, Any]:
    store = report_store()
    report = store.get(token) if store is not None else None
    if report is None:
        raise InputError.single("this trend link is unknown or has expired: open the card again", location="url",
                                code="not-found", status=404)
    return report


@blueprint.get("/reports/<token>")
def report_page(token: str) -> Response:
    """The page, showing the stored trend the token names."""
    _report_or_404(token)
    return _page()


@blueprint.get("/reports/<token>/trend")
def report_trend(token: str) -> Response:
    """The stored trend with its Vega spec, for the page."""
    report = _report_or_404(token)
    report["vega"] = to_vega(trend_spec(report, width=_width()))
    return json_response({"patients": [report]})


@blueprint.get("/reports/<token>/chart.svg")
def report_chart(token: str) -> Response:
    """The stored trend's chart as SVG."""
    return _svg_response(to_svg(trend_spec(_report_or_404(token), width=_width())))
