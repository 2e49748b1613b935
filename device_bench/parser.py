"""Turn the text output of TFLite/LiteRT ``benchmark_model`` into result rows.

Output eras (as in ``shared/fixtures/benchmark_logs/SOURCES.md``): ``A`` ends with ``Average inference
timings in us: Warmup:, Init:, no stats:`` (TF 1.x); ``B`` with ``Inference timings in us: Init:, First
inference:, Warmup (avg):, Inference (avg):`` and ``Peak memory footprint (MB)`` (TF ~2.2-2.6); ``C`` says
``Memory footprint delta from the start of the tool (MB)`` and later adds ``INFO:`` prefixes and ``p5=
median= p95=``; ``D`` (LiteRT ``litert/tools``) ends with a millisecond ``BENCHMARK RESULTS`` block (with
``Signature name:`` for a model of several signatures).

``units`` counts the model's operators per unit that ran them (``GPU``, ``NPU``, ``XNNPACK``, ``NNAPI``, ...,
and ``CPU`` for the built-in kernels no delegate took), from TFLite's ``Replacing N out of M node(s) with
delegate (NAME)`` lines (``tflite/core/subgraph.cc``; on Android the tool prints them at VERBOSE, which
``tflite/minimal_logging_android.cc`` lets through to stderr) and LiteRT's NPU compiler line ``Partitioned
subgraph<i>, selected N ops, from a total of M ops`` (``litert/compiler/plugin/compiler_plugin.cc``). LiteRT's
GPU accelerator names its delegate ``LITERT_CL``, its NPU ``DispatchDelegate``
(``litert/runtime/dispatch/dispatch_delegate.cc``).

Figures are copied from the text (ms times 1000); what the text does not say is ``None``. If the text
stops inside its last line, that line's last word is dropped when it holds a digit (it may be cut short).
``init_us``, ``first_us``, ``warmup_avg_us``, ``avg_us`` come from the summary line or LiteRT block, else
from the ``count=`` lines; ``std_us`` to ``p95_us`` and ``count`` come from the timed ``count=`` line.

Figures no real run can give fail the run with the reason ("impossible figures: ..."): a negative time, a
count below 1, min <= p5 <= median <= p95 <= max broken, an average outside [min, max], or a ``count=``
value that is not a plain ASCII number (float() would read full-width digits, inf and nan).

Parsing takes time linear in the text: the log-prefix patterns are unambiguous (no two adjacent parts can
match the same characters), prefixes are stripped at a moving position, and only the first
:data:`MAX_LINE_CHARS` characters of a line are read (the tool's own lines are far shorter).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import NamedTuple

from .errors import ToolOutputParseError
from .op_profile import parse_op_profile

ROW_KEYS = (
    "status", "error", "init_us", "first_us", "warmup_avg_us", "avg_us", "std_us", "min_us", "max_us",
    "median_us", "p5_us", "p95_us", "count", "warmup_count", "mem_init_mb", "mem_overall_mb", "mem_peak_mb",
    "num_threads", "graph", "delegate_nodes", "total_nodes", "partitions", "delegates", "op_profile",
    "op_profile_nodes", "tool_format", "warnings", "signature", "units",
)

_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_LEVELS = {"I": "INFO", "W": "WARNING", "WARN": "WARNING", "E": "ERROR", "F": "FATAL", "V": "VERBOSE"}
_PREFIX_RES = (  # unambiguous patterns (no two adjacent parts can match the same text): linear time
    re.compile(r"(?P<level>INFO|VERBOSE|WARNING|WARN|ERROR|FATAL): ?"),
    re.compile(r"(?P<level>[IWEFV])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s:]+:\d+\] ?", re.ASCII),  # absl
    re.compile(r"\d\d-\d\d [\d:.]+\s+\d+\s+\d+\s+(?P<level>[VIWEF])\s(?P<tag>[^:]*): ?", re.ASCII),  # logcat
    re.compile(r"(?P<level>[VIWEF])/(?P<tag>[^(:]*)\(\s*\d+\): ?", re.ASCII),  # logcat -v brief
    re.compile(r"\[[^\]\s]+:\d+\] ?", re.ASCII),  # LiteRT's [file:line] tag
)
_SPACES_RE = re.compile(r"\s*")
MAX_LINE_CHARS = 4096  # the tool's lines are short; longer ones are read only this far (bounds the work)
_TOOL_TAGS = ("tflite", "litert")  # logcat tags of the tool; other apps' lines are noise
_TOOL_LINE_RE = re.compile(
    r"STARTING!|(?:count|curr)=\d|Running benchmark for|Initialized session in|(?:Average )?[Ii]nference"
    r" timings|Loaded model |Loading model from:|Graph: \[|Num threads: \[|(?:Operator-wise )?Profiling Info"
    r" for|=+ (?:Run Order|Summary by node type|BENCHMARK RESULTS) =+|Benchmarking failed"
    r"|Peak memory footprint \(MB\)|Memory footprint delta", re.ASCII)
_RUNNING_RE = re.compile(r"Running benchmark for (?:at least |max )?\d+ iterations", re.ASCII)
_STAT_RE = re.compile(r"(?:count|curr)=")
_FULL_STAT_ENDS = {"first": "std", "p5": "p95"}  # a whole count= line with the key has its partner
_SUMMARY_RE = re.compile(r"(?P<old>Average )?[Ii]nference timings in us:(?P<rest>.*)")
_SUMMARY_KEYS = {"init": "init_us", "first inference": "first_us", "warmup (avg)": "warmup_avg_us",
                 "warmup": "warmup_avg_us", "inference (avg)": "avg_us", "inference": "avg_us",
                 "no stats": "avg_us"}
_LITERT_FIELD_RE = re.compile(
    r"(?P<key>[A-Za-z][A-Za-z ()]*?):\s+(?P<value>\S+)(?: ms| MB)?(?: \((?P<runs>\d+) runs\))?$", re.ASCII)
_LITERT_KEYS = {  # times in ms, "Inference (std)" too although it prints no unit
    "Model initialization": "init_us", "Warmup (first)": "first_us", "Warmup (avg)": "warmup_avg_us",
    "Inference (avg)": "avg_us", "Inference (min)": "min_us", "Inference (max)": "max_us",
    "Inference (std)": "std_us", "Init footprint": "mem_init_mb", "Overall footprint": "mem_overall_mb",
    "Peak memory": "mem_peak_mb"}
_SESSION_RE = re.compile(r"Initialized session in (?P<ms>\S+?)ms\.?$")
_MEMORY_RE = re.compile(
    r"(?P<kind>Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\):(?P<rest>.*)")
_PEAK_RE = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<value>\S+)")
_PARAM_RES = {"num_threads": re.compile(r"(?:Num threads|#threads used for CPU inference): \[(-?\d+)\]$",
                                        re.ASCII),
              "graph": re.compile(r"Graph: \[(.+)\]$|(?:Loaded model|Loading model from:) (.+)$")}
_LITERT_MARK_RE = re.compile(r"BENCHMARK RESULTS|benchmark_litert_model|LiteRT environment")
_REPLACING_RE = re.compile(
    r"Replacing (?P<nodes>\d+) (?:out of (?P<total>\d+) )?node\(s\) with delegate \((?P<name>[^)]*)\)"
    r"(?: node)?"
    r"(?:, yielding (?P<parts>\d+) partitions?)?(?: for (?:subgraph (?P<subgraph>\d+)|the whole graph))?",
    re.ASCII)
_EXPLICIT_RE = re.compile(r"Explicitly applied (?P<name>\S+) delegate, and the model graph will be "
                          r"(?P<how>\w+) executed by the delegate(?: w/ (?P<kernels>\d+) delegate kernels)?",
                          re.ASCII)
_UNUSED_RE = re.compile(r"Though (?P<name>\S+) delegate is explicitly applied, the model graph will not be")
_XNNPACK_CREATED = "Created TensorFlow Lite XNNPACK delegate for CPU."
_DEFAULT_FAILED = "Ignoring failed application of the default TensorFlow Lite delegate"
_DELEGATE_ALIASES = {"TfLiteXNNPackDelegate": "XNNPACK", "TfLiteNnapiDelegate": "NNAPI",
                     "TfLiteGpuDelegate": "GPU", "TfLiteGpuDelegateV2": "GPU",
                     "TfLiteHexagonDelegate": "HEXAGON", "Hexagon": "HEXAGON",
                     "LITERT_CL": "GPU",  # LiteRT's OpenCL GPU accelerator
                     "DispatchDelegate": "NPU"}  # LiteRT's NPU (litert/runtime/dispatch/dispatch_delegate.cc)
# LiteRT's NPU compiler plugin (litert/compiler/plugin/compiler_plugin.cc) counts the model's own operators;
# the DispatchDelegate's "Replacing" line then counts the rewritten graph's nodes (dispatch ops + the rest).
_PARTITIONED_RE = re.compile(r"Partitioned subgraph<(?P<subgraph>\d+)>, selected (?P<nodes>\d+) ops, from a "
                             r"total of (?P<total>\d+) ops", re.ASCII)
_DISPATCH_FAILED = "Failed to create a dispatch delegate kernel"  # dispatch_delegate.cc: the NPU took nothing
_SIGNATURE_RES = (re.compile(r"Signature name:\s+(\S.*)$"), re.compile(r"Signature to run: \[(.+)\]$"))
_CRASH_RE = re.compile(
    r"\b(?:Segmentation fault|Bus error|Illegal instruction|Aborted|Floating point exception)\b|^Killed\b"
    r"|Fatal signal \d+ \(\w+\)|terminate called after throwing.*|CANNOT LINK EXECUTABLE.*")
_BENCH_FAILED_RE = re.compile(r"Benchmarking failed\.?$")
_DELEGATE_FAILED_RE = re.compile(r"Failed to apply \S+ delegate\.?$")
_CAUSE_RE = re.compile(
    r"Failed to |Could not |Unable to |Disallowed CPU fallback|.*failed to (?:prepare|invoke)")
_NOISE = "All log messages before absl::InitializeLog() is called"
_UNCONSUMED = "Unconsumed cmdline flags:"  # a flag the tool ignored (benchmark_model.cc ParseFlags)


class _Line(NamedTuple):
    level: str | None  # INFO, WARNING, ERROR, ... from a log prefix; None for bare tool or shell output
    text: str  # the line without log prefixes and outer whitespace
    cut: bool  # the text ends inside this line


def split_runs(text: str) -> list[str]:
    """Split a log into its ``benchmark_model`` invocations.

    Each invocation starts at the tool's ``STARTING!`` banner (with its ``INFO:`` prefix; a shell command
    glued in front of the banner is left out). Text before the first banner is kept as a run of its own only
    when it holds tool output, as in an excerpt that begins mid-run; shell noise is dropped.

    Args:
        text: the captured output, possibly of several invocations.

    Returns:
        The text of each invocation, in order; empty when there is no tool output.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    starts, line_start = [], 0
    for full_line in text.split("\n"):
        line = full_line[:MAX_LINE_CHARS]  # what _lines reads of it
        banner_at = line.find("STARTING!")
        if banner_at >= 0:  # glued to a shell command: the run starts at the banner, else at its line
            starts.append(line_start + (banner_at if _strip_prefixes(line[:banner_at])[1] else 0))
        while (banner_at := line.find("STARTING!", banner_at + 1)) >= 0:
            starts.append(line_start + banner_at)  # a later banner on the same line follows tool text
        line_start += len(full_line) + 1
    bounds = starts + [len(text)]
    head, runs = text[:bounds[0]], [text[start:end] for start, end in zip(bounds, bounds[1:])]
    return ([head] if _has_tool_output(_lines(head)[0]) else []) + runs


