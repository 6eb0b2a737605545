"""The CDS Hooks example requests in fhir_fixtures/cds-hooks and their expected responses.

Responses carry fresh uuids and the host they were served from; `comparable` masks both so a
golden file can be compared strictly otherwise. Regenerate the golden files after an intended
change with:  python -m tests.support.cds_fixtures --write
"""

from __future__ import annotations

import json
from contextlib import contextmanager
import re
import sys
from pathlib import Path
from typing import Any, Iterator

FIXTURES = Path(__file__).resolve().parents[2] / "fhir_fixtures" / "cds-hooks"
HOOKS = ("patient-view", "order-select", "order-sign")
FIXTURE_BASE_URL = "https://cds.example.org"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def request_for(hook: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{hook}-request.json").read_text(encoding="utf-8"))


def expected_response_for(hook: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{hook}-response.json").read_text(encoding="utf-8"))


def comparable(value: Any) -> Any:
    """The response with every uuid replaced by '<uuid>'."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, str) and _UUID.match(value):
        return "<uuid>"
    return value


def fixture_app(tmp_dir: Path):
    from tests.support.cds_app import make_app

    return make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_dir / "feedback.sqlite3"),
                     "PUBLIC_BASE_URL": FIXTURE_BASE_URL})


def fixture_now():
    from tests.conftest import FIXTURE_NOW

    return FIXTURE_NOW


@contextmanager
def core_at_fixture_time() -> Iterator[None]:
    """Hook calls assessed by the real core at the fixtures' instant, so answers compare over time."""
    from service.hooks import hook_call

    original = hook_call.core_assess

    def at_fixture_time(bundle, *, config, now=None, **options):
        return original(bundle, config=config, now=fixture_now(), **options)

    hook_call.core_assess = at_fixture_time
    try:
        yield
    finally:
        hook_call.core_assess = original


def responses_through_the_core(tmp_dir: Path) -> dict[str, dict[str, Any]]:
    """Each example request answered by the real assessment core at the fixtures' instant."""
    with core_at_fixture_time():
        client = fixture_app(tmp_dir).test_client()
        answers = {}
        for hook in HOOKS:
            response = client.post(f"/cds-services/calcinosis-{hook}", json=request_for(hook))
            answers[hook] = {"status": response.status_code, "body": response.get_json()}
        return answers


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for hook, answer in responses_through_the_core(Path(tmp)).items():
            assert answer["status"] == 200, (hook, answer)
            path = FIXTURES / f"{hook}-response.json"
            path.write_text(json.dumps(answer["body"], indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"wrote {path}")
