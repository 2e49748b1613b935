"""Our params and Mult-Adds beside every published figure in results/reference/.

Writes results/cost_vs_papers.csv and results/cost_vs_papers.md. Run: python benchmarks/cost_vs_papers.py
"""

import csv
import datetime
import platform
from pathlib import Path

import mnbench
from mnbench.reference import comparisons

OUT = Path(__file__).resolve().parents[1] / "results"


def main() -> None:
    rows = comparisons()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = ["source", "label", "version", "alpha", "resolution", "knobs", "metric", "published_millions",
              "ours", "ours_millions", "difference_pct", "tolerance_millions", "agrees", "known_mismatch",
              "citation"]
    with open(OUT / "cost_vs_papers.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for c in rows:
            writer.writerow([c.source, c.label, c.version, c.alpha, c.resolution, dict(c.knobs), c.metric,
                             c.published, c.ours, f"{c.ours / 1e6:.3f}", f"{c.difference_pct:+.2f}",
                             f"{c.tolerance:.3f}", c.agrees, c.known_mismatch or "", c.citation])
    agree = sum(c.agrees for c in rows)
    lines = ["# Our cost accounting against the published tables",
             "",
             f"Generated {stamp} by `python benchmarks/cost_vs_papers.py` (mnbench {mnbench.__version__}, "
             f"Python {platform.python_version()}). Counting convention: docs/counting.md.",
             "",
             f"{agree} of {len(rows)} published figures agree within 2 % (params) / 3 % (Mult-Adds) or the "
             f"printed rounding; the other {len(rows) - agree} are explained.", "",
             "| source | row | metric | published (M) | ours (M) | diff | verdict |",
             "|---|---|---|---:|---:|---:|---|"]
    for c in rows:
        verdict = "agrees" if c.agrees else f"explained: {c.known_mismatch}"
        lines.append(f"| {c.source} | {c.label} | {c.metric} | {c.published} | {c.ours / 1e6:.3f} | "
                     f"{c.difference_pct:+.1f}% | {verdict} |")
    (OUT / "cost_vs_papers.md").write_text("\n".join(lines) + "\n")
    print(f"{agree}/{len(rows)} agree; wrote {OUT / 'cost_vs_papers.csv'} and .md")


if __name__ == "__main__":
    main()