def parse_log(text: str) -> list[dict]:
    """Parse every invocation in a captured log.

    Args:
        text: the output of one or more ``benchmark_model`` invocations, with any surrounding noise.

    Returns:
        One row per invocation (see :func:`parse_run`).

    Raises:
        ToolOutputParseError: the text holds no ``benchmark_model`` output at all.
    """
    runs = split_runs(text)
    if not runs:
        raise ToolOutputParseError(f"no benchmark_model output in the text: {text.strip()[:80]!r}")
    return [parse_run(run) for run in runs]


def parse_last_run(text: str) -> dict:
    """Parse only the last invocation in a captured log (what a harness that ran the tool once needs).

    Raises:
        ToolOutputParseError: the text holds no ``benchmark_model`` output at all.
    """
    runs = split_runs(text)
    if not runs:
        raise ToolOutputParseError(f"no benchmark_model output in the text: {text.strip()[:80]!r}")
    return parse_run(runs[-1])


def parse_run(text: str) -> dict:
    """Parse the output of one ``benchmark_model`` invocation.

    Args:
        text: the invocation's output; log prefixes, CRLF and trailing spaces are tolerated.

    Returns:
        A dict with exactly the keys of :data:`ROW_KEYS`. ``status`` is ``"ok"`` only when the inference
        average and the summary were printed, nothing failed and the figures are possible; otherwise
        ``"failed"`` and ``error`` says why (``"truncated: …"`` for a log that stops early). Figures the log
        does not give are ``None``.

    Raises:
        ToolOutputParseError: the text holds no ``benchmark_model`` output at all.
    """
    lines, warnings = _lines(text)
    if not _has_tool_output(lines):
        raise ToolOutputParseError(f"not benchmark_model output: {text.strip()[:80]!r}")
    row = dict.fromkeys(ROW_KEYS)
    row.update(_params(lines, warnings))
    block = _litert_block(lines)
    summary, summary_era = _summary_line(lines)
    timings, impossible_stat = _timings(lines, _first(summary, block, {}), block or {}, warnings)
    row.update(timings)
    memory_era = _memory(lines, block or {}, row)
    row.update(_delegation(lines, warnings))
    row["units"] = _units(lines)
    row["signature"] = next((match[1] for line in lines if not line.cut for signature_re in _SIGNATURE_RES
                             if (match := signature_re.match(line.text))), None)
    error = _failure(lines, warnings)
    row["op_profile"], row["op_profile_nodes"], profile_warnings = parse_op_profile(
        [line.text for line in lines if not line.cut])
    row["warnings"] = warnings + profile_warnings
    row["tool_format"] = _tool_format(text, lines, summary_era or memory_era)
    has_summary = summary is not None or block is not None
    error = error or impossible_stat or _impossible(row)
    row["status"], row["error"] = _status(error, has_summary, row["avg_us"])
    return row


