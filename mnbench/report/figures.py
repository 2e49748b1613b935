"""The report's figures, drawn with matplotlib's Agg backend from the tables of :mod:`.tables`.

Each function returns ``Figure``\\ s holding PNG bytes; nothing is shown or written here.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import pandas as pd  # noqa: E402
from matplotlib import ticker  # noqa: E402

VERSION_COLORS = {"v1": "#1f77b4", "v2": "#2ca02c", "v3-large": "#d62728", "v3-small": "#ff7f0e"}
QUANT_MARKERS = {"fp32": "o", "int8": "s", "fp16": "^", "dynamic": "D"}
DPI = 110


@dataclass(frozen=True)
class Figure:
    """A PNG image: ``name`` (file stem), ``png`` bytes, ``caption`` (alt text and legend)."""

    name: str
    png: bytes
    caption: str


def slug(text: str) -> str:
    """A file-name-safe form of ``text``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower()[:60] or "x"


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _panels(count: int, width: float = 5.2, height: float = 4.0):
    figure, axes = plt.subplots(1, count, figsize=(width * count, height), squeeze=False)
    return figure, list(axes[0])


def _points(axis, frame: pd.DataFrame, x: str, y: str, error: bool = True) -> None:
    """One marker per model: color by version, shape by quantization, CI as vertical error bars."""
    for row in frame.itertuples():
        color = VERSION_COLORS.get(row.version, "#7f7f7f")
        marker = QUANT_MARKERS.get(row.quant, "x")
        y_value = getattr(row, y)
        if error and pd.notna(getattr(row, "ci_low_ms", None)):
            bars = [[y_value - row.ci_low_ms], [row.ci_high_ms - y_value]]
            axis.errorbar(getattr(row, x), y_value, yerr=bars, fmt="none", ecolor=color, elinewidth=1,
                          capsize=2)
        axis.scatter(getattr(row, x), y_value, color=color, marker=marker, s=40, zorder=3,
                     edgecolors="black" if row.pareto else "none", linewidths=0.8)
        axis.annotate(row.label, (getattr(row, x), y_value), fontsize=6, xytext=(3, 3),
                      textcoords="offset points")


def _log_axis(axis, which: str) -> None:
    """Log scale with plain tick labels (1, 2, 5, 10, ...) instead of powers of ten."""
    target = axis.xaxis if which == "x" else axis.yaxis
    (axis.set_xscale if which == "x" else axis.set_yscale)("log")
    target.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(ticker.NullFormatter())


def _legend(axis, frame: pd.DataFrame) -> None:
    handles = [plt.Line2D([], [], color=color, marker="o", linestyle="", label=version)
               for version, color in VERSION_COLORS.items() if version in set(frame["version"])]
    handles += [plt.Line2D([], [], color="#555", marker=marker, linestyle="", label=quant)
                for quant, marker in QUANT_MARKERS.items() if quant in set(frame["quant"])]
    handles.append(plt.Line2D([], [], color="black", linestyle="--", label="Pareto front"))
    axis.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def cost_latency(table: pd.DataFrame) -> list[Figure]:
    """Per target: median latency against Mult-Adds (log-log), one panel per thread count, Pareto front."""
    figures = []
    for (target_key, label), frame in table.groupby(["target_key", "target_label"], sort=False):
        groups = list(frame.groupby(["threads", "delegate"]))
        figure, axes = _panels(len(groups))
        for axis, ((threads, delegate), group) in zip(axes, groups):
            _points(axis, group, "macs_m", "median_ms")
            front = group[group["pareto"]].sort_values("macs_m")
            axis.plot(front["macs_m"], front["median_ms"], color="black", linestyle="--", linewidth=1)
            _log_axis(axis, "x")
            _log_axis(axis, "y")
            axis.set(xlabel="Mult-Adds (millions)", ylabel="median latency (ms)",
                     title=f"{threads} thread(s), {delegate}")
            axis.margins(x=0.25, y=0.15)
            axis.grid(True, which="both", alpha=0.3)
        _legend(axes[-1], frame)
        figure.suptitle(f"Latency against Mult-Adds: {label}", fontsize=10)
        figures.append(Figure(f"cost-latency-{slug(target_key)}", _png(figure),
                              f"Median latency against Mult-Adds on {label} (bars: 95 % interval of the "
                              "median, or the range over repeated runs; outlined and dashed: the Pareto "
                              "front, where no other model is as fast with as many Mult-Adds)."))
    return figures


