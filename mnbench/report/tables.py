"""The report's tables: pure ``DataFrame -> DataFrame`` functions over result rows (results schema).

:func:`prepare` keeps the rows that ran and, for each (target, model, threads, delegate) measured more than
once, the latest; every other function takes its output. Latencies are medians in ms.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from device_bench.compare import model_identity, target_identity, target_label
from device_bench.store import is_missing, target_desc

from .paper import KEYS, PIXELS, pixel_column

GROUP = ["target_key", "model_key", "threads", "delegate"]


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (target, model, threads, delegate) that ran, with derived columns.

    Repeated runs of a key count as replicates when they share the latest run's model file (sha256), runtime
    and mnbench version: the row then shows the median of their medians, and ``ci_low_ms``/``ci_high_ms``
    hold the range of those medians (for a single run: the 95 % interval of its median). Other runs of the
    key (another model file or runtime) are left out. The git commit is not compared: a commit that changes
    the model changes its sha256.

    Added columns: ``target_key``, ``target_label``, ``model_key``, ``label`` (file name without
    ``.tflite``), ``runs`` (replicates combined), ``median_ms``, ``ci_low_ms``, ``ci_high_ms``, ``macs_m``,
    ``params_m``, ``config_key`` (configuration without quantization) and ``device``/``soc`` (phones).
    """
    ok = frame[frame["status"] == "ok"].copy()
    records = [_clean(row) for row in ok.to_dict("records")]
    ok["target_key"] = [target_identity(row) for row in records]
    ok["target_label"] = [target_label(row) for row in records]
    ok["model_key"] = [model_identity(row) for row in records]
    ok["config_key"] = [row["config"] or row["model_sha256"] or row["model"] for row in records]
    ok["device"] = [target_desc(row).get("model") for row in records]
    ok["soc"] = [target_desc(row).get("soc_model") or target_desc(row).get("board_platform")
                 for row in records]
    ok = ok.sort_values("utc_time", kind="stable")
    ok["median_ms"] = ok["median_us"].astype("Float64") / 1e3
    ok["ci_low_ms"] = ok["median_ci_low_us"].astype("Float64") / 1e3
    ok["ci_high_ms"] = ok["median_ci_high_us"].astype("Float64") / 1e3
    combined = [_replicates(group) for _, group in ok.groupby(GROUP, dropna=False, sort=False)]
    ok = pd.DataFrame(combined) if combined else ok.assign(runs=pd.Series(dtype="Int64"))
    ok["label"] = ok["model"].str.replace(r"\.tflite$", "", regex=True)
    ok["macs_m"] = ok["macs"].astype("Float64") / 1e6
    ok["params_m"] = ok["params"].astype("Float64") / 1e6
    order = ["target_label", "threads", "delegate", "macs", "label"]
    return ok.sort_values(order, kind="stable").reset_index(drop=True)


def _replicates(group: pd.DataFrame) -> pd.Series:
    """The latest row of a key, its median replaced by the median over runs with the same identity."""
    last = group.iloc[-1].copy()
    same = group[(group["mnbench_version"].astype(str) == str(last["mnbench_version"]))
                 & (group["model_sha256"].astype(str) == str(last["model_sha256"]))
                 & (group["runtime"].astype(str) == str(last["runtime"]))]
    last["runs"] = len(same)
    if len(same) > 1:
        medians = same["median_ms"].astype(float)
        last["median_ms"], last["ci_low_ms"] = medians.median(), medians.min()
        last["ci_high_ms"] = medians.max()
    return last