def _has_tool_output(lines: list[_Line]) -> bool:
    return any(_TOOL_LINE_RE.match(line.text) for line in lines)


def _lines(text: str) -> tuple[list[_Line], list[str]]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    raw_lines = text.split("\n")
    ends_mid_line = bool(text) and not text[-1].isspace()
    lines, warnings = [], []
    for index, raw in enumerate(raw_lines):
        capped = len(raw) > MAX_LINE_CHARS
        mid_word = capped and not (raw[MAX_LINE_CHARS - 1].isspace() or raw[MAX_LINE_CHARS].isspace())
        if capped:
            warnings.append(f"line {index + 1} has {len(raw)} characters; read only its first "
                            f"{MAX_LINE_CHARS}")
            raw = raw[:MAX_LINE_CHARS]
        level, body = _strip_prefixes(raw)
        ends_here = ends_mid_line and index == len(raw_lines) - 1
        cut = capped or ends_here
        words = body.rsplit(None, 1)
        if (ends_here or mid_word) and words and any(char.isdigit() for char in words[-1]):
            warnings.append(f"the text ends mid-line; ignored its possibly cut last word {words[-1]!r}")
            body = words[0] if len(words) == 2 else ""
        lines.append(_Line(level, body, cut))
    return lines, warnings


def _strip_prefixes(line: str) -> tuple[str | None, str]:
    """``(level, text)`` of a line without its log prefixes; text "" for another app's logcat line.

    Matches at a moving position instead of slicing, so a line of many prefixes costs linear time.
    """
    level, line = None, line.strip()
    at = 0
    while match := next(filter(None, (prefix_re.match(line, at) for prefix_re in _PREFIX_RES)), None):
        found = match.groupdict()
        level = _LEVELS.get(found.get("level"), found.get("level")) or level
        tag = (found.get("tag") or "").strip() if "tag" in found else None
        if tag is not None and level != "FATAL" and not tag.lower().startswith(_TOOL_TAGS):
            return level, ""  # another app's line; keep native crashes (F libc: Fatal signal)
        at = _SPACES_RE.match(line, match.end()).end()
    return level, line[at:]