def accuracy_latency(table: pd.DataFrame) -> list[Figure]:
    """Per target: published top-1 against our latency, the papers' accuracy/latency view."""
    figures = []
    for (target_key, label), frame in table.groupby(["target_key", "target_label"], sort=False):
        groups = list(frame.groupby(["threads", "delegate"]))
        figure, axes = _panels(len(groups))
        for axis, ((threads, delegate), group) in zip(axes, groups):
            _points(axis, group, "median_ms", "top1_pct", error=False)
            front = group[group["pareto"]].sort_values("median_ms")
            axis.plot(front["median_ms"], front["top1_pct"], color="black", linestyle="--", linewidth=1)
            _log_axis(axis, "x")
            axis.set(xlabel="median latency (ms)", ylabel="published ImageNet top-1 (%)",
                     title=f"{threads} thread(s), {delegate}")
            axis.margins(x=0.35, y=0.1)
            axis.grid(True, which="both", alpha=0.3)
        _legend(axes[-1], frame)
        figure.suptitle(f"Published accuracy against measured latency: {label}", fontsize=10)
        figures.append(Figure(f"accuracy-latency-{slug(target_key)}", _png(figure),
                              f"Published top-1 of each configuration against its measured latency on "
                              f"{label} (our models have random weights: the accuracy is the papers', not "
                              "measured)."))
    return figures


def quant_speedup(table: pd.DataFrame) -> list[Figure]:
    """Per target: fp32 and int8 latency side by side per version, one panel per thread count."""
    figures = []
    for (target_key, label), frame in table.groupby(["target_key", "target_label"], sort=False):
        groups = list(frame.groupby(["threads", "delegate"]))
        figure, axes = _panels(len(groups))
        for axis, ((threads, delegate), group) in zip(axes, groups):
            names = [f"{r.version} {r.alpha:g} {r.resolution}" for r in group.itertuples()]
            positions = range(len(group))
            axis.bar([p - 0.2 for p in positions], group["fp32_ms"], width=0.4, label="fp32", color="#4c72b0")
            axis.bar([p + 0.2 for p in positions], group["int8_ms"], width=0.4, label="int8", color="#dd8452")
            for position, ratio, top in zip(positions, group["int8_over_fp32"],
                                            group[["fp32_ms", "int8_ms"]].max(axis=1)):
                axis.annotate(f"x{ratio:.2f}", (position, top), ha="center", fontsize=7, xytext=(0, 2),
                              textcoords="offset points")
            axis.set_xticks(list(positions), names, rotation=20, fontsize=7)
            axis.set(ylabel="median latency (ms)", title=f"{threads} thread(s), {delegate}")
            axis.legend(fontsize=7)
        figure.suptitle(f"fp32 against int8: {label}", fontsize=10)
        figures.append(Figure(f"fp32-int8-{slug(target_key)}", _png(figure),
                              f"fp32 and int8 median latency of each configuration on {label}; the label is "
                              "int8 / fp32 (below 1: int8 is faster)."))
    return figures


def thread_scaling(table: pd.DataFrame) -> list[Figure]:
    """Per target: speedup over the fewest threads against thread count, with the ideal line."""
    figures = []
    for (target_key, label), frame in table.groupby(["target_key", "target_label"], sort=False):
        figure, axes = _panels(1, width=6.0)
        axis = axes[0]
        for (model, delegate), group in frame.groupby(["label", "delegate"]):
            axis.plot(group["threads"], group["speedup"], marker="o", label=f"{model} ({delegate})")
        threads = sorted(frame["threads"].unique())
        axis.plot(threads, [t / threads[0] for t in threads], color="black", linestyle=":", label="ideal")
        axis.set(xlabel="threads", ylabel="speedup over fewest threads", xticks=threads)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=6)
        figure.suptitle(f"Thread scaling: {label}", fontsize=10)
        figures.append(Figure(f"threads-{slug(target_key)}", _png(figure),
                              f"Speedup of each model over its run with the fewest threads on {label}."))
    return figures


def phone_vs_paper(table: pd.DataFrame) -> list[Figure]:
    """Per phone: our median beside the paper's Pixel 1/2/3 figures for the same configuration."""
    figures = []
    for label, frame in table.groupby("target_label", sort=False):
        figure, axes = _panels(1, width=max(6.0, 1.3 * len(frame)))
        axis = axes[0]
        names = [f"{r.label}\n{r.threads}t {r.delegate}" for r in frame.itertuples()]
        columns = [("median_ms", "ours", "#333333"), ("pixel1_ms", "paper Pixel 1", "#9ecae1"),
                   ("pixel2_ms", "paper Pixel 2", "#4292c6"), ("pixel3_ms", "paper Pixel 3", "#08519c")]
        for offset, (column, name, color) in enumerate(columns):
            values = pd.to_numeric(frame[column], errors="coerce")
            axis.bar([p + (offset - 1.5) * 0.2 for p in range(len(frame))], values, width=0.2, label=name,
                     color=color)
        axis.set_xticks(range(len(frame)), names, fontsize=7)
        axis.set(ylabel="latency (ms)")
        axis.legend(fontsize=7)
        figure.suptitle(f"{label} against the MobileNetV3 paper's Pixel phones", fontsize=10)
        figures.append(Figure(f"phone-vs-paper-{slug(label)}", _png(figure),
                              f"Our median on {label} beside the published Pixel latencies (paper: one large "
                              "core, one thread, batch 1, TFLite benchmark tool)."))
    return figures
