"""Latency-aware mixed precision: keep a block in float32 where the target runs it faster than in int8.

1. Time every block of the float32 and of the int8 model on the target: the host (flatbuffer slices,
   `mnbench profile`'s method) or a phone (each block cut into its own model, timed by benchmark_model).
2. A block goes float when its float32 slice is faster than its int8 slice by more than ``MARGIN`` and
   ``MIN_SAVING_US`` (the QUANTIZE/DEQUANTIZE at its borders are not free).
3. The mixed model is kept only if, timed whole and interleaved with the int8 model, it is faster, and its
   fidelity against Keras stays within ``SQNR_BUDGET_DB`` of the int8 model's (float blocks cannot lose
   signal, but the check makes the promise testable).
Otherwise the plain int8 model is the answer, and the sidecar says why.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

MARGIN = 0.10
MIN_SAVING_US = 5.0     # below this a block's difference is timer noise
SQNR_BUDGET_DB = 0.5
ROUNDS = 3


def choose_float_blocks(fp32_us: dict[str, float], int8_us: dict[str, float]) -> list[str]:
    """Blocks whose float32 slice beats the int8 one by more than MARGIN and MIN_SAVING_US, in model order."""
    return [block for block, int8 in int8_us.items()
            if block in fp32_us and int8 - fp32_us[block] > max(MARGIN * int8, MIN_SAVING_US)]


class HostTimer:
    """Times models on this machine: block slices with `mnbench profile`'s method, whole models in rounds."""

    def __init__(self, threads: int) -> None:
        from device_bench.host import cpu_facts

        self.name, self.threads, self.cpu = "host", threads, cpu_facts()

    def block_us(self, model: bytes, tag: str) -> dict[str, float]:
        """Median microseconds of every block of ``model`` (``tag``: fp32 or int8, names its files)."""
        from device_bench.profile import profile

        with tempfile.TemporaryDirectory(prefix="mnbench-mixed-") as tmp:
            path = Path(tmp) / f"{tag}.tflite"
            path.write_bytes(model)
            report = profile(path, by="block", threads=self.threads)
        return {row["slice"]: row["median_us"] for row in report["slices"]}

    def whole_ms(self, models: dict[str, bytes]) -> dict[str, float]:
        """Median latency of each model, measured in interleaved rounds of fresh processes."""
        from device_bench.host import HostParams, run_worker

        params = HostParams(runs=50, min_secs=0.3, warmup=5, warmup_min_secs=0.1)
        times: dict[str, list[float]] = {name: [] for name in models}
        with tempfile.TemporaryDirectory(prefix="mnbench-mixed-") as tmp:
            paths = _written(models, Path(tmp))
            for _ in range(ROUNDS):
                for name, path in paths.items():
                    result = run_worker(path, self.threads, params)
                    if result["ok"]:
                        times[name].append(statistics.median(result["samples_us"]) / 1000)
        return {name: statistics.median(values) if values else float("inf") for name, values in times.items()}


