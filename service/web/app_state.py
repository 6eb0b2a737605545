"""What one app built by `create_app` owns: its settings, its Assessor and its CDS service definitions.

Nothing the views use is process-wide: two apps with different settings in one process (tests, a
rule author's copy beside the shipped rules) never share a compiled library. Everything here is
read once, when the app is built, and never reread, so an edited rule library, value set,
terminology table or bibliography takes effect in the next app built: restart the service (or
send gunicorn HUP, which replaces the workers, each building a new app; see `wsgi_server`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from flask import Flask, current_app

from ..pipeline.assess import Assessor, AssessmentRun, assessor_settings
from ..errors import ConfigError
from ..hooks.hook_call import load_services
from ..hooks.order_codes import LabTestGrouping

EXTENSION = "calcinosis"


@dataclass(frozen=True, slots=True)
class AppState:
    """The per-app objects the views read through `app_state()`."""

    settings: Mapping[str, Any]
    assessor: Assessor
    # CDS service definitions by id (read-only). They depend on no setting, but are read with the
    # rest so that a broken services.json stops the app at start, and an edit, like any other
    # data edit, takes effect in the next app built.
    hook_services: Mapping[str, Mapping[str, Any]]
    test_grouping: LabTestGrouping  # "same test" through this app's value sets (VALUESET_DIR)
    # Held while one request's assessment runs: see `assess`.
    assessment_turn: threading.Lock = field(default_factory=threading.Lock, compare=False)

    def assess(self, bundle: object, **options: Any) -> AssessmentRun:
        """Assess with this app's rule library (`Assessor.assess`), one request's assessment at a time.

        An assessment is CPU-bound Python: two threads of one worker running theirs at once share the
        interpreter lock and both finish late (twice the time of one, each), where one after the other
        the first finishes in its own time. Reading bodies, fetching from FHIR servers and building
        cards stay concurrent: only the assessment takes turns. Measured with the small patient-view
        call at 8 keep-alive connections on two workers of two threads, runs with and without turns
        alternating, the 99th percentile fell from about 2.0 times the median to about 1.75 times
        it, at the same throughput. Holding the turn to the end of the request (cards and JSON too)
        measured the same. One thread a worker gave about 1.5, but then a call waiting on a slow
        FHIR server would stall its whole worker.
        """
        with self.assessment_turn:
            return self.assessor.assess(bundle, **options)


def build_state(settings: Mapping[str, Any], assessor: Assessor | None = None) -> AppState:
    """Read the rule library and the service data for one app. Raises ConfigError on a mismatch.

    `assessor`: one already built for these same settings (tests share one between many apps
    to save the compilation); one built for other settings is refused, naming the keys.
    """
    if assessor is None:
        assessor = Assessor(settings)
    elif isinstance(assessor, Assessor) and assessor.settings != assessor_settings(settings):
        differing = [key for (key, value), (_, wanted) in zip(assessor.settings, assessor_settings(settings))
                     if value != wanted]
        raise ConfigError(f"the Assessor given to create_app was built for other settings: {', '.join(differing)}")
    services = MappingProxyType({key: MappingProxyType(value) for key, value in load_services().items()})
    grouping = LabTestGrouping(settings["VALUESET_DIR"], reread=True)
    return AppState(MappingProxyType(dict(settings)), assessor, services, grouping)


def init_app_state(app: Flask, settings: Mapping[str, Any], assessor: Assessor | None = None) -> AppState:
    """Build the app's state and attach it to `app.extensions`."""
    state = build_state(settings, assessor)
    app.extensions[EXTENSION] = state
    return state


def app_state(app: Flask | None = None) -> AppState:
    """The state of `app` (default: the app handling the current request)."""
    return (app or current_app).extensions[EXTENSION]
