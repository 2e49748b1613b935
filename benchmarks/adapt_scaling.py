"""The fine-tuning side of an adapt iteration at 1 and N workers (``mnbench adapt --ray auto``), on this host.

An iteration is the latency side (table probes, the whole timing of the choice; serial, in the driver) plus
the fine-tuning side (one short fine-tune per proposal; in parallel on Ray). This times the fine-tuning side
of one iteration: ``--proposals`` proposals of V3-Small at ``--resolution`` px (the widest settable widths
narrowed by 2 granules), each ``--short-steps`` steps on the images in ``--data``, serially in this process
and as Ray tasks on a local Ray of ``--workers`` CPUs (Ray's start-up and the workers' first TensorFlow
import timed apart: a warm-up round of as many tasks as workers). With the latency side of a real run
(``trace.csv``'s ``latency_s``), an iteration at N workers takes about latency + fine-tuning(N).
Writes results/adapt_scaling.json (results/adapt_scaling.md quotes it).
Run: python benchmarks/adapt_scaling.py --data DIR [--proposals 4 --workers 2]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--proposals", type=int, default=4)
    parser.add_argument("--short-steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "adapt_scaling.json")
    args = parser.parse_args()

    from mobilenets_tf.builder import build_from_config  # first: imports TensorFlow quietly

    from mnbench.accuracy import datasets
    from mnbench.adapt.parallel import RayPool, Serial, proposal_seed
    from mnbench.adapt.proposals import narrower, with_width
    from mnbench.adapt.training import ShortTraining
    from mobilenets_tf import configure

    data = datasets.load(args.data)
    config = configure("v3-small", 1.0, args.resolution, len(data.class_names))
    trainer = ShortTraining(data, config)
    model = build_from_config(config)
    widths = sorted(config.plan().widths().items(), key=lambda item: -item[1])[:args.proposals]
    jobs = [(with_width(config, key, narrower(width, 2)), proposal_seed(0, 1, key)) for key, width in widths]
    record = {"command": "python benchmarks/adapt_scaling.py " + " ".join(sys.argv[1:]),
              "cores": os.cpu_count(), "proposals": [key for key, _ in widths],
              "short_steps": args.short_steps,
              "load1_before": os.getloadavg()[0], "date_utc": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())}
    began = time.perf_counter()
    serial = Serial().map(model, config, jobs, trainer, args.short_steps)
    record["serial_s"] = round(time.perf_counter() - began, 1)
    record["serial_per_proposal_s"] = [round(r["seconds"], 1) for r in serial]
    began = time.perf_counter()
    pool = RayPool("auto", args.workers)
    record["ray_start_s"] = round(time.perf_counter() - began, 1)
    try:
        began = time.perf_counter()
        pool.map(model, config, jobs[:args.workers], trainer, 1)      # each worker imports TensorFlow once
        record["ray_warmup_s"] = round(time.perf_counter() - began, 1)
        began = time.perf_counter()
        parallel = pool.map(model, config, jobs, trainer, args.short_steps)
        record["ray_s"] = round(time.perf_counter() - began, 1)
        record["ray_per_proposal_s"] = [round(r["seconds"], 1) for r in parallel]
        record["same_top1"] = [r["top1"] for r in parallel] == [r["top1"] for r in serial]
    finally:
        pool.close()
    record["workers"] = args.workers
    record["load1_after"] = os.getloadavg()[0]
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
