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
side the interval is ``stats.ratio_ci`` on the raw samples. With more, a two-level bootstrap resamples runs,
then samples inside each run, so the spread between processes, which one run cannot show, enters the
interval. Rows without samples (``benchmark_model`` on phones prints none) fall back to their summary: the
log-median's standard error from ``std_us/mean_us`` and ``count`` (normal approximation, 1.2533 sigma/sqrt(n)
per run), plus the spread between runs when there are several. The verdict is ``stats.verdict``; a pair whose
current rows all failed while the baseline ran gets ``failed``.

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

from . import stats
from .store import is_missing, target_desc

__all__ = ["CompareError", "CompareSettings", "Comparison", "FAILING", "GateFailed", "VERDICTS", "compare",
           "model_identity", "run_level_ratio_ci", "target_identity", "target_label"]

FAILING = {"regression": ("regression", "failed"), "noisy": ("regression", "failed", "noisy"), "never": ()}
VERDICTS = ("regression", "failed", "improvement", "unchanged", "noisy")
_MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2)  # SE(median) / SE(mean) for normal samples
_MAX_BOOT_CELLS = 4_000_000
LoadSamples = Callable[[Mapping[str, Any]], Sequence[float]]


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
            settings: CompareSettings = CompareSettings()) -> Comparison:
    """Pairs the rows of two result sets and judges each pair.

    Args:
        baseline: rows in the results schema (``ResultStore.load``).
        current: rows of the candidate, same schema.
        load_samples: reads a row's raw latencies (``ResultStore.load_samples``).
        settings: threshold, confidence, pairing rules.

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
    pairs = [_judge(groups_b[key_b], groups_c[key_c], load_samples, settings) for key_b, key_c in ran]
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
           settings: CompareSettings) -> dict:
    """One pair's figures, ratio, interval, verdict and notes."""
    ok_b = [row for row in rows_b if row["status"] == "ok"]
    ok_c = [row for row in rows_c if row["status"] == "ok"]
    last = (ok_c or rows_c)[-1]
    result = {"target": target_label(last), "model": last["model"], "version": last["version"],
              "alpha": last["alpha"], "resolution": last["resolution"], "quant": last["quant"],
              "threads": last["threads"], "delegate": last["delegate"], "baseline_runs": len(ok_b),
              "current_runs": len(ok_c), "baseline_median_us": _median_of(ok_b),
              "current_median_us": _median_of(ok_c), "ratio": None, "ci_low": None, "ci_high": None,
              "method": None, "verdict": None, "notes": ""}
    notes = _notes(rows_b, rows_c, ok_b, ok_c, settings)
    if not ok_c:
        result["verdict"] = "failed"
        notes.insert(0, f"every current run failed: {rows_c[-1]['error']}")
    else:
        ratio, low, high, method, medians = _interval(ok_b, ok_c, load_samples, settings)
        result.update(ratio=ratio, ci_low=low, ci_high=high, method=method, baseline_median_us=medians[0],
                      current_median_us=medians[1])
        if low is None:
            result["verdict"] = "noisy"
            notes.insert(0, "no samples or spread recorded: no interval")
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


def _median_of(rows: list[dict]) -> float | None:
    values = [row["median_us"] for row in rows if row["median_us"] is not None]
    return float(np.median(values)) if values else None


def _interval(ok_b: list[dict], ok_c: list[dict], load_samples: LoadSamples, settings: CompareSettings):
    """``(ratio, low, high, method, (baseline median, current median))``; the medians the ratio is of."""
    if all(row["samples_file"] for row in ok_b + ok_c):
        runs_b = [list(load_samples(row)) for row in ok_b]
        runs_c = [list(load_samples(row)) for row in ok_c]
        if min(map(len, runs_b + runs_c)) >= stats.MIN_CI_COUNT:
            medians = tuple(float(np.median(np.concatenate(runs))) for runs in (runs_b, runs_c))
            if len(runs_b) == len(runs_c) == 1:
                ratio, low, high = stats.ratio_ci(runs_b[0], runs_c[0], settings.confidence,
                                                  settings.n_boot, settings.seed)
                return ratio, low, high, "bootstrap of runs in one process per side", medians
            ratio, low, high = run_level_ratio_ci(runs_b, runs_c, settings.confidence, settings.n_boot,
                                                  settings.seed)
            return ratio, low, high, "two-level bootstrap (processes, then runs)", medians
    return _summary_interval(ok_b, ok_c, settings.confidence)


