"""The long-lived parts of the CDS Hooks surface, built once per app from its settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping

from .feedback_store import FeedbackStore
from .fhir_fetch import FhirFetcher
from .jwt_auth import ClientVerifier, SqliteReplayStore
from ..config import setting


@dataclass(frozen=True, slots=True)
class HookComponents:
    """What the views delegate to: client trust, FHIR reads, and the feedback record."""

    verifier: ClientVerifier
    fetcher: FhirFetcher
    feedback: FeedbackStore
    require_jwt: bool


def build_components(settings: Mapping[str, Any]) -> HookComponents:
    """The components from checked settings (`service.config`); token ids and feedback share one SQLite file."""
    db_path = setting(settings, "CDS_FEEDBACK_DB")
    return HookComponents(
        # Token ids live beside the feedback, so every worker process sees a replay.
        verifier=ClientVerifier.from_config(settings, replay_store=SqliteReplayStore(db_path)),
        fetcher=FhirFetcher.from_config(settings),
        feedback=FeedbackStore(db_path, card_retention=timedelta(days=setting(settings, "CDS_CARD_RETENTION_DAYS"))),
        require_jwt=setting(settings, "CDS_REQUIRE_JWT") is not False,
    )
