"""The long-lived parts of the CDS Hooks surface, built once per app from its settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .feedback_store import FeedbackStore
from .fhir_fetch import FhirFetcher
from .jwt_auth import ClientVerifier, SqliteReplayStore
from .settings import default_feedback_db


@dataclass(frozen=True, slots=True)
class HookComponents:
    """What the views delegate to: client trust, FHIR reads, and the feedback record."""

    verifier: ClientVerifier
    fetcher: FhirFetcher
    feedback: FeedbackStore
    require_jwt: bool


def as_bool(value: Any) -> bool:
    """Settings may arrive as strings from the environment ("false", "0")."""
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


def build_components(settings: Mapping[str, Any]) -> HookComponents:
    """The components from settings; token ids and feedback share one SQLite file, seen by every worker."""
    db_path = settings.get("CDS_FEEDBACK_DB") or default_feedback_db()
    return HookComponents(
        # Token ids live beside the feedback, so every worker process sees a replay.
        verifier=ClientVerifier.from_config(settings, replay_store=SqliteReplayStore(db_path)),
        fetcher=FhirFetcher.from_config(settings),
        feedback=FeedbackStore(db_path),
        require_jwt=as_bool(settings.get("CDS_REQUIRE_JWT", True)),
    )
