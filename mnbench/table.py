"""Aligned plain-text tables for the terminal."""

from __future__ import annotations

from typing import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                 right: Sequence[bool] | None = None) -> str:
    """Columns padded to their widest cell; numbers right-aligned unless ``right`` says otherwise."""
    cells = [[_cell(v) for v in row] for row in rows]
    if right is None:
        right = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) if rows else False
                 for i in range(len(headers))]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values):
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(row) for row in cells])


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        digits = 3 if abs(value) < 10 else 2 if abs(value) < 1000 else 1
        return f"{value:,.{digits}f}"
    return str(value)
