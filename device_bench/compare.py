"""Compare two result sets row by row: ratio of medians, its interval, a verdict (``mnbench compare``).

Pairing. With ``match="config"`` (the default) a row's model is its file name together with the
configuration (version, alpha, resolution, knobs, classes) and quantization recorded by the export, or the
file name alone for a model mnbench did not export: a pull request that changes the bytes exported for a
configuration is exactly what the gate must see, and the sha256 change is reported in the notes. (The file
name is part of it because one configuration and quantization can be exported several ways, e.g. int8 with
different h-swish lowerings, each with its own file suffix.) ``match="sha"`` pairs only identical model
files, for runtime or machine comparisons. Rows pair when model, threads, delegate and target agree. The
target is the machine that ran: for the host its CPU model, core count and architecture (the host name is
not part of it, so two runners of one type pair); for a phone its serial. Rows whose only partner ran on
another target are refused unless ``allow_different_targets``.

Statistics. Each side of a pair may hold several runs (rows) of the same configuration. With one run per
side the interval is ``stats.ratio_ci`` on the raw samples; with more, ``stats.run_level_ratio_ci`` (a
two-level bootstrap: processes, then samples inside each), so the spread between processes enters the
interval. A side measured in one process cannot show that spread, which on a shared machine is larger than
the spread inside a process (two processes of one model differ by ``PROCESS_SPREAD``, 4 %, in log sd), so
such a side adds it to the interval (in quadrature, on the log scale) and the note says so: one process
per side then cannot call a change of a few per cent. Rows without samples (``benchmark_model`` on phones
prints none) fall back to their summary: the log-median's standard error from ``std_us/mean_us`` and
``count`` (normal approximation, 1.2533 sigma/sqrt(n) per run), plus the spread between runs when there are
several; rows without a median (builds that print no percentiles) compare their averages instead, and the
pair's ``statistic`` and notes say so. Samples files with an empty list or a value that is not a finite
latency are bad input (``CompareError``). The verdict is ``stats.verdict``; a pair whose current rows all
failed while the baseline ran gets ``failed``.

Operators. Where both sides' ok rows have per-operator times (``mnbench device --op-profile`` on a phone,
``mnbench bench --op-profile`` on the host; :mod:`device_bench.op_times`), a pair's ``operators`` lists the
operator types, and the nodes whose names match, whose time changed most, with their share of the change
of all operators' time; None when either side has none.

Rendering (Markdown for pull requests, ``$GITHUB_STEP_SUMMARY``) is in :mod:`mnbench.report.markdown`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import BenchError, BenchInputError

from . import op_times, stats
from .store import is_missing, target_desc

__all__ = ["CompareError", "CompareSettings", "Comparison", "FAILING", "GateFailed", "PROCESS_SPREAD",
           "VERDICTS", "compare", "model_identity", "target_identity", "target_label"]

FAILING = {"regression": ("regression", "failed"), "noisy": ("regression", "failed", "noisy"), "never": ()}
VERDICTS = ("regression", "failed", "improvement", "unchanged", "noisy")
_MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2)  # SE(median) / SE(mean) for normal samples
# Standard deviation of log(B/A) between two single processes of the same model on this project's 2-core
# machine under everyday load: 0.043 over 140 A/A rounds of `mnbench ab` (results/ab_error_rates.csv,
# round_ratios, 2026-11-28). A side measured in one process cannot show this spread, so it is added.
PROCESS_SPREAD = 0.04
LoadSamples = Callable[[Mapping[str, Any]], Sequence[float]]
LoadOpTimes = Callable[[Mapping[str, Any]], "dict | None"]


class CompareError(BenchInputError):
    """Result sets that cannot be compared: missing, corrupt, nothing in common, or other targets."""


class GateFailed(BenchError):
    """The gate's verdict: a pair regressed, failed, or (``--fail-on noisy``) stayed undecided."""


@dataclass(frozen=True)
class CompareSettings:
    """How pairs are formed and judged (see the module docstring)."""

    threshold: float = 0.05
    confidence: float = 0.95
    match: str = "config"
    allow_different_targets: bool = False
    n_boot: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise CompareError(f"threshold must be in (0, 1), received {self.threshold!r}")
        if not 0.5 <= self.confidence < 1:
            raise CompareError(f"confidence must be in [0.5, 1), received {self.confidence!r}")
        if self.match not in ("config", "sha"):
            raise CompareError(f"match must be 'config' or 'sha', received {self.match!r}")


