"""Does `mnbench profile` account for the whole model? Sum of the slices against the whole, every granularity.

For the default fp32 and int8 exports of each version at 224: `device_bench.profile.profile` by block, layer
and op, at 1 and 2 threads; the whole model is timed alone in a fresh process, as `mnbench bench` times it.
Writes results/profile_sums.{csv,md}. Run: python benchmarks/profile_sums.py
"""

import argparse
import csv
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _context import header  # noqa: E402
from device_bench.profile import profile  # noqa: E402
from export.pipeline import ExportRequest, export_many  # noqa: E402
from export.quantization import Quant  # noqa: E402
from mobilenets_tf import configure  # noqa: E402

VERSIONS = ("v1", "v2", "v3-large", "v3-small")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--versions", nargs="*", default=list(VERSIONS))
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="profile_sums_"))
    requests = [ExportRequest(configure(v), q, verify=False) for v in args.versions for q in (Quant.FP32,
                                                                                              Quant.INT8)]
    rows = []
    for record in export_many(requests, work):
        for threads in args.threads:
            for by in ("block", "layer", "op"):
                report = profile(work / record["file"], by=by, threads=threads)
                top = sorted(report["by_op_type"].items(), key=lambda item: -item[1])[:3]
                rows.append({"version": record["version"], "quant": record["quant"], "threads": threads,
                             "by": by, "slices": len(report["slices"]), "sessions": report["sessions"],
                             "floor_us": round(report["floor_us"], 2),
                             "sum_ms": round(report["sum_us"] / 1e3, 3),
                             "whole_ms": round(report["whole_us"] / 1e3, 3),
                             "sum_over_whole": round(report["sum_over_whole"], 3),
                             "top_op_types": "; ".join(f"{name} {100 * us / report['sum_us']:.0f}%"
                                                       for name, us in top)})
                print(rows[-1], flush=True)
    out = ROOT / "results"
    with open(out / "profile_sums.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [header("mnbench profile: sum of the slices against the whole model",
                    "python benchmarks/profile_sums.py"),
             "",
             "224x224, batch 1, XNNPACK, default exports (random weights). Each slice's figure is its median "
             "minus the invoke floor of its session (an 8-float ADD subgraph); the sum adds the floor once, "
             "as the whole model pays it once. `op` rows are what each operator adds to its layer. The whole "
             "model is timed alone in a fresh process. 2-thread figures on this 2-vCPU virtual machine move "
             "with the host's load (the second vCPU is shared); 1-thread figures are the stable ones.", "",
             "| version | quant | threads | by | slices | sessions | floor us | sum ms | whole ms | sum / "
             "whole | top op types |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['version']} | {r['quant']} | {r['threads']} | {r['by']} | {r['slices']} | "
              f"{r['sessions']} | {r['floor_us']} | {r['sum_ms']} | {r['whole_ms']} | {r['sum_over_whole']} "
              f"| {r['top_op_types']} |"
              for r in rows]
    (out / "profile_sums.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