class PhoneTimer:
    """Times models on an Android phone with benchmark_model over ADB.

    benchmark_model runs one graph per call, so each block is its own model cut from the flatbuffer (same
    weights and quantization) and timed alone; the whole-model check afterwards keeps that honest.
    """

    def __init__(self, serial: str, threads: int, benchmark_binary: Path | None = None, connect=None) -> None:
        self.name, self.threads, self.cpu = serial, threads, {"model": f"Android device {serial}"}
        self.benchmark_binary, self.connect = benchmark_binary, connect

    def block_us(self, model: bytes, tag: str) -> dict[str, float]:
        from device_bench.slices import cut, groups
        from device_bench.tflite_file import tree as model_tree

        tree = model_tree(model)
        slices = {label: cut(tree, indices) for label, indices in groups(tree, "block")}
        timed = self._time({f"{tag}-block-{label}": data for label, data in slices.items()})
        return {label: timed[f"{tag}-block-{label}"] * 1000 for label in slices}

    def whole_ms(self, models: dict[str, bytes]) -> dict[str, float]:
        return self._time(models)

    def _time(self, models: dict[str, bytes]) -> dict[str, float]:
        """Median (else mean) latency in ms of each model on the phone; a failed run is an error."""
        from device_bench.android import benchmark_devices
        from device_bench.android_run import BenchSettings
        from device_bench.errors import DeviceError

        options = {} if self.connect is None else {"connect": self.connect}
        with tempfile.TemporaryDirectory(prefix="mnbench-mixed-") as tmp:
            paths = _written(models, Path(tmp))
            run = benchmark_devices([self.name], list(paths.values()), threads=(self.threads,),
                                    settings=BenchSettings(num_runs=50, min_secs=1.0,
                                                           cooldown_max_wait_s=30.0),
                                    benchmark_binary=self.benchmark_binary,
                                    results_root=Path(tmp) / "results", **options)
        if run.failed:
            raise DeviceError(f"--precision auto on {self.name}: {run.failed[0].row['error']}")
        by_file = {row["model"]: row["median_us"] if row["median_us"] is not None else row["avg_us"]
                   for row in run.rows}
        return {name: by_file[path.name] / 1000 for name, path in zip(models, paths.values())}


def _written(models: dict[str, bytes], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in models.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths


def decide(fp32: bytes, int8: bytes, build_mixed, fidelity, timer,
           alternatives: dict[str, bytes] | None = None) -> tuple[bytes, dict]:
    """Return the fastest of int8, a latency-aware mix and ``alternatives``, with the decision record.

    Args:
        fp32, int8: the float32 and int8 models of the same network.
        build_mixed: ``blocks -> bytes``, the int8 model with those blocks in float32.
        fidelity: ``bytes -> SQNR dB`` of a model's logits against Keras.
        timer: where and how to time (:class:`HostTimer`, :class:`PhoneTimer`).
        alternatives: other whole int8 models to time against them (e.g. other stem lowerings), by name.

    A candidate other than int8 is chosen only if it is faster timed whole (interleaved with the others)
    and within ``SQNR_BUDGET_DB`` of the int8 model's SQNR.
    """
    alternatives = dict(alternatives or {})
    fp32_us, int8_us = timer.block_us(fp32, "fp32"), timer.block_us(int8, "int8")
    blocks = choose_float_blocks(fp32_us, int8_us)
    record = {"mode": "auto", "target": timer.name, "threads": timer.threads, "margin": MARGIN,
              "measured_on": getattr(timer, "cpu", None),
              "blocks": [{"block": b, "fp32_us": round(fp32_us.get(b, 0.0), 1), "int8_us": round(us, 1),
                          "float": b in blocks} for b, us in int8_us.items()],
              "float_blocks": blocks, "chosen": "int8"}
    if not blocks and not alternatives:
        record["reason"] = "int8 is at least as fast as float32 in every block on this target"
        return int8, record
    candidates = {"int8": int8, **({"mixed": build_mixed(tuple(blocks))} if blocks else {}), **alternatives}
    timed = timer.whole_ms(candidates)
    sqnr = {name: fidelity(model) for name, model in candidates.items()}
    record["candidates"] = {name: {"ms": round(timed[name], 3), "sqnr_db": sqnr[name]} for name in candidates}
    record.update(int8_ms=round(timed["int8"], 3), int8_sqnr_db=sqnr["int8"])
    if blocks:
        record.update(mixed_ms=round(timed["mixed"], 3), mixed_sqnr_db=sqnr["mixed"])
    fastest = min(candidates, key=lambda name: timed[name])
    within = [name for name in candidates if sqnr[name] >= sqnr["int8"] - SQNR_BUDGET_DB]
    best = min(within, key=lambda name: timed[name])
    if best == "int8":
        record["reason"] = "the other candidates were not faster when timed whole" if fastest == "int8" else \
            f"the faster candidates lost more than {SQNR_BUDGET_DB} dB of SQNR"
        return int8, record
    record.update(chosen=best, reason="faster whole, fidelity within budget")
    return candidates[best], record
