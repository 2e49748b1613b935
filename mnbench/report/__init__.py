"""Reports on result rows: ``mnbench report`` (Markdown and self-contained HTML with figures) and the
Markdown that ``mnbench compare`` and ``mnbench ab`` post to pull requests.

Modules: :mod:`.tables` (pure ``DataFrame -> DataFrame`` functions), :mod:`.paper` (the papers' published
figures), :mod:`.figures` (matplotlib, Agg), :mod:`.render` (Markdown/HTML of a report), :mod:`.build`
(``build_report``), :mod:`.markdown` (comparisons and A/B results for pull requests; no matplotlib).
"""

from ..errors import MnbenchError


class ReportError(MnbenchError):
    """Results that a report cannot be made from (none, missing or corrupt), or an unwritable folder."""