def _number(text: str | None) -> float | None:
    value = float(text) if text and _NUMBER_RE.fullmatch(text) else None
    return value if value is not None and math.isfinite(value) else None


def _ms_to_us(text: str | None) -> float | None:
    return float(Decimal(text) * 1000) if _number(text) is not None else None


def _first(*values):
    return next((value for value in values if value is not None), None)


def _int(value: str | float | None) -> int | None:
    return int(value) if value is not None else None


def _params(lines: list[_Line], warnings: list[str]) -> dict:
    found = {}
    for key, param_re in _PARAM_RES.items():  # a cut last line may hold half a path
        matches = (param_re.match(line.text) for line in lines if not line.cut)
        found[key] = next((_first(*match.groups()) for match in matches if match), None)
    found["num_threads"] = _int(found["num_threads"])
    warnings.extend(line.text for line in lines if line.text.startswith(_UNCONSUMED))
    return found


def _timings(lines: list[_Line], top: dict, block: dict, warnings: list[str]) -> tuple[dict, str | None]:
    """Merge the summary (``top``: summary line or LiteRT block) with the ``count=`` lines.

    Returns the figures and why a ``count=`` line's own figures are impossible (None when they are not).
    """
    warmup, timed = _phase_stats(lines, warnings)
    impossible = next(filter(None, (f"figures that are not numbers: {stat['unreadable']}"
                                    if "unreadable" in stat else
                                    _impossible({f"{key}_us" if key != "count" else key: value
                                                 for key, value in stat.items()})
                                    for stat in (warmup, timed))), None)
    session_ms = next((match["ms"] for line in lines if (match := _SESSION_RE.match(line.text))), None)
    found = {"init_us": _first(top.get("init_us"), _ms_to_us(session_ms)),
             "first_us": _first(top.get("first_us"), warmup.get("first")),
             "warmup_avg_us": _first(top.get("warmup_avg_us"), warmup.get("avg")),
             "avg_us": top.get("avg_us")}
    if found["avg_us"] is None and timed.get("avg") is not None:
        found["avg_us"] = timed["avg"]
        warnings.append("avg_us is the avg= of the timed count= line: the summary does not give it")
    for key in ("std", "min", "max", "median", "p5", "p95"):
        found[f"{key}_us"] = _first(timed.get(key), block.get(f"{key}_us"))
    for key, stat in (("count", timed), ("warmup_count", warmup)):
        found[key] = _int(_first(stat.get("count"), block.get(key)))
    return found, impossible


