"""calcinosis-cds: clinical decision support for calcinosis cutis over FHIR R4 and CDS Hooks.

`create_app` is loaded lazily so that importing the engine (`service.cql_like`) or the core
never imports Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = ["create_app", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .web.app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .web.app import create_app

        return create_app
    raise AttributeError(f"module 'service' has no attribute {name!r}")
