"""Prometheus metrics at `/metrics`: requests and latency by route and status, rule evaluation time,
CDS Hooks cards by indicator, and reads from FHIR servers (latency and failures).

Routes are labelled by their rule (`/fhir/ValueSet/<resource_id>`), never by the path asked for, so
the label set stays small and no id or token reaches the metrics.

gunicorn runs several worker processes, each with its own counters. `calcinosis-cds serve` sets
`PROMETHEUS_MULTIPROC_DIR` (a fresh directory, unless the operator names one) before the workers
start, and prometheus_client's multiprocess mode then adds up every worker's figures on each
scrape, whichever worker answers it. Without that variable (tests, another WSGI server started
without it) each process reports only its own requests.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterable

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

from ..hooks import fhir_fetch
from ..pipeline import assess

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter("calcinosis_http_requests_total", "HTTP requests answered, by method, route and status",
                   ("method", "route", "status"))
LATENCY = Histogram("calcinosis_http_request_duration_seconds", "HTTP request latency, by method, route and status",
                    ("method", "route", "status"), buckets=_LATENCY_BUCKETS)
RULE_EVALUATION = Histogram("calcinosis_rule_evaluation_seconds",
                            "time the rule library took to evaluate one patient",
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
CARDS = Counter("calcinosis_cds_cards_total", "CDS Hooks cards returned, by indicator", ("indicator",))
UPSTREAM_LATENCY = Histogram("calcinosis_fhir_upstream_request_duration_seconds",
                             "reads from FHIR servers (CDS Hooks fallback), by server origin and outcome",
                             ("server", "outcome"), buckets=_LATENCY_BUCKETS)
UPSTREAM_FAILURES = Counter("calcinosis_fhir_upstream_failures_total",
                            "reads from FHIR servers that failed or were refused as busy, by server origin and outcome",
                            ("server", "outcome"))

CARD_ENDPOINTS = frozenset({"cds_hooks.call_service"})


def _observe_evaluation(seconds: float) -> None:
    RULE_EVALUATION.observe(seconds)


def _observe_upstream(server: str, seconds: float, outcome: str) -> None:
    UPSTREAM_LATENCY.labels(server, outcome).observe(seconds)
    if outcome != "ok":
        UPSTREAM_FAILURES.labels(server, outcome).inc()


def _register_observers() -> None:
    """Hook the core's timing callbacks once per process, however many apps are built."""
    if _observe_evaluation not in assess.EVALUATION_OBSERVERS:
        assess.EVALUATION_OBSERVERS.append(_observe_evaluation)
    if _observe_upstream not in fhir_fetch.READ_OBSERVERS:
        fhir_fetch.READ_OBSERVERS.append(_observe_upstream)


def route_label() -> str:
    """The matched route's rule, or `unmatched` (a 404), so paths never become labels."""
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def count_cards(indicators: Iterable[Any]) -> None:
    """Count the cards of a hook answer by indicator, once the view has its answer (the response is
    never parsed again for this)."""
    g.card_indicators = tuple(indicators)


def _count_cards(response: Response) -> None:
    indicators = g.pop("card_indicators", ())
    if request.endpoint not in CARD_ENDPOINTS or response.status_code != 200:
        return
    for indicator in indicators:
        CARDS.labels(indicator if indicator in {"info", "warning", "critical"} else "other").inc()


def exposition() -> tuple[bytes, str]:
    """The metrics text: every worker's figures in multiprocess mode, else this process's."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def init_app(app: Flask) -> None:
    """Time every request, count cards, and serve `/metrics`."""
    _register_observers()

    @app.before_request
    def _start_metrics_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _record_request(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            labels = (request.method, route_label(), str(response.status_code))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - started)
        _count_cards(response)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus text exposition format."""
        body, content_type = exposition()
        return Response(body, content_type=content_type)