@dataclass
class Comparison:
    """The pairs (one row each, with ratio, interval and verdict) and the rows left unpaired."""

    pairs: pd.DataFrame
    unpaired: pd.DataFrame
    settings: CompareSettings
    baseline_runs: list[dict] = field(default_factory=list)
    current_runs: list[dict] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        values = self.pairs["verdict"].value_counts().to_dict() if len(self.pairs) else {}
        return {name: int(values.get(name, 0)) for name in VERDICTS}

    def failing(self, fail_on: str = "regression") -> bool:
        """Whether a pair has a verdict that ``fail_on`` (regression|noisy|never) fails the gate on."""
        return bool(len(self.pairs)) and self.pairs["verdict"].isin(FAILING[fail_on]).any()

    def as_dict(self) -> dict:
        return {"threshold": self.settings.threshold, "confidence": self.settings.confidence,
                "match": self.settings.match, "counts": self.counts(),
                "baseline_runs": self.baseline_runs, "current_runs": self.current_runs,
                "pairs": _records(self.pairs), "unpaired": _records(self.unpaired)}


def target_identity(row: Mapping[str, Any]) -> str:
    """What must agree for two rows to be comparable: host CPU/cores/arch, or the phone's serial."""
    desc = target_desc(row)
    if row.get("target_kind") == "host":
        return f"host|{desc.get('cpu')}|{desc.get('cores')}|{desc.get('machine')}"
    return f"{row.get('target_kind')}|{row.get('target')}"


def target_label(row: Mapping[str, Any]) -> str:
    """Human name of the target, e.g. ``host (AMD EPYC 7B13, 2 cores)`` or ``8A1X0 (Google Pixel 3)``."""
    desc = target_desc(row)
    if row.get("target_kind") == "host":
        return f"host ({desc.get('cpu')}, {desc.get('cores')} cores)"
    name = " ".join(str(desc[key]) for key in ("manufacturer", "model") if desc.get(key))
    return f"{row.get('target')} ({name})" if name else str(row.get("target"))


def model_identity(row: Mapping[str, Any], match: str = "config") -> str:
    """The model part of the pairing key (see the module docstring)."""
    if match == "sha" and _present(row.get("model_sha256")):
        return f"sha|{row['model_sha256']}"
    if _present(row.get("config")):
        config = json.dumps(json.loads(row["config"]), sort_keys=True)
        return f"config|{config}|{row.get('quant')}|{row.get('model')}"
    return f"file|{row.get('model')}"


def compare(baseline: pd.DataFrame, current: pd.DataFrame, load_samples: LoadSamples,
            settings: CompareSettings = CompareSettings(), load_op_times: LoadOpTimes | None = None
            ) -> Comparison:
    """Pairs the rows of two result sets and judges each pair.

    Args:
        baseline: rows in the results schema (``ResultStore.load``).
        current: rows of the candidate, same schema.
        load_samples: reads a row's raw latencies (``ResultStore.load_samples``).
        settings: threshold, confidence, pairing rules.
        load_op_times: reads a row's per-operator times or None (``ResultStore.load_op_times``); without
            it no pair has ``operators``.

    Returns:
        A :class:`Comparison`.

    Raises:
        CompareError: an empty side, nothing in common, or only other targets in common.
        StoreError: a samples file that is missing or corrupt (from ``load_samples``).
    """
    for name, frame in (("baseline", baseline), ("current", current)):
        if len(frame) == 0:
            raise CompareError(f"the {name} result set holds no rows")
    groups_b, groups_c = _groups(baseline, settings.match), _groups(current, settings.match)
    matches, unpaired = _match(groups_b, groups_c, settings.allow_different_targets)
    if not matches:
        raise CompareError(_nothing_in_common(groups_b, groups_c, unpaired))
    ran = [(key_b, key_c) for key_b, key_c in matches if any(r["status"] == "ok" for r in groups_b[key_b])]
    unpaired += [_leftover("current", groups_c[key_c], "every baseline run of it failed")
                 for key_b, key_c in matches if (key_b, key_c) not in ran]
    if not ran:
        raise CompareError("no common rows that ran: every baseline row shared with the current set failed")
    pairs = [_judge(groups_b[key_b], groups_c[key_c], load_samples, settings, load_op_times)
             for key_b, key_c in ran]
    order = ["target", "model", "threads", "delegate"]
    unpaired_columns = ["side", "target", "model", "threads", "delegate", "reason"]
    return Comparison(pd.DataFrame(pairs).sort_values(order, kind="stable").reset_index(drop=True),
                      pd.DataFrame(unpaired, columns=unpaired_columns), settings, _runs(baseline),
                      _runs(current))


