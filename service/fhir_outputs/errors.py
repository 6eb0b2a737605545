"""The one error the output builders raise.

An assessment that cannot be rendered as valid FHIR R4 is a defect of the service, not of the
caller's input, so it is kept apart from `service.errors.ServiceError` (which maps to 4xx).
"""

from __future__ import annotations
from ..errors import CalcinosisError


class OutputValidationError(CalcinosisError):
    """An output resource failed FHIR R4 validation or an internal consistency check.

    `location` names the resource and element, e.g. ``ServiceRequest/<id>.reasonReference[0]``.
    """

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)
