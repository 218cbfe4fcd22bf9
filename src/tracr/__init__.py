"""tracr: compile RASP programs into transformer weights that compute them exactly.

Subpackages: `tracr.rasp` (the language), `tracr.compiler` (`compiling`, `lib`,
`validating`), `tracr.craft` (the intermediate representation), `tracr.transformer` (the
numpy model), `tracr.plot` (figures, extra `plot`), `tracr.reporting` (the HTML report),
`tracr.cli` (the `tracr` command). Nothing is imported here, so `import tracr.rasp.rasp`
stays light; `tracr.report` imports its module when called.
"""

from __future__ import annotations


def report(model, inputs=(), path="report.html", *, program=None, title=None):
    """Writes a self-contained HTML report of `model` on `inputs`; see
    `tracr.reporting.report`. Returns the path written."""
    from tracr.reporting import page

    return page.report(model, inputs, path, program=program, title=title)