def _groups(frame: pd.DataFrame, match: str) -> dict[tuple, list[dict]]:
    """Rows keyed by (model identity, target identity, threads, delegate), in load order."""
    groups: dict[tuple, list[dict]] = {}
    for row in frame.to_dict("records"):
        row = {key: (None if is_missing(value) else value) for key, value in row.items()}
        key = (model_identity(row, match), target_identity(row), row["threads"], row["delegate"])
        groups.setdefault(key, []).append(row)
    return groups


def _match(groups_b: dict, groups_c: dict, allow_other_targets: bool) -> tuple[list[tuple], list[dict]]:
    """(baseline key, current key) pairs, and the rows left over with the reason."""
    matches = [(key, key) for key in groups_c if key in groups_b]
    unpaired = []
    loose_b = {}
    for key in groups_b:
        if key not in groups_c:
            loose_b.setdefault((key[0], key[2], key[3]), []).append(key)
    used_b = set()
    for key in groups_c:
        if key in groups_b:
            continue
        others = loose_b.get((key[0], key[2], key[3]), [])
        if others and allow_other_targets:
            matches += [(other, key) for other in others]
            used_b.update(others)
        elif others:
            labels = ", ".join(sorted({target_label(groups_b[other][0]) for other in others}))
            unpaired.append(_leftover("current", groups_c[key], f"baseline ran on another target: {labels}"))
        else:
            unpaired.append(_leftover("current", groups_c[key], "not in the baseline"))
    for key in groups_b:
        if key not in groups_c and key not in used_b:
            unpaired.append(_leftover("baseline", groups_b[key], "not in the current set on this target"))
    return matches, unpaired


def _leftover(side: str, rows: list[dict], reason: str) -> dict:
    row = rows[-1]
    return {"side": side, "target": target_label(row), "model": row["model"], "threads": row["threads"],
            "delegate": row["delegate"], "reason": reason}


def _nothing_in_common(groups_b: dict, groups_c: dict, unpaired: list[dict]) -> str:
    other = [item for item in unpaired if item["reason"].startswith("baseline ran on another target")]
    if other:
        current = sorted({item["target"] for item in unpaired if item["side"] == "current"})
        return (f"baseline and current ran on different targets (current: {', '.join(current)}; "
                f"{other[0]['reason']}); pass --allow-different-targets to compare them anyway")
    names_b = sorted({rows[0]["model"] for rows in groups_b.values()})
    names_c = sorted({rows[0]["model"] for rows in groups_c.values()})
    return (f"no common rows: no (model, target, threads, delegate) is in both sets "
            f"(baseline: {', '.join(names_b[:4])}{' ...' if len(names_b) > 4 else ''}; "
            f"current: {', '.join(names_c[:4])}{' ...' if len(names_c) > 4 else ''})")


def _judge(rows_b: list[dict], rows_c: list[dict], load_samples: LoadSamples,
           settings: CompareSettings, load_op_times: LoadOpTimes | None = None) -> dict:
    """One pair's figures, ratio, interval, verdict, notes and operator changes."""
    ok_b = [row for row in rows_b if row["status"] == "ok"]
    ok_c = [row for row in rows_c if row["status"] == "ok"]
    last = (ok_c or rows_c)[-1]
    result = {"target": target_label(last), "model": last["model"], "version": last["version"],
              "alpha": last["alpha"], "resolution": last["resolution"], "quant": last["quant"],
              "threads": last["threads"], "delegate": last["delegate"], "baseline_runs": len(ok_b),
              "current_runs": len(ok_c), "baseline_median_us": _median_of(ok_b),
              "current_median_us": _median_of(ok_c), "ratio": None, "ci_low": None, "ci_high": None,
              "method": None, "statistic": None, "verdict": None, "notes": "", "operators": None}
    notes = _notes(rows_b, rows_c, ok_b, ok_c, settings)
    if load_op_times is not None:
        result["operators"], why = _operators(ok_b, ok_c, load_op_times)
        notes += [why] if why else []
    if not ok_c:
        result["verdict"] = "failed"
        notes.insert(0, f"every current run failed: {rows_c[-1]['error']}")
    else:
        found = _interval(ok_b, ok_c, load_samples, settings)
        ratio, low, high = found["ratio"], found["low"], found["high"]
        result.update(ratio=ratio, ci_low=low, ci_high=high, method=found["method"],
                      statistic=found["statistic"], baseline_median_us=found["figures"][0],
                      current_median_us=found["figures"][1])
        if found["statistic"] == "mean":
            notes.insert(0, "compared averages: the rows record no median")
        if found["widened"]:
            notes.append(found["widened"])
        if low is None:
            result["verdict"] = "noisy"
            notes.insert(0, "no samples or spread recorded: no interval" if ratio is not None
                         else "the rows record neither a median nor an average: no ratio")
        else:
            result["verdict"] = stats.verdict(ratio, low, high, settings.threshold)
            if result["verdict"] == "unchanged" and low > 1 and high > 1 + settings.threshold:
                notes.insert(0, f"interval reaches above +{settings.threshold:.0%}")
    result["notes"] = "; ".join(notes)
    return result


