"""The rule library published as FHIR R4 knowledge artifacts, and `PlanDefinition/$apply`.

Everything here is generated from the files the engine runs (the rule library's text, its value
sets, the bibliography), never from a hand-kept copy: the `Library` carries the CQL text the
service compiled, the `PlanDefinition` reads its actions from the library's own "Panel" define and
its group conditions from its defines, and the `ValueSet`s are the engine's value set files, with
`$expand` and `$validate-code` answered by the engine's own expansion. No Flask in here.
"""

from .apply import ApplyRequest, apply_plan_definition, read_apply_parameters
from .publication import KnowledgeArtifacts

__all__ = ["ApplyRequest", "KnowledgeArtifacts", "apply_plan_definition", "read_apply_parameters"]
