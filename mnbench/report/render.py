"""Rendering of a report's sections to Markdown (figures as PNG files beside it) and to one self-contained
HTML file (figures embedded as base64 ``data:`` URIs, no external resource).
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

import pandas as pd

from .figures import Figure
from .markdown import markdown_table

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.82em;margin:.8em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:.85em;color:#555}
code{background:#f3f3f3;padding:0 .2em}
"""


@dataclass
class Table:
    """A table already formatted for display (string cells); ``caption`` goes above it."""

    caption: str
    frame: pd.DataFrame


@dataclass
class Section:
    """A titled part of the report: paragraphs (with `code` spans), tables, figures."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def formatted(frame: pd.DataFrame, formats: dict[str, str],
              names: dict[str, str] | None = None) -> pd.DataFrame:
    """Copy of ``frame`` with the ``formats`` columns (``"{:.3f}"`` style) as strings, NA as –, renamed."""
    out = frame.copy()
    for column, pattern in formats.items():
        if column in out:
            out[column] = [("–" if pd.isna(value) else pattern.format(value)) for value in out[column]]
    out = out.astype(object).where(out.notna(), "–")
    return out.rename(columns=names or {})


def to_markdown(title: str, intro: list[str], sections: list[Section], figure_dir: str = "figures") -> str:
    """The report as Markdown; figures are referenced as ``<figure_dir>/<name>.png``."""
    lines = [f"# {title}", ""] + [line for text in intro for line in (text, "")]
    for section in sections:
        lines += [f"## {section.title}", ""]
        lines += [line for text in section.text for line in (text, "")]
        for figure in section.figures:
            lines += [f"![{figure.caption}]({figure_dir}/{figure.name}.png)", "", f"*{figure.caption}*", ""]
        for table in section.tables:
            rows = table.frame.values.tolist()
            lines += [f"**{table.caption}**", "", markdown_table(list(table.frame.columns), rows), ""]
    return "\n".join(lines).rstrip() + "\n"


def to_html(title: str, intro: list[str], sections: list[Section]) -> str:
    """The report as one HTML document with every figure embedded."""
    body = [f"<h1>{html.escape(title)}</h1>"] + [f"<p>{_inline(text)}</p>" for text in intro]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [f"<p>{_inline(text)}</p>" for text in section.text]
        for figure in section.figures:
            data = base64.b64encode(figure.png).decode("ascii")
            caption = html.escape(figure.caption)
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                        f"<figcaption>{caption}</figcaption></figure>")
        for table in section.tables:
            rendered = table.frame.to_html(index=False, escape=True, border=0)
            caption = f"<caption>{html.escape(table.caption)}</caption>"
            body.append(rendered.replace("<thead>", caption + "<thead>", 1))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    """Escaped text with `code` spans and **bold** as HTML."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