def pareto_mask(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """True where no other point is ``<=`` in both (smaller is better) and strictly smaller in one.

    Negate a column to maximize it.
    """
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    mask = np.ones(first.size, dtype=bool)
    for index in range(first.size):
        dominated = (first <= first[index]) & (second <= second[index]) & (
            (first < first[index]) | (second < second[index]))
        mask[index] = not dominated.any()
    return mask


def cost_latency(prepared: pd.DataFrame) -> pd.DataFrame:
    """Latency against Mult-Adds per target and thread count, with the Pareto front in ``pareto``.

    Mult-Adds stand in for capacity, as in the papers' accuracy-against-Mult-Adds plots: a model is on the
    front when no other model is at least as fast with at least as many Mult-Adds.
    """
    frame = prepared.dropna(subset=["macs"]).copy()
    frame["pareto"] = False
    for _, group in frame.groupby(["target_key", "threads", "delegate"]):
        frame.loc[group.index, "pareto"] = pareto_mask(-group["macs_m"].astype(float), group["median_ms"])
    return frame[["target_label", "target_key", "threads", "delegate", "label", "version", "alpha",
                  "resolution", "quant", "macs_m", "params_m", "median_ms", "ci_low_ms", "ci_high_ms",
                  "pareto"]]


def accuracy_latency(prepared: pd.DataFrame, top1: pd.DataFrame) -> pd.DataFrame:
    """Measured latency beside the published top-1 of the same configuration; ``pareto`` on (latency, -top-1).

    Only models with the published configuration (default knobs, 1000 classes) get a top-1.
    """
    frame = prepared[prepared["config"].map(_default_knobs)].copy()
    frame = frame.astype({"alpha": float, "resolution": int}).merge(top1, on=KEYS, how="inner")
    frame["pareto"] = False
    for _, group in frame.groupby(["target_key", "threads", "delegate"]):
        frame.loc[group.index, "pareto"] = pareto_mask(group["median_ms"], -group["top1_pct"])
    return frame[["target_label", "target_key", "threads", "delegate", "label", "version", "quant", "macs_m",
                  "median_ms", "top1_pct", "source", "pareto"]]


def quant_speedup(prepared: pd.DataFrame) -> pd.DataFrame:
    """fp32 against int8 of each configuration, per target and threads (``int8_over_fp32`` < 1: faster)."""
    frame = prepared[prepared["quant"].isin(["fp32", "int8"])]
    index = ["target_label", "target_key", "threads", "delegate", "config_key", "version", "alpha",
             "resolution"]
    wide = frame.pivot_table(index=index, columns="quant", values="median_ms", aggfunc="first").reset_index()
    if not {"fp32", "int8"} <= set(wide.columns):
        return pd.DataFrame(columns=index + ["fp32_ms", "int8_ms", "int8_over_fp32"])
    wide = wide.dropna(subset=["fp32", "int8"]).rename(columns={"fp32": "fp32_ms", "int8": "int8_ms"})
    wide["int8_over_fp32"] = wide["int8_ms"] / wide["fp32_ms"]
    wide.columns.name = None
    wide = wide.drop(columns="config_key").sort_values(["target_label", "threads", "version"])
    return wide.reset_index(drop=True)


def thread_scaling(prepared: pd.DataFrame) -> pd.DataFrame:
    """Per model: latency at each thread count, speedup over its fewest threads and parallel efficiency."""
    rows = []
    for _, group in prepared.groupby(["target_key", "model_key", "delegate"]):
        if group["threads"].nunique() < 2:
            continue
        group = group.sort_values("threads")
        base = group.iloc[0]
        for row in group.itertuples():
            speedup = float(base.median_ms / row.median_ms)
            rows.append({"target_label": row.target_label, "target_key": row.target_key, "label": row.label,
                         "delegate": row.delegate, "threads": int(row.threads),
                         "median_ms": float(row.median_ms), "speedup": speedup,
                         "efficiency": speedup / (row.threads / base.threads)})
    columns = ["target_label", "target_key", "label", "delegate", "threads", "median_ms", "speedup",
               "efficiency"]
    return pd.DataFrame(rows, columns=columns)


def phone_vs_paper(prepared: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Phone rows beside the published Pixel latencies of the same configuration.

    ``pixel_ms``/``ours_over_pixel`` compare with the column of the same Pixel generation when the phone is
    a Pixel 1/2/3, else they are empty; ``conditions`` says how our run was made.
    """
    phones = prepared[(prepared["target_kind"] == "android") & prepared["config"].map(_default_knobs)]
    frame = phones.astype({"alpha": float, "resolution": int}).merge(paper, on=KEYS, how="inner")
    frame["pixel_column"] = frame["device"].map(pixel_column)
    frame["pixel_ms"] = [row[column] if column else None for row, column in
                         zip(frame.to_dict("records"), frame["pixel_column"])]
    frame["ours_over_pixel"] = frame["median_ms"] / pd.to_numeric(frame["pixel_ms"])
    frame["conditions"] = [_conditions(row) for row in frame.to_dict("records")]
    return frame[["target_label", "device", "soc", "label", "threads", "delegate", "median_ms", *PIXELS,
                  "pixel_ms", "ours_over_pixel", "network", "source", "conditions"]]


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run: id, time, commit, runtime, target(s), rows that ran and that failed."""
    rows = []
    for run_id, group in frame.groupby("run_id", sort=False):
        records = group.to_dict("records")
        ok = int((group["status"] == "ok").sum())
        rows.append({"run_id": run_id, "utc_time": records[0]["utc_time"],
                     "git_commit": records[0]["git_commit"], "runtime": records[0]["runtime"],
                     "targets": ", ".join(sorted({target_label(_clean(r)) for r in records})),
                     "ok": ok, "failed": len(group) - ok})
    return pd.DataFrame(rows, columns=["run_id", "utc_time", "git_commit", "runtime", "targets", "ok",
                                       "failed"])


def failures(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that failed, with their error."""
    failed = frame[frame["status"] != "ok"]
    return failed[["run_id", "target", "model", "threads", "delegate", "error"]].reset_index(drop=True)


def _conditions(row: dict) -> str:
    desc = target_desc(row)
    run = desc.get("run") or {}
    parts = [f"{row['threads']} thread(s)", str(row["delegate"])]
    pinned = run.get("pinned_cpus")
    parts.append(f"pinned to CPU {','.join(map(str, pinned))} (taskset {run.get('taskset_mask')})" if pinned
                 else "not pinned")
    hottest = ((run.get("temperatures_before") or {}).get("hottest_c"))
    if hottest is not None:
        parts.append(f"hottest zone {hottest:g} °C before the run")
    if desc.get("android_release"):
        parts.append(f"Android {desc['android_release']}")
    parts.append(f"{row['runtime']}, {row['count']} runs")
    return ", ".join(parts)


def _default_knobs(config: str | None) -> bool:
    """Whether a configuration is a published one: default knobs, 1000 classes, with its classifier."""
    if is_missing(config) or not config:
        return False
    from mobilenets_tf import configure  # tables and knobs only, no TensorFlow

    try:
        model = configure(**json.loads(config))
    except (TypeError, ValueError):     # SpecError is a ValueError
        return False
    return not model.non_default_knobs and model.num_classes == 1000 and model.include_top


def _clean(row: dict) -> dict:
    return {key: (None if is_missing(value) else value) for key, value in row.items()}
