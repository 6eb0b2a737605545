"""The CDS Hooks 2.0 service, without Flask: request checks, client trust, data gathering, cards, feedback.

`service.web.cds_hooks` (the HTTP views) only unpacks requests and serializes what these modules return.
"""
