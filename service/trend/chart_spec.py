"""A patient's trend as a Vega-Lite specification: one spec, drawn by the page (Vega, in the
browser) and by the SVG endpoint (vl-convert, on the server).

Calcium (total and corrected), phosphate and Ca x P share one time axis, each on its reference
range (the range applied to the latest result, shaded), Ca x P with the threshold line; PTH, eGFR
and 25-OH vitamin D follow as small multiples when the patient has a result. A point's status is
told by its shape and its colour together, and named in the legend and the tooltip, never by
colour alone. Times are UTC, as the service dates everything.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .series import chart_data

VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
MAIN_HEIGHT = 150
SMALL_HEIGHT = 110
MIN_WIDTH = 240


def trend_spec(trend: Mapping[str, Any], *, width: int = 640, title: str | None = None) -> dict[str, Any]:
    """The Vega-Lite spec of one patient's trend (`PatientTrend.as_json()`), `width` pixels wide."""
    width = max(MIN_WIDTH, int(width))
    points = [p for p in trend["points"] if p["value"] is not None and p["date"] is not None]
    data = chart_data()
    main, small = [], []
    for panel in data["panels"]:
        panel_points = [p for p in points if p["analyte"] in panel["series"]]
        if not panel_points and panel["kind"] == "small":
            continue
        if panel["kind"] == "main":
            main.append(_panel(panel, panel_points, width - 80, MAIN_HEIGHT, with_threshold=panel["id"] == "ca-x-p"))
        else:
            small.append(panel)
    rows: list[dict[str, Any]] = list(main)
    if small:
        each = max(MIN_WIDTH // 2, (width - 80) // len(small) - 70)
        rows.append({"hconcat": [_panel(panel, [p for p in points if p["analyte"] in panel["series"]], each,
                                        SMALL_HEIGHT) for panel in small]})
    spec: dict[str, Any] = {
        "$schema": VEGA_LITE_SCHEMA,
        "description": f"Laboratory trend: {len(points)} results plotted",
        "vconcat": rows,
        "resolve": {"scale": {"shape": "shared", "color": "shared"}},
        "config": {"font": "system-ui, sans-serif", "axis": {"labelFontSize": 11, "titleFontSize": 11},
                   "title": {"fontSize": 13, "anchor": "start"}, "legend": {"orient": "top", "labelLimit": 320}},
    }
    if title:
        spec["title"] = title
    return spec


def _panel(panel: Mapping[str, Any], points: Sequence[Mapping[str, Any]], width: int, height: int,
           *, with_threshold: bool = False) -> dict[str, Any]:
    layers: list[dict[str, Any]] = []
    band = _latest_range(points)
    if band is not None:
        layers.append({
            "data": {"values": [{"low": band[0], "high": band[1], "what": "reference range"}]},
            "mark": {"type": "rect", "color": "#0969da", "opacity": 0.10},
            "encoding": {"y": {"field": "low", "type": "quantitative"}, "y2": {"field": "high"},
                         "tooltip": [{"field": "what", "title": "shaded"}, {"field": "low", "title": "low"},
                                     {"field": "high", "title": "high"}]},
        })
    if with_threshold:
        threshold = chart_data()["ca_x_p_threshold"]
        layers.append({
            "data": {"values": [{"threshold": threshold["value"], "label": threshold["label"]}]},
            "layer": [
                {"mark": {"type": "rule", "color": "#cf222e", "strokeDash": [6, 4], "strokeWidth": 1.5},
                 "encoding": {"y": {"field": "threshold", "type": "quantitative"},
                              "tooltip": [{"field": "label", "title": "threshold"}]}},
                {"mark": {"type": "text", "align": "left", "dx": 4, "dy": -6, "color": "#cf222e", "fontSize": 10},
                 "encoding": {"y": {"field": "threshold", "type": "quantitative"},
                              "x": {"value": 0}, "text": {"field": "label"}}},
            ],
        })
    values = [dict(point) for point in points]
    x = {"field": "date", "type": "temporal", "title": None, "scale": {"type": "utc"},
         "axis": {"format": "%Y-%m-%d", "labelAngle": 0, "tickCount": 5}}
    y_title = panel["title"]
    layers.append({
        "data": {"values": values},
        "layer": [
            {"mark": {"type": "line", "color": "#8c959f", "strokeWidth": 1},
             "transform": [{"filter": "datum.status !== 'skipped'"}],
             "encoding": {"x": x, "y": {"field": "value", "type": "quantitative", "title": None},
                          "detail": {"field": "series"},
                          "strokeDash": {"field": "series", "type": "nominal", "title": "series",
                                         "legend": {"orient": "top", "labelLimit": 320} if len(panel["series"]) > 1 else None}}},
            {"mark": {"type": "point", "filled": True, "size": 70, "strokeWidth": 2},
             "encoding": {"x": x, "y": {"field": "value", "type": "quantitative", "title": None,
                                        "scale": {"zero": False}, "axis": {"format": "~r"}},
                          "shape": _status_channel("shape"), "color": _status_channel("color"),
                          "tooltip": _tooltip()}},
        ],
    })
    if not values:
        layers.append({"data": {"values": [{"note": "no result in this bundle"}]},
                       "mark": {"type": "text", "color": "#57606a"}, "encoding": {"text": {"field": "note"}}})
    return {"title": y_title, "width": width, "height": height, "layer": layers,
            "resolve": {"scale": {"strokeDash": "independent"}}}


def _status_channel(channel: str) -> dict[str, Any]:
    statuses = chart_data()["statuses"]
    domain = list(statuses)
    return {"field": "status", "type": "nominal", "title": "result",
            "scale": {"domain": domain, "range": [statuses[s][channel] for s in domain]},
            "legend": {"labelExpr": _legend_labels(statuses)}}


def _legend_labels(statuses: Mapping[str, Mapping[str, Any]]) -> str:
    """A Vega expression mapping each status to its words (the legend says them, not just a colour)."""
    expression = "datum.label"
    for key, status in reversed(list(statuses.items())):
        label = str(status["label"]).replace("'", "\\'")
        expression = f"datum.label === '{key}' ? '{label}' : ({expression})"
    return expression


def _tooltip() -> list[dict[str, Any]]:
    return [
        {"field": "series", "title": "test"},
        {"field": "date", "type": "temporal", "title": "date", "format": "%Y-%m-%d %H:%M UTC", "scale": {"type": "utc"}},
        {"field": "reported", "title": "as reported"},
        {"field": "value", "type": "quantitative", "title": "charted value", "format": ".4~r"},
        {"field": "unit", "title": "chart unit"},
        {"field": "statusText", "title": "status"},
        {"field": "why", "title": "why"},
        {"field": "flag", "title": "flag"},
    ]


def _latest_range(points: Sequence[Mapping[str, Any]]) -> tuple[float, float] | None:
    """The reference range applied to the latest result that has both bounds."""
    ranged = [p for p in points if p["rangeLow"] is not None and p["rangeHigh"] is not None]
    if not ranged:
        return None
    latest = max(ranged, key=lambda p: (p["status"] == "used", p["date"]))
    return latest["rangeLow"], latest["rangeHigh"]
