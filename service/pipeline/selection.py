"""Which Observations the rules read, decided from the JSON as sent, before anything is validated.

Every Observation retrieve of the rule library names a value set, and the normalizer reads a
result's value only for the codes of the terminology's analyte table; so an Observation is read
when one coding of its code, or of a component's code (a lab result sent inside a panel is
reported), is in one of those. A code is matched as the rules match it: system and code, a system
alias (the LOINC OID) read as its canonical URI. Codes whose row is unverified and matched also by
name (`match_names`, body height) are selected by code: the name test is the rules' own, on what
was read. An Observation with no coding of a known code system is read too, so that the sender
is told its code is not recognised, and a result of an unknown test that fails R4 still counts as
data not read. Every other Observation (vital signs, surveys, unrelated labs) is counted as not
read and never modelled.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from ..config import load_config
from ..cql_like.valuesets import ValueSet, load_valueset_dir
from ..terminology import Terminology, load_terminology


class ReadSelection:
    """The codes the rules read, with membership remembered per (system, code)."""

    def __init__(self, terminology: Terminology, value_sets: Iterable[ValueSet]) -> None:
        self.terminology = terminology
        self.value_sets = tuple(value_sets)
        self._known: dict[tuple[str, str], bool] = {}

    def reads_observation(self, resource: dict[str, Any]) -> bool:
        """True when the rules read this Observation (or must tell the sender its code is unknown)."""
        codeables = [resource.get("code")]
        components = resource.get("component")
        if isinstance(components, list):
            codeables += [component.get("code") for component in components if isinstance(component, dict)]
        recognised = False
        known, is_recognised = self._known, self.terminology.is_recognised_system
        for codeable in codeables:  # one loop over every coding, as `codings` would list them
            items = codeable.get("coding") if isinstance(codeable, dict) else None
            for item in items if isinstance(items, list) else ():
                if not isinstance(item, dict):
                    continue
                system = item.get("system")
                if not isinstance(system, str):
                    continue
                if not recognised and is_recognised(system):
                    recognised = True
                code = item.get("code")
                if isinstance(code, str):
                    verdict = known.get((system, code))
                    if verdict or (verdict is None and self.reads_code(system, code)):
                        return True
        return not recognised

    def reads_code(self, system: str, code: str) -> bool:
        """True when a coding (system, code) is one the rules or the terminology read."""
        key = (system, code)
        known = self._known.get(key)
        if known is None:
            alias = self.terminology.system_alias(system)
            canonical, stripped = (alias[0] if alias is not None else system), code.strip()
            known = (self.terminology.analyte_for(system, code) is not None
                     or any(value_set.contains(canonical, stripped) for value_set in self.value_sets))
            if len(self._known) < 100_000:  # bounded: a bundle of made-up codes cannot grow it without end
                self._known[key] = known
        return known


def read_selection(terminology: Terminology, valueset_dir: str | Path) -> ReadSelection:
    """The selection for a rule library's value sets and a terminology (an Assessor builds its own)."""
    found = load_valueset_dir(valueset_dir)
    return ReadSelection(terminology, (found[url] for url in sorted(found)))


@lru_cache(maxsize=1)
def default_selection() -> ReadSelection:
    """The shipped library's selection, for callers that read a bundle without an Assessor (tests, tools)."""
    return read_selection(load_terminology(), load_config()["VALUESET_DIR"])
