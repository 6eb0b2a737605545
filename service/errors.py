"""The service's error tree.

Every failure a caller can cause is a `ServiceError` carrying an HTTP status
and one or more `InputIssue`s with a FHIRPath-like location, so the HTTP layer
only has to render an OperationOutcome. Rule-language errors have their own
tree in `service.cql_like.errors` (the engine knows nothing of HTTP).
"""

from __future__ import annotations

from typing import Iterable

from .assessment_model import InputIssue


class CalcinosisError(Exception):
    """Root of the service's errors (the rule engine's own tree, CqlError, is separate because the
    engine must not depend on the service)."""


class ConfigError(CalcinosisError):
    """A configuration value is unusable: raised at start, naming the key, never per request."""


class ServiceError(CalcinosisError):
    """Base of every error the service turns into an OperationOutcome."""

    status: int = 500

    def __init__(self, issues: Iterable[InputIssue] | InputIssue, status: int | None = None) -> None:
        self.issues: tuple[InputIssue, ...] = (issues,) if isinstance(issues, InputIssue) else tuple(issues)
        if status is not None:
            self.status = status
        super().__init__("; ".join(i.diagnostics for i in self.issues))


class InputError(ServiceError):
    """The request itself is unusable (4xx): bad JSON, not a Bundle, too large, wrong media type."""

    status = 422

    @classmethod
    def single(cls, diagnostics: str, *, location: str | None = None, code: str = "invalid",
               status: int | None = None) -> "InputError":
        """The common case: one error issue at one location."""
        return cls(InputIssue("error", code, diagnostics, location), status=status)


class DataUnavailableError(ServiceError):
    """Data the service needs could not be had (CDS Hooks prefetch and FHIR server both failed): 412."""

    status = 412


class AccessDeniedError(ServiceError):
    """A bearer token refused by `$assess`: 401 (missing or invalid) or 403 (lacking the scope), with the
    WWW-Authenticate challenge RFC 6750 asks for, so the client knows to fetch a new token."""

    def __init__(self, diagnostics: str, *, challenge: str, status: int = 401) -> None:
        super().__init__(InputIssue("error", "login" if status == 401 else "forbidden", diagnostics, None),
                         status=status)
        self.headers = {"WWW-Authenticate": challenge}


class AuthenticationError(CalcinosisError):
    """A CDS client could not be trusted. Rendered as a bare 401; the reason is only logged."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