def _phase_stats(lines: list[_Line], warnings: list[str]) -> tuple[dict, dict]:
    """Return the ``count=`` lines printed after the first (warmup) and second (timed) run banners."""
    phases, found = 0, [None, None]
    for line in lines:
        phases += bool(_RUNNING_RE.match(line.text))
        stat = _parse_stat(line, warnings)
        if stat is not None and phases in (1, 2) and found[phases - 1] is None:
            found[phases - 1] = stat
        elif stat is not None:
            warnings.append(f"count= line outside the warmup and timed runs ignored: {line.text[:120]}")
    return found[0] or {}, found[1] or {}


def _parse_stat(line: _Line, warnings: list[str]) -> dict | None:
    if not _STAT_RE.match(line.text):
        return None
    pairs = [token.partition("=") for token in line.text.replace("(all same)", " all_same=1").split()]
    cut_here = not (pairs[-1][1] and pairs[-1][2])  # a bare word or "key=" ends it: it was cut there
    pairs = pairs[:-1] if cut_here else pairs
    if any(not sep or not key.isidentifier() for key, sep, _ in pairs):
        return None
    keys = [key for key, _, _ in pairs]
    values = {key: _number(value) for key, _, value in pairs}
    unreadable = [f"{key}={value}" for key, _, value in pairs if value and values[key] is None]
    if any(key in keys and end not in keys for key, end in _FULL_STAT_ENDS.items()) and not line.cut:
        warnings.append(f"count= line is incomplete; ignored what may be cut: {line.text[:120]}")
        if not cut_here:  # the last value itself may be cut short
            values[keys[-1]] = None
    values = {key: value for key, value in values.items() if value is not None}
    if unreadable and not line.cut:  # non-ASCII digits (which float() accepts), inf, nan: fail the run
        values["unreadable"] = ", ".join(unreadable)[:120]
    elif "count" not in values:
        return None
    if "first" not in keys and "curr" in values and ("all_same" in values or values.get("count") == 1):
        for key in ("first", "min", "max", "avg"):  # only curr= is printed when all runs took as long
            values.setdefault(key, values["curr"])
    return values