def _notes(rows_b, rows_c, ok_b, ok_c, settings) -> list[str]:
    notes = []
    if {row["model_sha256"] for row in ok_b} != {row["model_sha256"] for row in ok_c}:
        notes.append("model file changed")
    if {row["runtime"] for row in ok_b} != {row["runtime"] for row in ok_c}:
        notes.append(f"runtime {'/'.join(sorted({str(r['runtime']) for r in ok_b}))} -> "
                     f"{'/'.join(sorted({str(r['runtime']) for r in ok_c}))}")
    if target_identity(rows_b[-1]) != target_identity(rows_c[-1]):
        notes.append(f"other target: baseline {target_label(rows_b[-1])}")
    for side, rows, ok in (("baseline", rows_b, ok_b), ("current", rows_c, ok_c)):
        if ok and len(ok) < len(rows):
            notes.append(f"{len(rows) - len(ok)} of {len(rows)} {side} runs failed")
    return notes


def _operators(ok_b: list[dict], ok_c: list[dict], load_op_times: LoadOpTimes) -> tuple[dict | None,
                                                                                          str | None]:
    """The pair's operator changes (``op_times.changes``), and a note when only one side has op times."""
    sides = [[found for found in map(load_op_times, rows) if found] for rows in (ok_b, ok_c)]
    if not sides[0] and not sides[1]:
        return None, None
    if not sides[0] or not sides[1]:
        return None, f"per-operator times only on the {'current' if sides[1] else 'baseline'} side"
    try:
        found = op_times.changes(*sides)
    except op_times.OpTimesError as error:  # one side's rows mix profilers
        return None, f"per-operator times not compared: {error}"
    if found is None:
        return None, (f"per-operator times not compared: measured by {sides[0][0]['source']} and by "
                      f"{sides[1][0]['source']}")
    return found, None


def _median_of(rows: list[dict]) -> float | None:
    values = [row["median_us"] for row in rows if row["median_us"] is not None]
    return float(np.median(values)) if values else None


def _interval(ok_b: list[dict], ok_c: list[dict], load_samples: LoadSamples,
              settings: CompareSettings) -> dict:
    """``ratio``, ``low``, ``high``, ``method``, ``statistic`` and the two figures the ratio is of.

    A side measured in one process gets ``PROCESS_SPREAD`` added to its share of the interval.
    """
    found = None
    if all(row["samples_file"] for row in ok_b + ok_c):
        runs_b, runs_c = _load_runs(ok_b, load_samples, "baseline"), _load_runs(ok_c, load_samples, "current")
        if min(map(len, runs_b + runs_c)) >= stats.MIN_CI_COUNT:
            figures = tuple(float(np.median(np.concatenate(runs))) for runs in (runs_b, runs_c))
            if len(runs_b) == len(runs_c) == 1:
                interval = stats.ratio_ci(runs_b[0], runs_c[0], settings.confidence, settings.n_boot,
                                          settings.seed)
                method = "bootstrap of runs in one process per side"
            else:
                interval = stats.run_level_ratio_ci(runs_b, runs_c, settings.confidence, settings.n_boot,
                                                    settings.seed)
                method = "two-level bootstrap (processes, then runs)"
            found = {"ratio": interval[0], "low": interval[1], "high": interval[2], "method": method,
                     "statistic": "median", "figures": figures}
    found = found or _summary_interval(ok_b, ok_c, settings.confidence)
    single = (len(ok_b) == 1) + (len(ok_c) == 1)
    found["widened"] = None
    if single and found["low"] is not None:
        z = NormalDist().inv_cdf(1 - (1 - settings.confidence) / 2)
        extra = z * PROCESS_SPREAD * math.sqrt(single / 2)
        ratio = found["ratio"]
        found["low"] = ratio * math.exp(-math.hypot(math.log(ratio / found["low"]), extra))
        found["high"] = ratio * math.exp(math.hypot(math.log(found["high"] / ratio), extra))
        found["widened"] = (f"{'one process per side' if single == 2 else 'one process on one side'}: "
                            f"interval widened by the spread between processes (±{math.exp(extra) - 1:.1%})")
    return found


