"""Read the op-profiling tables that ``benchmark_model --enable_op_profiling=true`` prints.

TF >= ~2.2 prints a ``Profiling Info for Benchmark Initialization:`` section (AllocateTensors,
ModifyGraphWithDelegate) and then ``Operator-wise Profiling Info for Regular Benchmark Runs:``; older builds
print only the tables. Each section holds ``Run Order``, ``Top by Computation Time`` and ``Summary by node
type`` tables. Columns are tab-separated and right-aligned to a fixed width that long node types
(``TFLite_Detection_PostProcess``, XNNPACK's ``Convolution (NHWC, QC8) IGEMM``) overflow, and newer
builds dropped the ``[start]`` column, so columns are read from each table's own header. Rows are split on
tabs; copies whose tabs became spaces are split by finding the run of numeric cells.

LiteRT's CompiledModel tool (``--use_profiler=true``, LiteRT >= 2.2) prints the same three tables from
its own ``LiteRtProfileSummarizer`` (``litert/runtime/profiler_summarizer.cc``): space-separated, titles
centred in 130-150 columns of ``=`` (TFLite's have 30 on each side), no section header, node names
``[Builtin]:i`` / ``[Delegate]:i`` and delegate-profiled ops as ``Delegate/<op>``. Its ``[avg ms]`` is per
invocation and its ``[times called]`` counts every run's invocations (warm-up ones included), where
TFLite's are per benchmark run; they are converted to TFLite's meaning (per run, the number of runs being
the most calls of one node), so both tools' tables mean the same. LiteRT 2.1.x printed TFLite's tables.

The input is the run's lines with log prefixes already removed (see :mod:`device_bench.parser`).
"""

from __future__ import annotations

import math
import re

SUMMARY_KEYS = ("node_type", "count", "avg_ms", "avg_pct", "cdf_pct", "mem_kb", "times_called")
NODE_KEYS = ("node_type", "start_ms", "first_ms", "avg_ms", "avg_pct", "cdf_pct", "mem_kb", "times_called",
             "name")

_REGULAR_HEADER = "Operator-wise Profiling Info for Regular Benchmark Runs:"
_INIT_HEADER = "Profiling Info for Benchmark Initialization:"
_SUMMARY_TITLE = "Summary by node type"
_NODES_TITLE = "Run Order"
_BANNER_RE = re.compile(r"=+ (?P<title>[A-Za-z][\w ]*?) =+$")
_LITERT_BANNER_RE = re.compile(r"={31,} ")  # LiteRtProfileSummarizer's centred title (TFLite: 30 '=')
_COLUMN_RE = re.compile(r"\[([^\]]+)\]")
_NUMERIC_CELL_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?%?")
_COLUMN_KEYS = {
    "node type": "node_type", "start": "start_ms", "first": "first_ms", "avg ms": "avg_ms", "%": "avg_pct",
    "avg %": "avg_pct", "cdf%": "cdf_pct", "cdf %": "cdf_pct", "mem kb": "mem_kb",
    "times called": "times_called", "count": "count", "name": "name",
}
_INT_KEYS = frozenset({"count", "times_called"})
_FLOAT_KEYS = frozenset({"start_ms", "first_ms", "avg_ms", "avg_pct", "cdf_pct", "mem_kb"})


def parse_op_profile(lines: list[str]) -> tuple[list[dict] | None, list[dict] | None, list[str]]:
    """Read the regular-run op profile of one benchmark invocation.

    Args:
        lines: the invocation's lines, log prefixes removed, blank lines kept.

    Returns:
        ``(summary, nodes, warnings)``: ``summary`` holds one dict per row of "Summary by node type"
        (keys :data:`SUMMARY_KEYS`), ``nodes`` one dict per row of "Run Order" (keys :data:`NODE_KEYS`,
        ``None`` for columns the build does not print); each is ``None`` when the log has no such table.
        The initialization section is never reported.
    """
    section, warnings = _regular_section(lines)
    if section is None:
        if not warnings and "Enable op profiling: [1]" in lines:
            warnings.append("op profiling was enabled but the log holds no per-operator tables")
        return None, None, warnings
    tables = _read_tables(section, warnings)
    summary = tables.get(_SUMMARY_TITLE)
    if summary is not None and not any(line.startswith("Timings (microseconds)") for line in section):
        warnings.append("op profile: the log ends inside the per-operator tables; rows may be missing")
    nodes = tables.get(_NODES_TITLE)
    if any(_LITERT_BANNER_RE.match(line) for line in section):
        summary, nodes = _per_run(summary, nodes)
    return _project(summary, SUMMARY_KEYS), _project(nodes, NODE_KEYS), warnings