def _summary_line(lines: list[_Line]) -> tuple[dict | None, str | None]:
    for line in lines:
        match = _SUMMARY_RE.match(line.text)
        if match:
            figures = {}
            for piece in match["rest"].split(","):
                key, _, value = piece.partition(":")
                field, number = _SUMMARY_KEYS.get(key.strip().lower()), _number(value.strip())
                if field and number is not None:
                    figures.setdefault(field, number)
            return figures, "A" if match["old"] else None
    return None, None


def _litert_block(lines: list[_Line]) -> dict | None:
    texts = [line.text for line in lines]
    start = next((at for at, text in enumerate(texts) if re.fullmatch(r"=+ BENCHMARK RESULTS =+", text)),
                 None)
    if start is None:
        return None
    figures = {}
    for text in texts[start + 1:]:
        if re.fullmatch(r"=+", text):
            break
        match = _LITERT_FIELD_RE.match(text)
        field = _LITERT_KEYS.get(match["key"]) if match else None
        if field is None or _number(match["value"]) is None:
            continue
        figures[field] = float(match["value"]) if field.endswith("_mb") else _ms_to_us(match["value"])
        if match["runs"]:
            figures["warmup_count" if field == "warmup_avg_us" else "count"] = int(match["runs"])
    return figures


def _memory(lines: list[_Line], block: dict, row: dict) -> str | None:
    """Fill the ``mem_*_mb`` fields of ``row``; return the era ("B", "C") its wording shows, if any."""
    era = None
    for line in lines:
        if match := _MEMORY_RE.match(line.text):
            era = "B" if match["kind"].startswith("Peak") else "C"
            pairs = dict(token.partition("=")[::2] for token in match["rest"].split())
            row["mem_init_mb"] = _number(pairs.get("init"))
            row["mem_overall_mb"] = _number(pairs.get("overall"))
        elif match := _PEAK_RE.match(line.text):
            row["mem_peak_mb"] = _number(match["value"])
    for key in ("mem_init_mb", "mem_overall_mb", "mem_peak_mb"):
        row[key] = _first(row[key], block.get(key))
    return era


