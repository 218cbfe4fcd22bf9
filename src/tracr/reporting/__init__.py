"""The self-contained HTML report of a compiled model: `report(model, inputs, path)`.

Also reachable as `tracr.report(...)`. Needs only numpy; the page needs no network.
"""

from tracr.reporting.page import render, report

__all__ = ["render", "report"]
