"""The laboratory trend of an assessed patient: every calcium, phosphate, Ca x P, PTH, eGFR and
25-OH vitamin D result over time, each marked used, earlier, stale or skipped, and its chart.

Flask-free: the web page, the SVG endpoint and the `$assess` chart document all read it.
"""