def _delegation(lines: list[_Line], warnings: list[str]) -> dict:
    """Find the delegates applied and how much of the graph they took, warning about CPU fallback."""
    names, replaced, kernels = [], {}, None
    for line in lines:
        if match := _REPLACING_RE.match(line.text):
            name = _DELEGATE_ALIASES.get(match["name"], match["name"])
            counts = (int(match["nodes"]), _int(match["total"]), _int(match["parts"]))
            replaced.setdefault(name, {})[match["subgraph"] or "0"] = counts
        elif match := _EXPLICIT_RE.match(line.text):
            name, kernels = match["name"], _int(match["kernels"])
            if match["how"] != "completely":
                detail = f" ({kernels} delegate kernels)" if kernels is not None else ""
                warnings.append(f"{name} delegate: the model graph will be {match['how']} executed by the "
                                f"delegate{detail}")
        elif match := _UNUSED_RE.match(line.text):  # the delegate took nodes, then gave them back
            name = _DELEGATE_ALIASES.get(match["name"], match["name"])
            warnings.append(f"{name} delegate was applied but will not execute any node (CPU fallback)")
            names, kernels = [known for known in names if known != name], 0
            for subgraph, (_, total, _) in replaced.get(name, {}).items():
                replaced[name][subgraph] = (0, total, 0)
            continue
        elif line.text == _XNNPACK_CREATED:
            name = "XNNPACK"
        elif line.text.startswith(_DEFAULT_FAILED):
            warnings.append(line.text)
            names = [known for known in names if known != "XNNPACK" or known in replaced]
            continue
        else:
            continue
        names += [name] if name not in names else []
    return {"delegates": names, **_node_counts(replaced, kernels, warnings)}


def _units(lines: list[_Line]) -> dict[str, int] | None:
    """Operators per unit (GPU, NPU, XNNPACK, ... and ``CPU`` for the built-in kernels that no delegate took),
    summed over subgraphs; None when the log has no ``Replacing`` or NPU ``Partitioned`` line.

    Delegates are applied one after the other: each ``Replacing N out of M`` counts operators the earlier ones
    left; the graph's own operator count is the first line's M (or the NPU compiler's total).
    """
    replacing: dict[str, list[tuple[str, int, int]]] = {}
    compiled: dict[str, tuple[int, int]] = {}
    unused = set()
    for line in lines:
        if line.cut:
            continue
        if match := _REPLACING_RE.match(line.text):
            name = _DELEGATE_ALIASES.get(match["name"], match["name"])
            if match["total"] is not None:
                replacing.setdefault(match["subgraph"] or "0", []).append(
                    (name, int(match["nodes"]), int(match["total"])))
        elif match := _PARTITIONED_RE.match(line.text):
            compiled[match["subgraph"]] = (int(match["nodes"]), int(match["total"]))
        elif match := _UNUSED_RE.match(line.text):
            unused.add(_DELEGATE_ALIASES.get(match["name"], match["name"]))
        elif line.text.startswith(_DISPATCH_FAILED):
            unused.add("NPU")
    if not replacing and not compiled:
        return None
    units: dict[str, int] = {}
    for subgraph in sorted(set(replacing) | set(compiled), key=int):
        entries = replacing.get(subgraph, [])
        npu_ops, total = compiled.get(subgraph, (None, entries[0][2] if entries else 0))
        taken = {} if npu_ops is None else {"NPU": npu_ops}
        for name, nodes, _ in entries:
            if not (name == "NPU" and npu_ops is not None):  # dispatch nodes are not operators
                taken[name] = taken.get(name, 0) + nodes
        taken = {name: 0 if name in unused else ops for name, ops in taken.items()}
        taken["CPU"] = max(total - sum(taken.values()), 0)
        for name, ops in taken.items():
            units[name] = units.get(name, 0) + ops
    return units


def _node_counts(replaced: dict, kernels: int | None, warnings: list[str]) -> dict:
    """Sum the first delegate's ``Replacing`` lines over subgraphs; warn where it left nodes on the CPU."""
    for name, subgraphs in replaced.items():
        for subgraph, (nodes, total, _) in subgraphs.items():
            if total is not None and nodes < total:
                where = f" in subgraph {subgraph}" if len(subgraphs) > 1 else ""
                warnings.append(f"delegate {name} applied to {nodes} of {total} nodes{where}; "
                                "the rest run on CPU")
    if not replaced:
        return {"delegate_nodes": None, "total_nodes": None, "partitions": kernels}
    primary = next(iter(replaced))
    if len(replaced) > 1:
        warnings.append(f"several delegates replaced nodes ({', '.join(replaced)}); "
                        f"node counts are {primary}'s")
    sums = [sum(column) if None not in column else None for column in zip(*replaced[primary].values())]
    return {"delegate_nodes": sums[0], "total_nodes": sums[1], "partitions": _first(sums[2], kernels)}