def run_level_ratio_ci(a_runs: Sequence[Sequence[float]], b_runs: Sequence[Sequence[float]],
                       confidence: float = 0.95, n_boot: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """Ratio of medians of the pooled samples, B over A, with a two-level bootstrap interval.

    Each resample draws as many processes as each side has (with replacement), then from each drawn
    process as many runs as the side's median process holds (with replacement), and takes the median.

    Args:
        a_runs: baseline samples, one sequence per process (>= ``stats.MIN_CI_COUNT`` each).
        b_runs: candidate samples, same shape rules.
        confidence: two-sided coverage in (0, 1).
        n_boot: bootstrap resamples (>= 100).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(ratio, low, high)``.

    Raises:
        StatsError: for empty or invalid samples, or a zero baseline median.
    """
    if not a_runs or not b_runs:
        raise stats.StatsError("each side needs at least one process of samples")
    sides = [[_checked_run(run) for run in side] for side in (a_runs, b_runs)]
    if n_boot < 100 or not 0 < confidence < 1:
        raise stats.StatsError(f"need n_boot >= 100 and confidence in (0, 1), received {n_boot}, "
                               f"{confidence}")
    rng = np.random.default_rng(seed)
    boot_a, boot_b = (_two_level_medians(side, n_boot, rng) for side in sides)
    point_a, point_b = (float(np.median(np.concatenate(side))) for side in sides)
    if point_a <= 0 or np.any(boot_a <= 0):
        raise stats.StatsError("the baseline median (or a resample of it) is 0, so the ratio is undefined")
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot_b / boot_a, [tail, 1 - tail], method="linear")
    return point_b / point_a, float(low), float(high)


def _checked_run(run: Sequence[float]) -> np.ndarray:
    values = np.asarray(run, dtype=float)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise stats.StatsError("every process needs a non-empty 1-D list of finite latencies >= 0")
    return values


def _two_level_medians(runs: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    sizes = np.array([run.size for run in runs])
    per_run = int(np.median(sizes))
    padded = np.zeros((len(runs), sizes.max()))
    for index, run in enumerate(runs):
        padded[index, :run.size] = run
    rows = max(1, _MAX_BOOT_CELLS // (len(runs) * per_run))
    chunks = []
    for start in range(0, n_boot, rows):
        count = min(rows, n_boot - start)
        picked = rng.integers(0, len(runs), size=(count, len(runs), 1))
        inner = (rng.random((count, len(runs), per_run)) * sizes[picked]).astype(np.int64)
        chunks.append(np.median(padded[picked, inner].reshape(count, -1), axis=1))
    return np.concatenate(chunks)


def _summary_interval(ok_b: list[dict], ok_c: list[dict], confidence: float):
    """Ratio of medians, normal-approximation interval from each run's spread; None bounds if unknown."""
    sides = []
    for rows in (ok_b, ok_c):
        logs = np.log([row["median_us"] for row in rows])
        spreads = [(row["std_us"] / row["mean_us"]) ** 2 / row["count"] * _MEDIAN_SE_FACTOR ** 2
                   for row in rows
                   if row["std_us"] is not None and row["mean_us"] and (row["count"] or 0) > 1]
        between = float(np.var(logs, ddof=1)) / len(rows) if len(rows) > 1 else 0.0
        variance = float(np.mean(spreads)) / len(rows) + between if len(spreads) == len(rows) else None
        sides.append((float(np.mean(logs)), variance))
    ratio = math.exp(sides[1][0] - sides[0][0])
    medians = (math.exp(sides[0][0]), math.exp(sides[1][0]))  # geometric mean of the runs' medians
    if sides[0][1] is None or sides[1][1] is None:
        return ratio, None, None, "medians only", medians
    half = NormalDist().inv_cdf(1 - (1 - confidence) / 2) * math.sqrt(sides[0][1] + sides[1][1])
    return (ratio, ratio * math.exp(-half), ratio * math.exp(half), "summary (std, count), normal approx.",
            medians)


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
