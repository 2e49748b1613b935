"""Per-operator times of a result row, and which operators changed most between two sides of a comparison.

A row's op times (stored beside its run by :class:`device_bench.store.ResultStore`) are one dict::

    {"source": "benchmark_model",                      # or "mnbench profile": who measured them
     "by_type": {"CONV_2D": 1234.5, ...},              # us per inference, all nodes of the type together
     "by_node": {"[conv1/Relu6]:0": {"type": "CONV_2D", "us": 76.4}, ...}}   # may be empty

* ``benchmark_model --enable_op_profiling=true`` (phones): ``by_type`` from the "Summary by node type" table
  (its ``[avg ms]`` is the average time per run of every node of the type: in the SSD log of
  tests/data/benchmark_logs the two ``TfLiteXNNPackDelegate`` nodes' 23.614 + 0.992 ms are the type's
  24.606 ms), ``by_node`` from the "Run Order" table, named as the tool names them
  (``[output tensors]:node index``), see :mod:`device_bench.op_profile`.
* ``mnbench profile --by op`` (host, :mod:`device_bench.profile`): what each operator adds to its layer,
  named the same way (``[output tensors]:operator index``), summed per type. These can be negative (XNNPACK
  runs a longer chain as one faster kernel); they add up to the model's time less one invoke floor.

The two sources measure different things, so only op times of one source are compared. Per-operator times
come from one profiled run per row and carry no interval: they say where a change is, the verdict on the
model's latency says whether there is one.
"""

from __future__ import annotations

import collections
import math
import re
from typing import Any, Iterable, Mapping

SOURCES = ("benchmark_model", "mnbench profile")
TOP = 10  # changes kept per list (by type, by node)
_NODE_INDEX_RE = re.compile(r":\d+$")


class OpTimesError(ValueError):
    """Op times that are not in the shape above."""


def from_benchmark_tables(summary: list[dict] | None, nodes: list[dict] | None) -> dict | None:
    """Op times from :func:`device_bench.op_profile.parse_op_profile`'s tables; None without a summary."""
    if not summary:
        return None
    by_type: dict[str, float] = {}
    for entry in summary:
        if entry.get("node_type") and entry.get("avg_ms") is not None:
            by_type[entry["node_type"]] = by_type.get(entry["node_type"], 0.0) + entry["avg_ms"] * 1000
    by_node: dict[str, dict] = {}
    for entry in nodes or []:
        name, kind, avg_ms = entry.get("name"), entry.get("node_type"), entry.get("avg_ms")
        if name and kind and avg_ms is not None:
            known = by_node.setdefault(name, {"type": kind, "us": 0.0})
            known["us"] += avg_ms * 1000
    return check({"source": "benchmark_model", "by_type": by_type, "by_node": by_node}) if by_type else None


def from_profile(report: Mapping[str, Any]) -> dict:
    """Op times from a ``device_bench.profile.profile(..., by="op")`` report."""
    if report.get("by") != "op":
        raise OpTimesError(f"op times need a profile by operator, received by={report.get('by')!r}")
    by_node = {row["node"]: {"type": next(iter(row["op_types"])), "us": float(row["median_us"])}
               for row in report["slices"]}
    return check({"source": "mnbench profile", "by_type": {name: float(us) for name, us in
                                                            report["by_op_type"].items()},
                  "by_node": by_node})


def check(value: Any) -> dict:
    """``value`` if it is op times in the shape of the module docstring, else :class:`OpTimesError`."""
    if not isinstance(value, Mapping) or set(value) != {"source", "by_type", "by_node"}:
        raise OpTimesError("op times must be an object with exactly source, by_type and by_node")
    if value["source"] not in SOURCES:
        raise OpTimesError(f"op times source must be one of {SOURCES}, received {value['source']!r}")
    by_type, by_node = value["by_type"], value["by_node"]
    if not isinstance(by_type, Mapping) or not by_type or not all(
            isinstance(name, str) and name and _finite(us) for name, us in by_type.items()):
        raise OpTimesError("op times by_type must map operator types to finite times in us")
    if not isinstance(by_node, Mapping) or not all(
            isinstance(name, str) and name and isinstance(entry, Mapping) and set(entry) == {"type", "us"}
            and isinstance(entry["type"], str) and _finite(entry["us"]) for name, entry in by_node.items()):
        raise OpTimesError("op times by_node must map node names to {type, us}")
    return {"source": value["source"], "by_type": {name: float(us) for name, us in by_type.items()},
            "by_node": {name: {"type": entry["type"], "us": float(entry["us"])}
                        for name, entry in by_node.items()}}


