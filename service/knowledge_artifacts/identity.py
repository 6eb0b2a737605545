"""Names and canonical urls of the published artifacts, read from `artifacts.json`."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

_ARTIFACTS = Path(__file__).resolve().parent / "artifacts.json"


@lru_cache(maxsize=1)
def artifact_settings() -> dict[str, Any]:
    """The shipped artifacts.json (read once; it is package data, not a setting)."""
    return json.loads(_ARTIFACTS.read_text(encoding="utf-8"))


def canonical_base() -> str:
    return artifact_settings()["canonical_base"]


def canonical(resource_type: str, resource_id: str) -> str:
    """https://calcinosis-cds.org/fhir/Library/CalcinosisCutis"""
    return f"{canonical_base()}/{resource_type}/{resource_id}"


def fhir_id(text: str) -> str:
    """A valid FHIR id from a name: letters, digits, '-' and '.', at most 64 characters."""
    cleaned = re.sub(r"[^A-Za-z0-9\-.]+", "-", text).strip("-")
    return cleaned[:64] or "unnamed"


def computable_name(text: str) -> str:
    """'Calcinosis Cutis' -> 'CalcinosisCutis' (R4 name: starts with a capital, no spaces)."""
    words = re.findall(r"[A-Za-z0-9]+", text)
    name = "".join(word[:1].upper() + word[1:] for word in words)
    return name if name[:1].isalpha() else f"N{name}"
