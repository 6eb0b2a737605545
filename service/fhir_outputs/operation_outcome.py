"""InputIssues -> an R4 OperationOutcome (validated at runtime when asked).

Used for the skipped inputs of an assessment and, by the HTTP layer, for every 4xx answer, so it
accepts a single issue as well as many. The FHIRPath-like location goes into `expression` (the
R4 element for FHIRPath) and into `location` for clients that still read only that element.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..assessment_model import InputIssue
from .empty_elements import without_empty_elements
from .narrative import narrative, table
from .validation import validated_if
from .vocabulary import issue_severities, issue_types

_FALLBACK_ISSUE_CODE = "processing"


def operation_outcome(issues: InputIssue | Iterable[InputIssue], *, resource_id: str | None = None,
                      validate: bool = False) -> dict[str, Any]:
    """An OperationOutcome listing `issues` in the order given; validated as R4 with `validate`
    (the `VALIDATE_OUTPUTS` setting).

    With no issue at all it holds a single informational issue saying so, since R4 requires one.
    """
    issue_list = [issues] if isinstance(issues, InputIssue) else list(issues)
    entries = [issue_component(issue) for issue in issue_list] or [
        {"severity": "information", "code": "informational", "diagnostics": "No issues."}]
    resource: dict[str, Any] = {"resourceType": "OperationOutcome"}
    if resource_id:
        resource["id"] = resource_id
    resource["text"] = outcome_narrative(entries)
    resource["issue"] = entries
    return validated_if(validate, without_empty_elements(resource))


def outcome_narrative(entries: list[dict[str, Any]]) -> dict[str, str]:
    """Severity | what | where, one row per issue (the locations are for whoever fixes the input)."""
    rows = [(entry["severity"],
             entry.get("diagnostics") or entry.get("details", {}).get("text") or entry["code"],
             ", ".join(entry.get("expression", ())))
            for entry in entries]
    return narrative(table(("Severity", "What", "Where"), rows))


def issue_component(issue: InputIssue) -> dict[str, Any]:
    """One OperationOutcome.issue. An issue code outside the R4 IssueType set becomes
    'processing' and the original code is kept in details.text, so nothing is lost."""
    severity = issue.severity if issue.severity in issue_severities() else "error"
    component: dict[str, Any] = {"severity": severity}
    if issue.code in issue_types():
        component["code"] = issue.code
    else:
        component["code"] = _FALLBACK_ISSUE_CODE
        component["details"] = {"text": f"issue code given: {issue.code}"}
    if issue.diagnostics:
        component["diagnostics"] = issue.diagnostics
    if issue.location:
        component["location"] = [issue.location]
        component["expression"] = [issue.location]
    return component