def mean(records: Iterable[dict]) -> dict | None:
    """The average op times of several rows of one source (a type or node missing from a row counts 0
    there); None when there are none, :class:`OpTimesError` when the sources differ."""
    records = list(records)
    if not records:
        return None
    sources = {record["source"] for record in records}
    if len(sources) > 1:
        raise OpTimesError(f"op times from different sources: {', '.join(sorted(sources))}")
    count = len(records)
    by_type: dict[str, float] = {}
    by_node: dict[str, dict] = {}
    for record in records:
        for name, us in record["by_type"].items():
            by_type[name] = by_type.get(name, 0.0) + us / count
        for name, entry in record["by_node"].items():
            by_node.setdefault(name, {"type": entry["type"], "us": 0.0})["us"] += entry["us"] / count
    return {"source": sources.pop(), "by_type": by_type, "by_node": by_node}


def changes(baseline: Iterable[dict], current: Iterable[dict], top: int = TOP) -> dict | None:
    """Which operators changed most from the baseline rows' op times to the current rows'.

    Args:
        baseline, current: the op times of each side's rows (several are averaged, see :func:`mean`).
        top: entries kept in each list.

    Returns:
        None when a side has no op times or the two sides come from different sources, else
        ``{"source", "baseline_us", "current_us", "change_us", "by_type": [...], "by_node": [...],
        "nodes_unmatched": n}``: the operators' total per side and its change; per type (a type missing on
        one side is 0 there) and per node (only nodes found on both sides, see :func:`match_nodes`;
        ``nodes_unmatched`` counts the others), the entries with the largest change first, each
        ``{"name", "baseline_us", "current_us", "change_us", "ratio", "share"}`` (nodes also ``"type"``),
        ``share`` being the entry's part of the total change (None when the total did not change).
    """
    base, cur = mean(baseline), mean(current)
    if base is None or cur is None or base["source"] != cur["source"]:
        return None
    total_b, total_c = sum(base["by_type"].values()), sum(cur["by_type"].values())
    total = total_c - total_b
    types = [(name, base["by_type"].get(name, 0.0), cur["by_type"].get(name, 0.0), {})
             for name in dict.fromkeys([*base["by_type"], *cur["by_type"]])]
    matched = match_nodes(list(base["by_node"]), list(cur["by_node"]))
    nodes = [(name_c, base["by_node"][name_b]["us"], cur["by_node"][name_c]["us"],
              {"type": cur["by_node"][name_c]["type"]}) for name_b, name_c in matched]
    unmatched = len(base["by_node"]) + len(cur["by_node"]) - 2 * len(matched)
    return {"source": base["source"], "baseline_us": total_b, "current_us": total_c, "change_us": total,
            "by_type": _ranked(types, total, top), "by_node": _ranked(nodes, total, top),
            "nodes_unmatched": unmatched}


def match_nodes(baseline: list[str], current: list[str]) -> list[tuple[str, str]]:
    """``(baseline name, current name)`` of the nodes found on both sides, in baseline order.

    Names are compared without their node index where the rest of the name is unique on both sides
    (``[conv1/Relu6]:0`` is ``[conv1/Relu6]:12`` once 12 operators were added before it); a name whose rest
    repeats (``[x]:3`` and ``[x]:4``) matches only the very same name.
    """
    stems_b = collections.Counter(_NODE_INDEX_RE.sub("", name) for name in baseline)
    stems_c = collections.Counter(_NODE_INDEX_RE.sub("", name) for name in current)
    by_stem = {_NODE_INDEX_RE.sub("", name): name for name in current}
    names_c = set(current)
    pairs = []
    for name in baseline:
        stem = _NODE_INDEX_RE.sub("", name)
        if stems_b[stem] == 1 and stems_c[stem] == 1:
            pairs.append((name, by_stem[stem]))
        elif name in names_c:
            pairs.append((name, name))
    return pairs


def _ranked(entries: list[tuple], total: float, top: int) -> list[dict]:
    out = [{"name": name, **extra, "baseline_us": before, "current_us": after, "change_us": after - before,
            "ratio": after / before if before > 0 and after >= 0 else None,
            "share": (after - before) / total if total else None}
           for name, before, after, extra in entries]
    return sorted(out, key=lambda entry: -abs(entry["change_us"]))[:top]


def summary(found: dict | None, count: int = 3) -> str:
    """One line naming the types that changed most, e.g. ``MUL +0.213 ms (x3.10, 96 % of the change)``."""
    if not found or not found["by_type"]:
        return ""
    return ", ".join(describe(entry) for entry in found["by_type"][:count])


def describe(entry: dict) -> str:
    """``NAME +0.213 ms (x3.10, 96 % of the change)`` for one entry of :func:`changes`."""
    parts = [f"x{entry['ratio']:.2f}" if entry["ratio"] is not None else "new"
             if entry["baseline_us"] == 0 else None,
             f"{entry['share']:.0%} of the change" if entry["share"] is not None else None]
    detail = ", ".join(part for part in parts if part)
    return f"{entry['name']} {entry['change_us'] / 1000:+.3f} ms" + (f" ({detail})" if detail else "")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
