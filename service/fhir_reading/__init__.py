"""Reading FHIR R4 JSON: partial dates, common elements (codings, text, choice types) and references.

Shared by the pipeline stages; knows nothing of the rules or of the HTTP surface.
"""