def _load_runs(rows: list[dict], load_samples: LoadSamples, side: str) -> list[list[float]]:
    """Every row's samples; an empty list or a latency that is not finite and >= 0 is bad input."""
    runs = []
    for row in rows:
        values = list(load_samples(row))
        where = f"{side} run {row['run_id']}, {row['model']} t{row['threads']}"
        if not values:
            raise CompareError(f"{where}: its samples file holds an empty list of latencies")
        bad = [value for value in values if not (math.isfinite(value) and value >= 0)]
        if bad:
            raise CompareError(f"{where}: its samples file holds a latency that is not a finite number >= 0 "
                               f"({bad[0]!r})")
        runs.append(values)
    return runs


def _summary_interval(ok_b: list[dict], ok_c: list[dict], confidence: float) -> dict:
    """From each run's summary: the medians if every row has one, else the averages (phone builds that
    print no percentiles); a normal-approximation interval from each run's spread, None bounds if unknown."""
    rows = ok_b + ok_c
    if all(row["median_us"] is not None for row in rows):
        statistic, key, factor = "median", "median_us", _MEDIAN_SE_FACTOR
    elif all(_mean(row) is not None for row in rows):
        statistic, key, factor = "mean", None, 1.0
    else:
        return {"ratio": None, "low": None, "high": None, "method": "none", "statistic": None,
                "figures": (None, None)}
    sides = []
    for side in (ok_b, ok_c):
        logs = np.log([row[key] if key else _mean(row) for row in side])
        spreads = [(row["std_us"] / _mean(row)) ** 2 / row["count"] * factor ** 2 for row in side
                   if row["std_us"] is not None and _mean(row) and (row["count"] or 0) > 1]
        between = float(np.var(logs, ddof=1)) / len(side) if len(side) > 1 else 0.0
        variance = float(np.mean(spreads)) / len(side) + between if len(spreads) == len(side) else None
        sides.append((float(np.mean(logs)), variance))
    ratio = math.exp(sides[1][0] - sides[0][0])
    figures = (math.exp(sides[0][0]), math.exp(sides[1][0]))  # geometric mean of the runs' figures
    found = {"ratio": ratio, "low": None, "high": None, "method": f"{statistic}s only",
             "statistic": statistic, "figures": figures}
    if sides[0][1] is not None and sides[1][1] is not None:
        half = NormalDist().inv_cdf(1 - (1 - confidence) / 2) * math.sqrt(sides[0][1] + sides[1][1])
        found.update(low=ratio * math.exp(-half), high=ratio * math.exp(half),
                     method=f"summary of {statistic}s (std, count), normal approx.")
    return found


def _mean(row: Mapping[str, Any]) -> float | None:
    value = row.get("mean_us")
    value = row.get("avg_us") if value is None else value
    return None if value is None or not math.isfinite(value) or value <= 0 else float(value)


def _runs(frame: pd.DataFrame) -> list[dict]:
    columns = ["run_id", "utc_time", "git_commit", "mnbench_version", "runtime"]
    runs = frame[columns].drop_duplicates("run_id")
    return [{key: (None if is_missing(value) else str(value)) for key, value in row.items()}
            for row in runs.to_dict("records")]


def _present(value: Any) -> bool:
    return not is_missing(value) and value != ""


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{key: (None if is_missing(value) else value.item() if isinstance(value, np.generic) else value)
             for key, value in row.items()} for row in frame.to_dict("records")]
