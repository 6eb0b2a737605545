"""The assessment pipeline, one module a stage: bundle -> kept resources -> facts -> rule library -> assessment.

`ingest` reads and validates the Bundle, `normalize` (with `observations` for lab values) builds the
facts model in `facts`, `assess` runs the compiled rule library and `rules_adapter` turns its results
into the `PatientAssessment` of `service.assessment_model`.
"""