def _per_run(summary: list[dict] | None,
             nodes: list[dict] | None) -> tuple[list[dict] | None, list[dict] | None]:
    """LiteRT's per-invocation tables in TFLite's per-run meaning (see the module docstring)."""
    runs = max((row.get("times_called") or 0 for row in nodes or []), default=0)

    def convert(row: dict, calls_per_run: float) -> dict:
        calls = row.get("times_called")
        per_run = calls / runs if runs and calls is not None else calls_per_run
        return {**row, "avg_ms": row["avg_ms"] * per_run if row.get("avg_ms") is not None else None,
                "times_called": int(per_run) if float(per_run).is_integer() else round(per_run, 3)}

    return ([convert(row, row.get("count") or 1) for row in summary] if summary is not None else None,
            [convert(row, 1) for row in nodes] if nodes is not None else None)


def _regular_section(lines: list[str]) -> tuple[list[str] | None, list[str]]:
    if _REGULAR_HEADER in lines:
        return lines[lines.index(_REGULAR_HEADER) + 1:], []
    if _INIT_HEADER in lines:
        return None, ["op profile: the log ends before the per-operator tables"]
    for index, line in enumerate(lines):  # builds before ~2.2 print the tables with no section header
        banner = _BANNER_RE.match(line)
        if banner and banner["title"] in (_NODES_TITLE, _SUMMARY_TITLE):
            return lines[index:], []
    return None, []


def _read_tables(section: list[str], warnings: list[str]) -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = {}
    pending: str | None = None  # title whose header line comes next
    rows: list[dict] | None = None
    columns: list[str] = []
    for line in section:
        banner = _BANNER_RE.match(line)
        if banner:
            pending, rows = banner["title"], None
            if pending in tables:
                if pending == _SUMMARY_TITLE:
                    warnings.append(f"op profile: several '{pending}' tables; only the first is reported")
                pending = None
        elif pending is not None:
            columns = _columns(line) or []
            rows = tables.setdefault(pending, []) if columns else None
            pending = None
        elif rows is None or not line:
            rows = None
        else:
            row = _parse_row(line, columns)
            if row is None:
                warnings.append(f"op profile: row not understood, table cut short: {line[:120]!r}")
                rows = None
            else:
                rows.append(row)
    return tables


def _columns(header: str) -> list[str] | None:
    labels = _COLUMN_RE.findall(header)
    if not labels or labels[0].strip().lower() != "node type":
        return None
    names = [label.strip().lower() for label in labels]
    return [_COLUMN_KEYS.get(name, re.sub(r"\W+", "_", name)) for name in names]


def _parse_row(line: str, columns: list[str]) -> dict | None:
    cells = [cell.strip() for cell in line.split("\t")]
    if len(cells) != len(columns):
        cells = _split_on_spaces(line.split(), columns)
    if cells is None:
        return None
    row = {}
    for key, cell in zip(columns, cells):
        value = _cell_value(key, cell)
        if value is None:
            return None
        row[key] = value
    return row


def _split_on_spaces(tokens: list[str], columns: list[str]) -> list[str] | None:
    """Split a row whose tabs became spaces: text first column, numeric middle, optional text ``name``."""
    has_name = columns[-1] == "name"
    width = len(columns) - 1 - has_name
    for start in range(1, len(tokens) - width + 1):
        numbers, rest = tokens[start:start + width], tokens[start + width:]
        if all(_NUMERIC_CELL_RE.fullmatch(token) for token in numbers):
            if bool(rest) != has_name:
                return None
            return [" ".join(tokens[:start]), *numbers] + ([" ".join(rest)] if has_name else [])
    return None


def _cell_value(key: str, cell: str) -> str | int | float | None:
    if key in _INT_KEYS:
        return int(cell) if cell.isdecimal() else None
    if key in _FLOAT_KEYS:
        value = float(cell.rstrip("%")) if _NUMERIC_CELL_RE.fullmatch(cell) else None
        return value if value is not None and math.isfinite(value) else None
    return cell or None


def _project(rows: list[dict] | None, keys: tuple[str, ...]) -> list[dict] | None:
    if rows is None:
        return None
    return [{key: row.get(key) for key in keys} for row in rows]
