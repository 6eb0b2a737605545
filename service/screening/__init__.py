"""Population screening: a whole Bulk Data export or a folder of Bundles, one patient at a time.

Every patient goes through the same pipeline as `$assess` (`patient_screen`); this package only
reads the sources, groups their resources by patient, spreads the work over processes and writes
the results (`outputs`). Nothing here knows Flask.
"""
