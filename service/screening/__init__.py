"""Population screening: a whole Bulk Data export (or a folder of Bundles) through the same pipeline as `$assess`."""
