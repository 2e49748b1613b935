"""``report.md`` and ``adapt.png``: what ``mnbench adapt`` did, from its trace and final measurements."""

from __future__ import annotations

import csv
from pathlib import Path


def figure(trace_rows: list[dict], result: dict, path: Path) -> None:
    """Short-term top-1 against measured latency per iteration, and the uniform models' latencies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [row for row in trace_rows if str(row["chosen"]) == "1" and row["latency_measured_ms"]]
    xs = [float(row["latency_measured_ms"]) for row in chosen]
    ys = [float(row["short_top1"]) for row in chosen]
    fig, axis = plt.subplots(figsize=(6.4, 4.2))
    axis.plot(xs, ys, "o-", color="#d62728", label="adapt: each iteration (short fine-tune)")
    if result.get("final_top1") is not None:
        axis.plot([result["final_ms"]], [result["final_top1"]], "*", markersize=14, color="#d62728",
                  label="adapted, after the long fine-tune")
    axis.axvline(result["budget_ms"], color="grey", linestyle="--", label="budget")
    for name, ms in result["latency_ms"].items():
        if name.startswith("uniform"):
            axis.axvline(ms, color="#1f77b4", linestyle=":", alpha=0.7)
            axis.annotate(name, (ms, axis.get_ylim()[0]), rotation=90, va="bottom", ha="right", fontsize=8,
                          color="#1f77b4")
    axis.set_xlabel(f"latency measured whole on {result['target']}, {result['quant']}, "
                    f"{result['threads']} thread(s) (ms)")
    axis.set_ylabel("validation top-1 (inference mode)")
    axis.invert_xaxis()
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, result: dict) -> Path:
    """Write ``report.md`` and ``adapt.png`` in ``out``; return the report's path."""
    with open(out / "trace.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    figure(rows, result, out / "adapt.png")
    chosen = [row for row in rows if row["chosen"] == "1"]
    lines = [f"# mnbench adapt: {result['config']['version']} to {result['budget_ms']:.3f} ms "
             f"on {result['target']}",
             "", f"**{result['verdict']}** (stopped: {result['stop']}).", "",
             f"Start {result['start_ms']:.3f} ms (measured whole), step {result['step_ms']:.3f} ms, "
             f"{result['iterations']} iteration(s), {len(rows) - 1} proposals fine-tuned, "
             f"{result['seconds'] / 60:.1f} min ({result.get('workers', 1)} fine-tuning worker(s)). "
             f"Latency table: {result['table']['shapes']} layer shapes "
             f"({result['table']['cached_at_start']} cached at the start).", "",
             "![accuracy against latency](adapt.png)", "",
             "## Measured whole, interleaved, at the end", "", "| model | latency ms | Mult-Adds M |",
             "|---|---|---|"]
    lines += [f"| {name} | {ms:.3f} | {result['macs'][name] / 1e6:.1f} |"
              for name, ms in result["latency_ms"].items()]
    confirmation = result.get("confirmation")
    if confirmation:
        lines += ["", "Budget confirmed against the start, interleaved (the latency gate's sequential rule): "
                  f"adapted/start {confirmation['ratio']:.3f}, 95 % interval {confirmation['low']:.3f}-"
                  f"{confirmation['high']:.3f} against the budget {confirmation['budget_ratio']:.3f} "
                  f"({confirmation['processes']} processes, {confirmation['seconds']:.0f} s): "
                  f"**{confirmation['verdict']}**."]
    else:
        lines += ["", "The budget was judged on a single timing (--confirm-secs 0)."]
    lines += ["", f"Validation top-1 after the long fine-tune: {result['final_top1']:.3f} (start, before "
              f"adapting: {float(result['start_top1']):.3f}).", "", "## Chosen proposals", "",
              "| iteration | proposal | estimated ms | measured ms | short-term top-1 | latency s | "
              "fine-tuning s (sum) | iteration s |", "|---|---|---|---|---|---|---|---|"]
    for row in chosen:
        tuned = sum(float(other.get("finetune_s") or 0) for other in rows
                    if other["iteration"] == row["iteration"])
        lines.append(f"| {row['iteration']} | {row['proposal']} | {row['latency_estimated_ms']} | "
                     f"{row['latency_measured_ms']} | {row['short_top1']} | {row.get('latency_s', '')} | "
                     f"{tuned:.1f} | {row.get('iteration_s', '')} |")
    lines += ["", "Widths set (the rest as alpha gives them): "
              f"`{result['config'].get('widths', {})}`", "", "Every proposal: `trace.csv`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
