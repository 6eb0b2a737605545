"""Vega-Lite -> Vega (for the page's browser-side renderer) and -> SVG (for the chart endpoint and
the `$assess` chart document), through vl-convert, which embeds the Vega-Lite compiler and Vega.

No data is ever fetched while rendering: every spec carries its data inline, and URLs are refused.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

# vl-convert runs one JavaScript engine per process; calls are serialized so threads never share it mid-call.
_lock = threading.Lock()


def _vl_convert() -> Any:
    import vl_convert  # lazily: importing starts nothing, but keep module import cheap for the CLI

    return vl_convert


def to_vega(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The Vega spec the browser renders (so the page needs Vega only, not the Vega-Lite compiler)."""
    with _lock:
        return _vl_convert().vegalite_to_vega(dict(spec))


def to_svg(spec: Mapping[str, Any]) -> str:
    """The chart as a standalone SVG document."""
    with _lock:
        return _vl_convert().vegalite_to_svg(dict(spec), allowed_base_urls=[])