def _failure(lines: list[_Line], warnings: list[str]) -> str | None:
    """Return why the run failed (a crash, a delegate failure, "Benchmarking failed"), or None."""
    crash = next((match.group(0) for line in lines if line.level in (None, "FATAL")
                  and (match := _CRASH_RE.search(line.text))), None)
    fatal = next((line.text for line in lines if line.level == "FATAL"), None)
    delegate = next((line.text for line in lines if _DELEGATE_FAILED_RE.match(line.text)), None)
    error = _first(crash, fatal, delegate)
    failed_at = next((index for index, line in enumerate(lines) if _BENCH_FAILED_RE.match(line.text)), None)
    if error is None and failed_at is not None:
        causes = [line.text for line in lines[:failed_at]
                  if line.level in ("ERROR", "FATAL") or _CAUSE_RE.match(line.text)]
        error = causes[-1] if causes else lines[failed_at].text
    warnings.extend(f"{line.level}: {line.text}" for line in lines
                    if line.level in ("ERROR", "WARNING") and line.text not in ("", error)
                    and not _BENCH_FAILED_RE.match(line.text)
                    and not line.text.startswith((_NOISE, _UNCONSUMED)))  # _params keeps the latter
    return error


_TIME_KEYS = ("init_us", "first_us", "warmup_avg_us", "avg_us", "std_us", "min_us", "max_us", "median_us",
              "p5_us", "p95_us")
_ORDERED_KEYS = ("min_us", "p5_us", "median_us", "p95_us", "max_us")  # each at most the next


def _impossible(figures: dict) -> str | None:
    """Why figures cannot come from one real run (negative times, no runs, avg outside [min, max])."""
    value = figures.get
    negative = [f"{_bare(key)} {value(key):g}" for key in _TIME_KEYS if (value(key) or 0) < 0]
    if negative:
        return f"impossible figures: negative {', '.join(negative)} us"
    if value("count") is not None and value("count") < 1:
        return f"impossible figures: count {value('count'):g} (no timed run)"
    present = [key for key in _ORDERED_KEYS if value(key) is not None]
    for low, high in zip(present, present[1:]):
        if value(low) > value(high) + _slack(value(high)):
            return f"impossible figures: {_bare(low)} {value(low):g} us > {_bare(high)} {value(high):g} us"
    low, high, avg = value("min_us"), value("max_us"), value("avg_us")
    if avg is not None and ((low is not None and avg < low - _slack(low))
                            or (high is not None and avg > high + _slack(high))):
        return (f"impossible figures: avg {avg:g} us is outside [min, max] = [{_shown(low)}, {_shown(high)}] "
                "us (the timed run's figures may come from another phase)")
    return None


def _bare(key: str) -> str:
    return key.removesuffix("_us")


def _slack(value: float) -> float:
    """Rounding allowed when comparing figures: the tool prints some with 6 significant digits."""
    return max(1.0, abs(value) * 1e-5)


def _shown(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _status(error: str | None, has_summary: bool, avg_us: float | None) -> tuple[str, str | None]:
    if error is None and avg_us is None:
        error = "no inference figures in the summary" if has_summary else "truncated: no inference figures"
    elif error is None and not has_summary:
        error = "truncated: no summary line"
    return "ok" if error is None else "failed", error


def _tool_format(text: str, lines: list[_Line], era: str | None) -> str | None:
    """Name the output era (see the module docstring); None when the log does not show which one."""
    if _LITERT_MARK_RE.search(text):
        return "D"
    if era == "A" or any(line.text.startswith(("resolved reporter", "Num runs: [")) for line in lines):
        return "A"
    if era is None and any((" p5=" in line.text and _STAT_RE.match(line.text))  # INFO: tool lines came in C
                           or (line.level == "INFO" and _TOOL_LINE_RE.match(line.text)) for line in lines):
        return "C"
    return era
