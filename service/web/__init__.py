"""The HTTP surface: the Flask app factory, the `/fhir` and `/cds-services` routes, body reading, the WSGI server.

Only this package imports Flask; it turns requests into calls on `service.hooks` and `service.pipeline`
and their results into responses.
"""
