"""Where a served patient-view call spends its time, by layer, from a profile of the app in process.

Run from the project root: `python bench/profile_served.py [--large] [--calls N]`. The app is built as
`serve` builds it (JWT verified with a trusted key, replay store and card records in SQLite, the
heap settled as in a served worker) and called through Flask's test client, so everything but
gunicorn and the socket is profiled; the served floor (`/healthz` in `bench/perf.py`) is what those
cost. Each function's own time is given to the layer its file belongs to.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from perf import ISSUER, SERVICE_PATH, _client_key, _sign_tokens  # noqa: E402
from workloads import (SMALL_PATIENT_VIEW_SOURCE, large_patient_view_body, patient_view_body,  # noqa: E402
                       synthea_samples)

# (layer, substrings of a file path or built-in name), first match wins.
LAYERS = [
    ("rule engine (cql_like)", ("service/cql_like/", "<cql ")),   # "<cql file:line:col>": the library's generated code
    ("ingest and normalize (pipeline, fhir_reading, terminology)",
     ("service/pipeline/", "service/fhir_reading/", "service/terminology/")),
    ("input validation (fhir.resources, pydantic)", ("fhir/resources", "fhir_core", "pydantic")),
    ("replay store and card records (SQLite)", ("sqlite3", "feedback_store")),
    ("JWT verification (PyJWT, cryptography)", ("jwt/", "jwt_auth", "cryptography", "_rust")),
    ("cards and CDS Hooks checks (hooks)", ("service/hooks/",)),
    ("outputs (fhir_outputs)", ("service/fhir_outputs/",)),
    ("JSON parse and serialize (orjson, json)", ("orjson", "json/", "'loads'", "'dumps'")),
    ("Flask and Werkzeug", ("flask/", "werkzeug/", "service/web/")),
]


def _layer(filename: str, function: str) -> str:
    text = f"{filename}:{function}"
    for layer, needles in LAYERS:
        if any(needle in text for needle in needles):
            return layer
    return "other (Python runtime, stdlib)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true",
                        help="the 1.75 MB patient-view call (the largest Synthea sample's patient, grown)")
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    from service import create_app
    from service.web.wsgi_server import settle_heap

    body = large_patient_view_body(synthea_samples()[-1]) if args.large else patient_view_body(SMALL_PATIENT_VIEW_SOURCE)
    key, jwks = _client_key()
    base = "http://127.0.0.1"
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"PUBLIC_BASE_URL": base, "CDS_TRUSTED_ISSUERS": {ISSUER: {"jwks": jwks}},
                          "CDS_FEEDBACK_DB": str(Path(tmp) / "feedback.sqlite3"), "LOG_LEVEL": "WARNING"})
        settle_heap()  # as each served worker does once its app is built
        client = app.test_client()
        tokens = _sign_tokens(key, base + SERVICE_PATH, args.calls + 2, Path(tmp) / "tokens.txt").read_text().split()

        def call(token: str) -> None:
            answer = client.post(SERVICE_PATH, data=body, headers={"Content-Type": "application/json",
                                                                    "Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.status_code

        call(tokens.pop())  # warm up
        start, cpu_start = time.perf_counter(), time.process_time()
        for token in tokens[:args.calls]:
            call(token)
        plain_ms = (time.perf_counter() - start) / args.calls * 1000
        plain_cpu_ms = (time.process_time() - cpu_start) / args.calls * 1000
        # The same calls with the core's answer reused: what serving costs around the assessment.
        from service.hooks import hook_call

        core, answers = hook_call.core_assess, []

        def first_answer(bundle, **options):  # type: ignore[no-untyped-def]
            if not answers:
                answers.append(core(bundle, **options))
            return answers[0]

        hook_call.core_assess = first_answer
        try:
            tokens = _sign_tokens(key, base + SERVICE_PATH, args.calls + 1, Path(tmp) / "served.txt").read_text().split()
            call(tokens.pop())
            start, cpu_start = time.perf_counter(), time.process_time()
            for token in tokens:
                call(token)
            around_ms = (time.perf_counter() - start) / args.calls * 1000
            around_cpu_ms = (time.process_time() - cpu_start) / args.calls * 1000
        finally:
            hook_call.core_assess = core
        tokens = _sign_tokens(key, base + SERVICE_PATH, args.calls, Path(tmp) / "more.txt").read_text().split()
        profile = cProfile.Profile()
        profile.enable()
        for token in tokens:
            call(token)
        profile.disable()
    totals: dict[str, float] = defaultdict(float)
    for (filename, _, function), (_, _, own, _, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        totals[_layer(filename, function)] += own
    whole = sum(totals.values())
    # CPU time beside the elapsed time: on a shared machine the elapsed time also counts the waits for a core.
    print(f"patient-view {'large' if args.large else 'small'} ({len(body) / 1e3:,.0f} KB), in process: "
          f"{plain_ms:.1f} ms a call without the profiler ({plain_cpu_ms:.1f} ms CPU), {around_ms:.1f} ms "
          f"({around_cpu_ms:.1f} ms CPU) of it around the assessment (the same call with the core's answer "
          "reused); share of the profiled time by layer:")
    for layer, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {layer:60} {100 * seconds / whole:5.1f} %  {seconds / args.calls * 1000:7.1f} ms a call (profiled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
